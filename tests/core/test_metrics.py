import numpy as np
import pytest

from lib.core import metrics


def _face(io=10.0):
    pts = np.zeros((68, 2))
    pts[:, 0] = np.linspace(0, io, 68)
    pts[36], pts[45] = [0, 0], [io, 0]
    return pts


def test_nme_by_hand():
    gt = _face(10.0)
    pred = gt + [0.6, 0.8]  # every point off by 1 px
    assert metrics.nme_per_image(pred, gt) == pytest.approx(0.1)
    assert metrics.nme_per_image(np.stack([pred, gt]), np.stack([gt, gt])) == pytest.approx([0.1, 0.0])


def test_nme_other_normalisers_by_hand():
    gt = _face(10.0)
    pred = gt.copy()
    pred[0] += [68.0, 0]  # one point off by 68 px: mean error 1 px
    d = np.linalg.norm(gt.max(0) - gt.min(0))
    assert metrics.nme_per_image(pred, gt, "box_diagonal") == pytest.approx(1 / d)


def test_failure_rate_is_strict():
    e = np.array([0.05, 0.10, 0.1000001, 0.3])
    assert metrics.failure_rate(e, 0.10) == pytest.approx(0.5)


def test_ced_grid_hits_threshold_exactly():
    x, y = metrics.ced(np.array([0.1]), 0.10, 1000)
    assert x[-1] == 0.10 and y[-1] == 1.0 and y[-2] == 0.0
    x8, _ = metrics.ced(np.array([0.01]), 0.08, 1000)
    assert x8[-1] == 0.08 and len(x8) == 1001


def test_auc_by_hand():
    # exact area under the step CED: mean of max(0, t - e) / t
    e = np.array([0.0, 0.05, 0.2])
    assert metrics.auc(e, 0.10) == pytest.approx((0.1 + 0.05 + 0) / 3 / 0.1, abs=1e-3)
    assert metrics.auc(np.zeros(5), 0.10) == pytest.approx(1.0)
    assert metrics.auc(np.full(5, 0.5), 0.10) == 0.0


def test_summarise_units():
    s = metrics.summarise(np.array([0.02, 0.04, 0.12]))
    assert s["n"] == 3 and s["nme"] == pytest.approx(6.0)
    assert s["fr_10"] == pytest.approx(100 / 3) and s["fr_8"] == pytest.approx(100 / 3)
    assert 0 < s["auc_10"] < 1
