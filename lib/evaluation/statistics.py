"""Statistics behind every comparison of the results table: bootstrap confidence
intervals over faces, paired comparisons of two methods on the same faces, and the
smallest difference a protocol can resolve.

All intervals are percentile bootstrap intervals with a fixed seed, so a rerun on the
same per-face errors gives the same numbers. Errors are per-face NME values (any unit;
the study passes percent). A method trained with several seeds is scored by its
per-face error averaged over the seeds (``seed_average``) before any interval or
pairing, so the interval is over faces, and the seed-to-seed spread is reported
beside it (``seed_spread``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

RESAMPLES, SEED, LEVEL = 10_000, 0, 0.95


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of `values`, drawn in chunks."""
    rng = np.random.default_rng(seed)
    n, out, chunk = len(values), [], max(1, 2_000_000 // max(1, len(values)))
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        out.append(values[idx].mean(axis=1))
    return np.concatenate(out)


def bootstrap_ci(values, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampling faces)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap_ci: expected a non-empty 1-d array of per-face values, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("bootstrap_ci: the per-face values hold NaN or infinite entries")
    means = _bootstrap_means(values, resamples, seed)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired(method, baseline, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict:
    """Compare two methods on the same faces (same order): the mean of the per-face
    differences ``method - baseline`` (negative: the method is better), its paired
    bootstrap interval, and the two-sided Wilcoxon signed-rank p-value."""
    m, b = np.asarray(method, np.float64), np.asarray(baseline, np.float64)
    if m.shape != b.shape:
        raise ValueError(f"paired: {len(m)} faces for the method, {len(b)} for the baseline; pairing needs the same faces")
    d = m - b
    low, high = bootstrap_ci(d, resamples, seed, level)
    nonzero = d[d != 0]
    p = 1.0 if len(nonzero) == 0 else float(sps.wilcoxon(nonzero, alternative="two-sided").pvalue)
    return {"n": int(len(d)), "nme": float(m.mean()), "baseline_nme": float(b.mean()), "delta": float(d.mean()),
            "ci_low": low, "ci_high": high, "p_value": p}


def min_detectable_difference(differences, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a paired comparison of this spread and size
    detects with the given power at two-sided level `alpha` (normal approximation):
    (z_{1-alpha/2} + z_power) * sd(differences) / sqrt(n)."""
    d = np.asarray(differences, np.float64)
    if len(d) < 2:
        raise ValueError("min_detectable_difference: needs at least two paired faces")
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(z * d.std(ddof=1) / np.sqrt(len(d)))


def seed_average(per_image: pd.DataFrame, column: str = "nme_inter_ocular") -> pd.Series:
    """Per-face error averaged over the seeds of a method (rows: one per face and seed,
    with ``id`` and, for several seeds, ``seed``), indexed by face id in first-seen order.
    Every seed must have scored the same faces."""
    if "seed" not in per_image or per_image["seed"].nunique() == 1:
        return per_image.set_index("id")[column]
    faces = per_image.groupby("seed")["id"].apply(frozenset)
    if faces.nunique() != 1:
        raise ValueError("seed_average: the seeds scored different faces; their errors cannot be averaged per face")
    order = list(dict.fromkeys(per_image["id"]))
    return per_image.groupby("id", sort=False)[column].mean().reindex(order)


def seed_spread(per_image: pd.DataFrame, column: str = "nme_inter_ocular") -> float:
    """Standard deviation over seeds of a method's mean error (NaN for a single seed)."""
    if "seed" not in per_image or per_image["seed"].nunique() < 2:
        return float("nan")
    return float(per_image.groupby("seed")[column].mean().std(ddof=1))
