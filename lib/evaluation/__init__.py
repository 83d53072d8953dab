"""Evaluation: peer predictors, per-face errors and tables, generator
alignment, the style classifier, figures and the command-line tool
(``python -m lib.evaluation``). Imported only by notebooks, tests and benchmarks."""
