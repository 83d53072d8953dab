"""The headline DVC metrics (lib.evaluation.headline): strict JSON, tens of numbers, the
study's main comparisons, and the committed results/cpu/metrics.json rebuilt from the
committed tables."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from lib.core.naming import slug
from lib.evaluation import headline as hl
from tests.conftest import REPO

TEST_SETS = ["test_photo", "test_caricature"]
BASELINES = ["real only (landmark box)", "few-shot real only", "geometry-aware style transfer (Face of Art)"]
METHODS = ["mean shape", *BASELINES, "ours (two-stage synthetic)", "one-step synthetic (ablation)",
           "paper's recipe (two-stage set alone)"]
GENERATORS = ["two_stage", "one_step", "two_stage_warp"]


def strict(text):
    """Parse JSON the way a browser does: NaN or Infinity is an error."""
    def refuse(c):
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=refuse)


def tables(baselines=BASELINES):
    """Small tables in the layout notebook 06 writes, every method against every baseline
    (as the paired table of a profile holds many more comparisons than the headline keeps),
    with NaN where the real tables can have it."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"method": m, "test_set": t, "n": 20, "nme": rng.uniform(3, 10), "fr_10": 0.0,
                           "auc_10": 0.5, "box": "landmarks", "nme_ci_low": 1.0, "nme_ci_high": 11.0, "seeds": 1,
                           "nme_seed_sd": np.nan} for t in TEST_SETS for m in METHODS])
    table.loc[0, "nme"] = np.nan
    paired = pd.DataFrame([{"method": m, "baseline": b, "test_set": t, "n": 20, "nme": 5.0, "baseline_nme": 5.0,
                            "delta": rng.normal(), "ci_low": -1.0, "ci_high": 1.0, "p_value": 0.5, "seeds": 1}
                           for b in baselines for t in TEST_SETS for m in METHODS if m not in (b, "mean shape")])
    ours = paired["method"] == "ours (two-stage synthetic)"
    paired.loc[ours & (paired["baseline"] == BASELINES[0]) & (paired["test_set"] == "test_photo"), "ci_low"] = np.nan
    paired.loc[ours & (paired["baseline"] == BASELINES[1]) & (paired["test_set"] == "test_photo"), "delta"] = np.inf
    align = pd.DataFrame([{"generator": g, "style": s, "n": 10, "alignment_nme": rng.uniform(4, 9),
                           "style_accuracy": np.nan if s == "pixar" else 50.0, "alignment_nme_ci_low": 1.0,
                           "alignment_nme_ci_high": 12.0, "style_accuracy_ci_low": np.nan,
                           "style_accuracy_ci_high": np.nan, "n_unedited": np.nan, "alignment_nme_unedited": np.nan,
                           "alignment_nme_edited_matched": np.nan}
                          for g in GENERATORS for s in ("photo", "pixar", "all")])
    align.loc[(align["generator"] == "two_stage_warp") & (align["style"] == "all"), "style_accuracy"] = np.nan
    return table, paired, align


def test_the_json_is_strict_even_with_nan_and_inf_in_the_tables():
    table, paired, align = tables()
    m = hl.headline_metrics(table, paired, align)
    text = hl.to_json(m)
    assert "NaN" not in text and "Infinity" not in text
    assert strict(text) == m
    # missing values are nulls: the keys stay the same from run to run
    assert m["table1"]["test_photo"]["mean_shape"] is None
    assert m["alignment"]["two_stage_warp"]["style_acc"] is None and m["alignment"]["two_stage_warp"]["nme"] > 0
    assert m["paired"]["test_photo"]["ours_vs_real"]["ci_low"] is None
    assert m["paired"]["test_photo"]["ours_vs_fewshot"]["delta"] is None
    with pytest.raises(ValueError):  # and the writer itself refuses anything that is not strict JSON
        hl.to_json({"x": float("nan")})


def test_the_number_of_values_is_bounded_whatever_the_paired_table_holds():
    table, paired, align = tables()
    m = hl.headline_metrics(table, paired, align)
    expected = len(METHODS) * len(TEST_SETS) + 3 * len(hl.MAIN_COMPARISONS) * len(TEST_SETS) + 2 * len(GENERATORS)
    assert hl.count_numbers(m) == expected == 14 + 24 + 6
    # ten times the comparisons in the paired table: not one more number
    more = pd.concat([paired.assign(baseline=paired["baseline"] + f" #{k}") for k in range(10)] + [paired])
    assert hl.count_numbers(hl.headline_metrics(table, more, align)) == expected
    # only style "all" counts, however many styles the alignment table has
    styles = pd.concat([align.assign(style=align["style"] + f" {k}") for k in range(10)] + [align])
    assert hl.count_numbers(hl.headline_metrics(table, paired, styles)) == expected


def test_the_schema_table1_nme_the_main_comparisons_and_alignment_over_all_styles():
    table, paired, align = tables()
    m = hl.headline_metrics(table, paired, align)
    assert list(m) == ["table1", "paired", "alignment"]
    assert list(m["table1"]) == TEST_SETS and list(m["table1"]["test_caricature"]) == [slug(x) for x in METHODS]
    row = table[(table["method"] == "ours (two-stage synthetic)") & (table["test_set"] == "test_caricature")]
    assert m["table1"]["test_caricature"]["ours_two_stage_synthetic"] == round(float(row["nme"].iloc[0]), 4)
    assert list(m["paired"]) == TEST_SETS
    for t in TEST_SETS:
        assert list(m["paired"][t]) == list(hl.MAIN_COMPARISONS)
        for key, (method, baseline) in hl.MAIN_COMPARISONS.items():
            r = paired[(paired["method"] == method) & (paired["baseline"] == baseline) & (paired["test_set"] == t)]
            got = m["paired"][t][key]
            assert set(got) == {"delta", "ci_low", "ci_high"}
            assert got["delta"] == (round(float(r["delta"].iloc[0]), 4) if np.isfinite(r["delta"].iloc[0]) else None)
    assert list(m["alignment"]) == GENERATORS
    everything = align[align["style"] == "all"].set_index("generator")
    assert m["alignment"]["one_step"] == {"nme": round(everything.loc["one_step", "alignment_nme"], 4),
                                          "style_acc": 50.0}


