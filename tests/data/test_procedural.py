import numpy as np
import pytest

from lib.data import procedural as pg
from lib.evaluation import predictors as pr
from lib.core import metrics


@pytest.mark.parametrize("style", pg.STYLES)
def test_each_style_renders_deterministically(style):
    a, b = pg.render_face(11, style, 96), pg.render_face(11, style, 96)
    assert a.image.shape == (96, 96, 3) and a.image.dtype == np.uint8
    assert (a.image == b.image).all() and (a.landmarks == b.landmarks).all()
    assert not (a.image == pg.render_face(12, style, 96).image).all()
    # the face sits inside the picture
    assert a.landmarks.min() > 0 and a.landmarks.max() < 95


def test_dense_curves_pass_through_landmarks():
    f = pg.render_face(4, "photo", 128)
    for g, idx in pg.lm.GROUPS.items():
        curve = f.curves[g]
        for p in f.landmarks[idx]:
            assert np.linalg.norm(curve - p, axis=1).min() < 1e-9


def test_caricatures_exaggerate_geometry():
    jaw = {st: np.mean([pg.render_face(s, st, 96).params["jaw_h"] for s in range(30)])
           for st in ("photo", "caricature")}
    assert jaw["caricature"] > jaw["photo"]


def test_a_real_face_detector_sees_faces():
    """The pictures look like faces: dlib's HOG detector, trained on photos,
    finds the face in most photo-style renders, and its 68-point predictor
    lands near the exact landmarks."""
    d = pr.Dlib("detector")
    found, errors = 0, []
    for seed in range(12):
        f = pg.render_face(seed, "photo", 256)
        if d.finder.detect(f.image):
            found += 1
            errors.append(metrics.nme_per_image(d.predict(f.image).landmarks, f.landmarks))
    assert found >= 9
    assert np.median(errors) < 0.12


def test_overrides_move_the_same_face():
    import pytest
    base = pg.render_face(5, "photo", 96)
    turned = pg.render_face(5, "photo", 96, {"yaw": base.params["yaw"] + 20})
    talking = pg.render_face(5, "photo", 96, {"mouth_open": 0.3})
    assert turned.params["jaw_w"] == base.params["jaw_w"]  # same person
    assert not np.allclose(turned.landmarks, base.landmarks)
    lip_gap = lambda f: f.landmarks[66, 1] - f.landmarks[62, 1]  # noqa: E731 (inner lips, lower - upper)
    assert lip_gap(talking) > lip_gap(base) + 1
    assert (pg.render_face(5, "photo", 96, {}).image == base.image).all()
    with pytest.raises(ValueError, match="unknown face parameters"):
        pg.render_face(5, "photo", 96, {"nose_ring": 1})


def test_write_set_writes_the_rendered_faces_and_keeps_existing_ones(tmp_path):
    from lib.data import datasets as ds
    paths = pg.write_set(tmp_path / "a", 3, 100, "photo", 64, prefix="x", progress=False)
    assert [p.name for p in paths] == ["x_00000.jpg", "x_00001.jpg", "x_00002.jpg"]
    np.testing.assert_allclose(ds.read_pts(paths[1].with_suffix(".pts")), pg.render_face(101, "photo", 64).landmarks,
                               atol=1e-3)
    before = paths[0].stat().st_mtime_ns
    paths[2].with_suffix(".pts").unlink()  # an interrupted face is drawn again, the others kept
    pg.write_set(tmp_path / "a", 3, 100, "photo", 64, prefix="x", progress=False)
    assert paths[0].stat().st_mtime_ns == before and paths[2].with_suffix(".pts").exists()
    # in parallel: the same files
    par = pg.write_set(tmp_path / "b", 3, 100, "photo", 64, prefix="x", processes=2, progress=False)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, par))
