"""Multi-domain facial landmark detection with synthetic data: the study's library.

One small module per concern; notebooks, the evaluation command and the tests
all call these.
"""