def test_the_main_comparisons_are_ours_and_the_papers_recipe_against_the_baselines():
    assert hl.MAIN_COMPARISONS == {
        "ours_vs_real": ("ours (two-stage synthetic)", "real only (landmark box)"),
        "paper_vs_real": ("paper's recipe (two-stage set alone)", "real only (landmark box)"),
        "ours_vs_fewshot": ("ours (two-stage synthetic)", "few-shot real only"),
        "ours_vs_foa": ("ours (two-stage synthetic)", "geometry-aware style transfer (Face of Art)"),
    }


@pytest.mark.parametrize("profile", ["smoke", "demo", "cpu", "paper"])
def test_every_profile_runs_the_methods_of_the_main_comparisons(profile):
    """The names are those of params/<profile>.yaml; cpu compares all four, the others lack
    the interpolated Face of Art baseline, whose comparison is then left out."""
    cfg = yaml.safe_load((REPO / "params" / f"{profile}.yaml").read_text())["evaluate"]
    detectors = {d["name"] for d in cfg["detectors"]}
    declared = {(m, b) for b in cfg["paired"]["baselines"] for m in cfg["paired"]["methods"] if m != b}
    for key, (method, baseline) in hl.MAIN_COMPARISONS.items():
        assert {method, baseline} <= detectors, (profile, key)
        assert (method, baseline) in declared or (profile != "cpu" and key == "ours_vs_foa"), (profile, key)


def test_a_comparison_the_profile_does_not_run_is_left_out():
    # no Face of Art baseline in the paired table (the smoke, demo and paper profiles)
    table, paired, align = tables(baselines=BASELINES[:2])
    m = hl.headline_metrics(table, paired, align)
    for t in TEST_SETS:
        assert list(m["paired"][t]) == ["ours_vs_real", "paper_vs_real", "ours_vs_fewshot"]
    assert hl.count_numbers(m) == 14 + 3 * 3 * 2 + 6
    # nothing compared at all: every test set is still there, empty
    assert hl.headline_metrics(table, paired.iloc[:0], align)["paired"] == {t: {} for t in TEST_SETS}


def test_a_main_comparison_with_an_unknown_method_is_an_error():
    table, paired, align = tables()
    with pytest.raises(ValueError, match="ours_vs_real.*not in Table 1"):
        hl.headline_metrics(table[table["method"] != "ours (two-stage synthetic)"], paired, align)
    with pytest.raises(ValueError, match="renamed.*not in Table 1"):
        hl.headline_metrics(table, paired, align, comparisons={"renamed": ("ours (two stage)", "few-shot real only")})


def test_a_comparison_run_on_some_test_sets_only_is_an_error():
    table, paired, align = tables()
    gone = (paired["method"] == "paper's recipe (two-stage set alone)") & (paired["test_set"] == "test_caricature")
    with pytest.raises(ValueError, match="paper_vs_real.*test_caricature"):
        hl.headline_metrics(table, paired[~gone], align)


def test_an_ambiguous_or_missing_row_is_an_error():
    table, paired, align = tables()
    with pytest.raises(ValueError, match="2 rows"):
        hl.headline_metrics(table, pd.concat([paired, paired[paired["method"] == "ours (two-stage synthetic)"]]), align)
    with pytest.raises(ValueError, match="style 'all'"):
        hl.headline_metrics(table, paired, align[align["style"] != "all"])
    twice = table.copy()
    twice.loc[twice["method"] == "mean shape", "method"] = "Mean shape"
    with pytest.raises(ValueError, match="share a key"):
        hl.headline_metrics(pd.concat([table, twice[twice["method"] == "Mean shape"]]), paired, align)


def test_write_metrics_reads_the_tables_and_writes_strict_json(tmp_path):
    table, paired, align = tables()
    table.to_csv(tmp_path / "table1.csv", index=False)
    paired.to_csv(tmp_path / "paired.csv", index=False)
    align.to_csv(tmp_path / "alignment.csv", index=False)
    m = hl.write_metrics(tmp_path)
    text = (tmp_path / "metrics.json").read_text()
    assert text.endswith("}\n") and strict(text) == m == hl.headline_metrics(table, paired, align)


def test_the_committed_cpu_metrics_are_the_function_of_the_committed_tables(tmp_path):
    """results/cpu/metrics.json is exactly what notebook 06 writes for results/cpu's tables."""
    committed = REPO / "results" / "cpu"
    for f in hl.FILES.values():
        shutil.copy(committed / f, tmp_path / f)
    m = hl.write_metrics(tmp_path)
    assert (tmp_path / "metrics.json").read_bytes() == (committed / "metrics.json").read_bytes()
    assert strict((committed / "metrics.json").read_text()) == m
    assert hl.count_numbers(m) == 70  # 18 methods x 2 test sets, 4 comparisons x 2 test sets x 3, 5 generators x 2
    assert list(m["paired"]["test_caricature"]) == list(hl.MAIN_COMPARISONS)


def test_notebook_06_writes_the_metrics_with_this_function():
    cells = json.loads((REPO / "notebooks" / "06_evaluation.ipynb").read_text())["cells"]
    writers = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and "metrics" in "".join(c["source"])]
    code = "\n".join(writers)
    assert "headline.write_metrics(out)" in code and "metrics.json\").write_text" not in code
