"""The study's headline figures as DVC metrics (``results/<profile>/metrics.json``:
``dvc metrics show``, ``dvc metrics diff``), built from the tables notebook 06 writes.

Tens of numbers, not the full tables (those stay in the CSV files beside it)::

    {"table1":    {<test_set>: {<method slug>: nme}},
     "paired":    {<test_set>: {<comparison>: {"delta": d, "ci_low": lo, "ci_high": hi}}},
     "alignment": {<generator>: {"nme": alignment NME, "style_acc": style accuracy}}}

``table1``: every row of Table 1, its mean NME (%, inter-ocular); ``paired``: the study's
main comparisons only (``MAIN_COMPARISONS``), method minus baseline on the same faces in
NME points with the 95% paired bootstrap interval; ``alignment``: the generator ablation
over all styles (style ``all``). Numbers are rounded to 4 decimals; a missing value (NaN,
e.g. a style accuracy with no judged face) is ``null``, so the file is strict JSON.

A main comparison whose method or baseline is not a row of Table 1 is an error (a renamed
or misspelled method). One that the profile does not run (no row of the paired table
pairs the two: the smoke profile has no interpolated Face of Art baseline) is left out; one
that is run on some test sets only is an error.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..core.naming import slug

# The study's main comparisons: short, stable key -> (method, baseline), as Table 1 and
# params/<profile>.yaml (evaluate.detectors, evaluate.paired) name them. "ours" is the selected
# row: the two-stage fine-tune read at the interpolation weight notebook 05 chose on validation.
OURS = "ours (two-stage synthetic)"
MAIN_COMPARISONS = {
    "ours_vs_real": (OURS, "real only (landmark box)"),
    "paper_vs_real": ("paper's recipe (two-stage set alone)", "real only (landmark box)"),
    "ours_vs_fewshot": (OURS, "few-shot real only"),
    "ours_vs_foa": (OURS, "geometry-aware style transfer (Face of Art)"),
}
ALL_STYLES = "all"  # the alignment table's row over every style
FILES = {"table1": "table1.csv", "paired": "paired.csv", "alignment": "alignment.csv"}
DIGITS = 4


def _number(x) -> float | None:
    """A metric value: rounded to DIGITS decimals; None (JSON null) when missing or not finite."""
    if x is None or pd.isna(x):
        return None
    x = float(x)
    return round(x, DIGITS) if math.isfinite(x) else None


def _one(frame: pd.DataFrame, what: str) -> pd.Series:
    if len(frame) != 1:
        raise ValueError(f"{what}: {len(frame)} rows, expected one")
    return frame.iloc[0]


def headline_metrics(table: pd.DataFrame, paired: pd.DataFrame, alignment: pd.DataFrame,
                     comparisons: dict[str, tuple[str, str]] | None = None) -> dict:
    """The headline metrics (module docstring) from Table 1 (``table1.csv``), the paired
    comparisons (``paired.csv``) and the alignment table (``alignment.csv``); ``comparisons``:
    key -> (method, baseline), ``MAIN_COMPARISONS`` by default. Test sets, methods and
    generators keep the tables' order."""
    comparisons = MAIN_COMPARISONS if comparisons is None else comparisons
    test_sets = list(dict.fromkeys(table["test_set"]))
    out: dict = {"table1": {}, "paired": {}, "alignment": {}}
    for t in test_sets:
        rows = table[table["test_set"] == t]
        keys = [slug(m) for m in rows["method"]]
        if len(set(keys)) != len(keys):
            raise ValueError(f"table1, {t}: two methods share a key: {sorted(k for k in keys if keys.count(k) > 1)}")
        out["table1"][t] = {k: _number(v) for k, v in zip(keys, rows["nme"])}

    known = set(table["method"])
    for key, (method, baseline) in comparisons.items():
        unknown = [m for m in (method, baseline) if m not in known]
        if unknown:
            raise ValueError(f"main comparison {key!r}: {unknown} not in Table 1 (its methods: {sorted(known)})")
    for t in test_sets:
        out["paired"][t] = {}
    for key, (method, baseline) in comparisons.items():
        rows = paired[(paired["method"] == method) & (paired["baseline"] == baseline)]
        if rows.empty:
            continue  # the profile does not compare these two (evaluate.paired)
        missing = [t for t in test_sets if t not in set(rows["test_set"])]
        if missing:
            raise ValueError(f"main comparison {key!r} ({method} vs {baseline}): no paired row on {missing}")
        for t in test_sets:
            r = _one(rows[rows["test_set"] == t], f"paired, {key} on {t}")
            out["paired"][t][key] = {"delta": _number(r["delta"]), "ci_low": _number(r["ci_low"]),
                                     "ci_high": _number(r["ci_high"])}

    everything = alignment[alignment["style"] == ALL_STYLES]
    if everything.empty:
        raise ValueError(f"alignment: no row of style {ALL_STYLES!r}")
    for g in dict.fromkeys(everything["generator"]):
        r = _one(everything[everything["generator"] == g], f"alignment, {g}")
        out["alignment"][g] = {"nme": _number(r["alignment_nme"]), "style_acc": _number(r["style_accuracy"])}
    return out


def count_numbers(metrics) -> int:
    """How many values (numbers or nulls) a metrics dict holds."""
    if isinstance(metrics, dict):
        return sum(count_numbers(v) for v in metrics.values())
    return 1


def to_json(metrics: dict) -> str:
    """Strict JSON (no NaN or Infinity: ``allow_nan=False``), indented, with a final newline."""
    return json.dumps(metrics, indent=2, allow_nan=False) + "\n"


def read_tables(results: Path) -> dict[str, pd.DataFrame]:
    """Table 1, the paired comparisons and the alignment table as notebook 06 wrote them in
    ``results`` (floats read back exactly)."""
    return {name: pd.read_csv(Path(results) / f, float_precision="round_trip") for name, f in FILES.items()}


def write_metrics(results: Path) -> dict:
    """Build the headline metrics from the tables in ``results`` (``table1.csv``,
    ``paired.csv``, ``alignment.csv``) and write them to ``results/metrics.json``; returns
    them. Reading the files, not the notebook's frames, lets the committed metrics be
    rebuilt from the committed tables alone."""
    tables = read_tables(results)
    metrics = headline_metrics(tables["table1"], tables["paired"], tables["alignment"])
    (Path(results) / "metrics.json").write_text(to_json(metrics))
    return metrics
