import numpy as np
import pytest

from lib.core import crop as cr
from lib.core import metrics
from lib.evaluation import predictors as pr
from lib.data.procedural import render_face


def test_mean_shape_of_one_shape_places_it_back_exactly(shape):
    ms = pr.MeanShape.fit(shape[None])
    placed = ms.place(cr.box_from_landmarks(shape, 0.0))
    np.testing.assert_allclose(placed, shape, atol=1e-9)


def test_mean_shape_is_scale_and_translation_free(shape):
    shapes = np.stack([shape, shape * 2 + 7])
    np.testing.assert_allclose(pr.mean_shape(shapes), pr.mean_shape(shape[None]), atol=1e-12)


def test_mean_shape_needs_a_box(shape):
    with pytest.raises(ValueError, match="face box"):
        pr.MeanShape.fit(shape[None]).predict(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("mode", ["detector", "landmarks"])
def test_dlib_on_procedural_faces(mode):
    d = pr.Dlib(mode)
    errs = []
    for seed in range(6):
        f = render_face(100 + seed, "photo", 256)
        p = d.predict(f.image, cr.box_from_landmarks(f.landmarks, 0.0))
        assert p.box in ("detector", "landmarks", "landmarks (fallback)")
        errs.append(metrics.nme_per_image(p.landmarks, f.landmarks))
    assert np.median(errs) < 0.15


def test_build_rejects_unknown():
    with pytest.raises(ValueError, match="unknown predictor"):
        pr.build("star")
