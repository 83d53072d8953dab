"""The statistics of the results table on synthetic data with a known answer."""
import numpy as np
import pandas as pd
import pytest

from lib.evaluation import evaluate as ev
from lib.evaluation import statistics as st


def errors(n, seed=0, mean=10.0, sd=3.0):
    return np.random.default_rng(seed).normal(mean, sd, n).clip(0.5)


def test_identical_methods_give_zero_delta_and_an_interval_around_it():
    e = errors(50)
    r = st.paired(e, e.copy(), resamples=2000)
    assert r["delta"] == 0 and r["ci_low"] <= 0 <= r["ci_high"] and r["p_value"] == 1.0
    # two independent draws of the same method: zero inside the interval
    a, b = errors(200, 1), errors(200, 2)
    r = st.paired(a, b, resamples=2000)
    assert r["ci_low"] < 0 < r["ci_high"] and r["p_value"] > 0.05


def test_a_constant_shift_gives_that_delta():
    base = errors(40, 3)
    noise = np.random.default_rng(4).normal(0, 0.2, 40)
    r = st.paired(base - 1.5 + noise, base, resamples=4000)
    assert r["delta"] == pytest.approx(-1.5 + noise.mean())
    assert r["ci_high"] < 0 and r["ci_low"] < r["delta"] < r["ci_high"] and r["p_value"] < 1e-6
    assert r["n"] == 40 and r["baseline_nme"] == pytest.approx(base.mean())


def test_the_interval_narrows_as_faces_are_added():
    widths = []
    for n in (20, 80, 320, 1280):
        low, high = st.bootstrap_ci(errors(n, 5), resamples=4000)
        widths.append(high - low)
    assert all(w1 > w2 for w1, w2 in zip(widths, widths[1:]))
    assert widths[0] / widths[-1] == pytest.approx(8, rel=0.35)  # ~ 1/sqrt(n)


def test_the_bootstrap_is_deterministic_by_seed_and_covers_the_mean():
    e = errors(60, 6)
    assert st.bootstrap_ci(e, seed=1) == st.bootstrap_ci(e, seed=1)
    assert st.bootstrap_ci(e, seed=1) != st.bootstrap_ci(e, seed=2)
    low, high = st.bootstrap_ci(e)
    assert low < e.mean() < high
    # the 95% interval is close to the normal one for a mean of 60 faces
    half = 1.96 * e.std(ddof=1) / np.sqrt(len(e))
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_bad_input_is_an_error_that_says_what():
    with pytest.raises(ValueError, match="same faces"):
        st.paired(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        st.bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="non-empty"):
        st.bootstrap_ci(np.array([]))


def test_min_detectable_difference_follows_the_spread_and_size():
    d = np.random.default_rng(7).normal(0, 2.0, 100)
    mdd = st.min_detectable_difference(d)
    assert mdd == pytest.approx(2.8 * d.std(ddof=1) / 10, rel=0.01)
    assert st.min_detectable_difference(np.tile(d, 4)) < mdd


def per_image(values_by_seed, ids=None):
    ids = ids or [f"f{i}" for i in range(len(next(iter(values_by_seed.values()))))]
    return pd.concat([pd.DataFrame({"id": ids, "nme_inter_ocular": v, "nme_inter_pupil": v, "nme_box_diagonal": v,
                                    "box": "landmarks", "seed": k}) for k, v in values_by_seed.items()],
                     ignore_index=True)


def test_seeds_are_averaged_per_face_before_pairing():
    frame = per_image({0: [0.1, 0.2, 0.3], 1: [0.3, 0.2, 0.1], 2: [0.2, 0.2, 0.2]})
    assert list(st.seed_average(frame)) == pytest.approx([0.2, 0.2, 0.2])
    assert st.seed_spread(frame) == pytest.approx(0.0)
    assert st.seed_spread(per_image({0: [0.1, 0.1], 1: [0.3, 0.3]})) == pytest.approx(np.std([0.1, 0.3], ddof=1))
    with pytest.raises(ValueError, match="different faces"):
        st.seed_average(pd.concat([per_image({0: [0.1]}, ["a"]), per_image({1: [0.1]}, ["b"])]))


def test_table_row_and_paired_table_carry_seeds_and_intervals():
    rng = np.random.default_rng(8)
    base = rng.uniform(0.05, 0.15, 30)
    frames = {("caric", "real only"): per_image({0: base}),
              ("caric", "ours"): per_image({k: base - 0.01 + rng.normal(0, 0.002, 30) for k in range(3)}),
              ("caric", "same"): per_image({0: base})}
    row = ev.table_row("ours", "caric", frames["caric", "ours"], resamples=2000)
    assert row["seeds"] == 3 and row["n"] == 30 and row["nme_seed_sd"] > 0
    assert row["nme_ci_low"] < row["nme"] < row["nme_ci_high"]
    assert set(ev.TABLE_COLUMNS) <= set(row)
    paired = ev.paired_table(frames, {"real only": ["ours", "same", "real only"]}, resamples=2000)
    assert list(paired.columns) == ev.PAIRED_COLUMNS and len(paired) == 2
    ours = paired.set_index("method").loc["ours"]
    assert ours.delta == pytest.approx(-1.0, abs=0.1) and ours.ci_high < 0 and ours.seeds == 3
    same = paired.set_index("method").loc["same"]
    assert same.delta == 0 and same.ci_low <= 0 <= same.ci_high
    md = ev.paired_markdown(paired, ev.resolution(frames, {"real only": ["ours", "same"]}))
    assert "| ours | real only | caric | 30 |" in md and "| better |" in md and "30 faces" in md
    table = pd.DataFrame([row])
    assert "± " in ev.markdown_table(table) and "3 seeds" in ev.markdown_table(table)
