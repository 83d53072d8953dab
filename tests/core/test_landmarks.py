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
