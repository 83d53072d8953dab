import numpy as np
import pytest

from lib.core import landmarks as lm


def test_flip_permutation_is_an_involution():
    assert sorted(lm.FLIP_PERMUTATION) == list(range(68))
    assert (lm.FLIP_PERMUTATION[lm.FLIP_PERMUTATION] == np.arange(68)).all()


def test_flip_twice_is_identity(shape):
    np.testing.assert_allclose(lm.flip_landmarks(lm.flip_landmarks(shape, 128), 128), shape)


def test_flip_keeps_semantics(shape):
    f = lm.flip_landmarks(shape, 128)
    # after flipping, point 36 (image-left outer eye corner) is still left of 45
    assert f[36, 0] < f[45, 0] and f[0, 0] < f[16, 0]
    # the nose tip stays the nose tip, mirrored
    assert f[30, 0] == pytest.approx(127 - shape[30, 0])


def test_normalising_distances_by_hand():
    pts = np.zeros((68, 2))
    pts[36] = [10, 20]
    pts[45] = [40, 60]  # 30-40-50 triangle
    assert lm.inter_ocular(pts) == pytest.approx(50.0)
    pts[lm.GROUPS["right_eye"]] = [0, 0]
    pts[lm.GROUPS["left_eye"]] = [6, 8]
    assert lm.inter_pupil(pts) == pytest.approx(10.0)
    box = np.array([[0, 0], [3, 4]] + [[1, 1]] * 66, float)
    assert lm.box_diagonal(box) == pytest.approx(5.0)


def test_wflw_mapping_is_the_published_one():
    m = lm.WFLW_TO_68
    assert len(m) == 68 and len(set(m)) == 68
    assert list(m[:17]) == list(range(0, 33, 2))
    assert list(m[36:48]) == [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]
    assert m[-1] == 95 and 96 not in m and 97 not in m  # pupils are not 300-W points


@pytest.mark.parametrize("pts, msg", [
    (np.zeros((67, 2)), "67 points, expected 68"),
    (np.full((68, 2), np.nan), "NaN"),
    (np.zeros((68, 3)), "shape"),
])
def test_validate_names_the_problem(pts, msg):
    with pytest.raises(ValueError, match=msg) as e:
        lm.validate(pts, "faces/12.txt")
    assert "faces/12.txt" in str(e.value)


def test_validate_out_of_image(shape):
    lm.validate(shape, "ok.pts", (128, 128))
    with pytest.raises(ValueError, match="outside the 128x128 image"):
        lm.validate(shape + 100, "far.pts", (128, 128))


# ---------------------------------------------------------------- the dense scheme

def test_dense_scheme_has_257_points_and_contains_the_68():
    counts = {g: len(i) for g, i in lm.DENSE_GROUPS.items()}
    assert counts == {"jaw": 65, "right_brow": 17, "left_brow": 17, "nose_bridge": 13, "nostrils": 17,
                      "right_eye": 24, "left_eye": 24, "outer_lips": 48, "inner_lips": 32}
    assert lm.N_DENSE == 257 == sum(counts.values()) and lm.DENSE_MATRIX.shape == (257, 68)
    assert sorted(i for g in lm.DENSE_GROUPS.values() for i in g) == list(range(257))
    # every iBUG point is one dense point, every fourth along its own group's contour
    assert len(set(lm.IBUG_IN_DENSE)) == 68
    for g, idx in lm.GROUPS.items():
        assert list(lm.IBUG_IN_DENSE[idx]) == lm.DENSE_GROUPS[g][::lm.DENSE_PER_SEGMENT][:len(idx)]
    np.testing.assert_allclose(lm.DENSE_MATRIX.sum(1), 1.0)  # an affine combination: moves with the face


def test_to_dense_passes_through_the_68_and_is_linear(shape):
    d = lm.to_dense(shape)
    np.testing.assert_allclose(d[lm.IBUG_IN_DENSE], shape, atol=1e-12)
    batch = np.stack([shape, shape * 2 + 3])
    np.testing.assert_allclose(lm.to_dense(batch)[1], d * 2 + 3, atol=1e-9)
    np.testing.assert_allclose(lm.as_68(d), shape, atol=1e-12)


def test_dense_points_lie_on_the_curves_the_renderer_draws():
    from lib.data import procedural as pg
    face = pg.render_face(5, "photo", 128)
    d = lm.to_dense(face.landmarks)
    for g, idx in lm.DENSE_GROUPS.items():
        curve = face.curves[g][:-1] if g in lm.CLOSED else face.curves[g]
        np.testing.assert_allclose(d[idx], curve[::2], atol=1e-9)  # drawn at 8 per segment, labelled at 4


def test_dense_flip_matches_the_flip_of_the_68(shape):
    d = lm.to_dense(shape)
    np.testing.assert_allclose(lm.flip_landmarks(d, 200), lm.to_dense(lm.flip_landmarks(shape, 200)), atol=1e-9)
    assert (lm.DENSE_FLIP_PERMUTATION[lm.DENSE_FLIP_PERMUTATION] == np.arange(257)).all()
    with pytest.raises(ValueError, match="5 points"):
        lm.flip_landmarks(np.zeros((5, 2)), 10)


def test_distances_read_dense_points_as_their_68(shape):
    d = lm.to_dense(shape)
    for f in (lm.inter_ocular, lm.inter_pupil, lm.box_diagonal):
        assert f(d) == pytest.approx(f(shape))
    with pytest.raises(ValueError, match="neither"):
        lm.inter_ocular(np.zeros((98, 2)))


def test_eye_angle_is_the_tilt_of_the_eye_line(shape):
    assert abs(float(lm.eye_angle(shape))) < 5  # the mean shape is upright
    a = np.radians(20.0)
    turned = shape @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T  # clockwise on screen (y down)
    assert float(lm.eye_angle(turned)) == pytest.approx(20.0 + float(lm.eye_angle(shape)))
    assert float(lm.eye_angle(lm.flip_landmarks(turned, 100.0))) == pytest.approx(-float(lm.eye_angle(turned)))
    assert lm.eye_angle(np.stack([shape, turned])).shape == (2,)


def test_an_outlying_point_does_not_widen_its_own_tolerance(shape):
    """Issue 51, item 4: the out-of-image slack was a tenth of a box including the outlying point, so a
    point ~1,800 px off the face passed; the slack now comes from the face without it (``robust_box``)."""
    face = shape + 100  # a ~100 px face in a 2000 x 2000 image
    far = face.copy()
    far[8] = [-180.0, 1900.0]  # with it, the box's diagonal is ~1,850 px: a 185 px slack would cover x = -180
    assert lm.box_diagonal(far) > 1800
    others = face[np.arange(68) != 8]
    assert lm.robust_diagonal(far) == pytest.approx(float(np.linalg.norm(others.max(0) - others.min(0))), rel=1e-9)
    assert lm.spread(far)[8] > lm.SPREAD_LIMIT and lm.spread(face).max() < 3
    with pytest.raises(ValueError, match="far.pts: coordinates outside the 2000x2000 image"):
        lm.validate(far, "far.pts", (2000, 2000))
    near = shape.copy()
    near[8, 1] = 127 + 5  # a chin point a little below the frame still passes
    lm.validate(near, "near.pts", (128, 128))
    # a face without outliers keeps its tolerance: the robust box is the whole box
    assert lm.robust_diagonal(face) == pytest.approx(float(lm.box_diagonal(face)))
