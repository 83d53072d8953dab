"""Landmark accuracy: NME under three normalisations, failure rate and area
under the cumulative error curve, computed the same way for every table.

Errors are fractions (0.05 = 5%); tables print NME and FR in percent."""
from __future__ import annotations

import numpy as np

from . import landmarks as lm

NORMALISERS = {
    "inter_ocular": lm.inter_ocular,
    "inter_pupil": lm.inter_pupil,
    "box_diagonal": lm.box_diagonal,
}


def nme_per_image(pred: np.ndarray, gt: np.ndarray, norm: str = "inter_ocular") -> np.ndarray:
    """Mean point-to-point error of each face divided by its ground-truth
    normalising distance. pred, gt: (N, 68, 2) or (68, 2)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    err = np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)
    d = NORMALISERS[norm](gt)
    if np.any(d <= 0):
        raise ValueError(f"zero {norm} distance in the ground truth")
    return err / d


def failure_rate(errors: np.ndarray, threshold: float = 0.10) -> float:
    """Fraction of faces whose NME is above `threshold` (strictly)."""
    errors = np.asarray(errors, np.float64)
    return float((errors > threshold).mean())


def ced(errors: np.ndarray, threshold: float = 0.10, steps: int = 1000):
    """Cumulative error distribution on an exact grid: x_k = threshold*k/steps,
    y_k = fraction of faces with error <= x_k. The grid is built from integers
    so it hits the threshold exactly."""
    errors = np.sort(np.asarray(errors, np.float64))
    x = threshold * np.arange(steps + 1) / steps
    y = np.searchsorted(errors, x, side="right") / len(errors)
    return x, y


def auc(errors: np.ndarray, threshold: float = 0.10, steps: int = 1000) -> float:
    """Area under the CED curve up to `threshold`, divided by `threshold`
    (1.0 = every face exact), by the trapezoid rule on the exact grid."""
    x, y = ced(errors, threshold, steps)
    return float(np.trapezoid(y, x) / threshold)


def summarise(errors: np.ndarray, thresholds=(0.10, 0.08)) -> dict:
    """NME (percent), FR (percent) and AUC (fraction) at each threshold."""
    errors = np.asarray(errors, np.float64)
    out = {"n": int(len(errors)), "nme": float(errors.mean() * 100)}
    for t in thresholds:
        k = int(round(t * 100))
        out[f"fr_{k}"] = failure_rate(errors, t) * 100
        out[f"auc_{k}"] = auc(errors, t)
    return out
