"""Tests for lib.styles: the artistic filters (shape, determinism, distinctness,
kept face structure) and the geometry of the Face-of-Art-style baseline
(thin-plate-spline warp, caricature exaggeration)."""
import itertools
from functools import lru_cache

import cv2
import numpy as np
import pytest

from lib.generator import styles as st
from lib.data.procedural import render_face

REQUIRED = ["pencil sketch", "colour pencil", "cartoon", "oil painting", "watercolour",
            "ink drawing", "pop art", "engraving"]


@lru_cache(maxsize=None)
def _face(seed: int, size: int):
    return render_face(seed, "photo", size)


@lru_cache(maxsize=None)
def _mean_shape(size: int) -> np.ndarray:
    return np.mean([_face(s, size).landmarks for s in range(20, 26)], axis=0)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _band(img: np.ndarray, size: int) -> np.ndarray:
    """Band-pass luminance at the scale of eyes, nose and mouth (paper and stroke
    textures are finer, the face outline coarser)."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), max(size / 96, 1.2)) - cv2.GaussianBlur(g, (0, 0), size / 32)


def _structure(photo: np.ndarray, other: np.ndarray, points: np.ndarray) -> float:
    """Correlation of the feature-scale structure inside the inner-face box."""
    size = photo.shape[0]
    (x0, y0), (x1, y1) = np.floor(points[17:].min(0)).astype(int), np.ceil(points[17:].max(0)).astype(int)
    a = _band(photo, size)[y0:y1, x0:x1].ravel()
    b = _band(other, size)[y0:y1, x0:x1].ravel()
    return float(np.corrcoef(a, b)[0, 1])


# ------------------------------------------------------------------ styles

def test_style_names_in_order():
    names = list(st.STYLES)
    assert names[:8] == REQUIRED
    assert len(names) <= 10


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("style", list(st.STYLES))
def test_style_keeps_shape_and_dtype(style, size):
    img = _face(1, size).image
    out = st.stylise(img, style, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.std() > 10  # a picture, not a flat fill


@pytest.mark.parametrize("style", list(st.STYLES))
def test_style_accepts_small_non_square_images(style):
    img = cv2.resize(_face(2, 128).image, (80, 32), interpolation=cv2.INTER_AREA)
    out = st.stylise(img, style, np.random.default_rng(0))
    assert out.shape == (32, 80, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("style", list(st.STYLES))
def test_style_is_deterministic_per_seed_and_varies_with_it(style):
    img = _face(3, 96).image
    a = st.stylise(img, style, np.random.default_rng(5))
    b = st.stylise(img, style, np.random.default_rng(5))
    c = st.stylise(img, style, np.random.default_rng(6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the generator really drives palette / strokes / paper


@pytest.mark.parametrize("size", [64, 256])
def test_styles_are_pairwise_distinct_and_differ_from_the_photo(size):
    img = _face(1, size).image
    outs = {name: st.stylise(img, name, np.random.default_rng(0)) for name in st.STYLES}
    for name, out in outs.items():
        assert _mad(out, img) > 12, name
    for (n1, o1), (n2, o2) in itertools.combinations(outs.items(), 2):
        assert _mad(o1, o2) > 12, (n1, n2)


@pytest.mark.parametrize("size", [64, 256])
def test_styles_keep_the_face_structure(size):
    """Eyes, brows, nose and mouth stay where the landmarks are: averaged over faces
    (light and dark skin), the feature-scale structure of every style correlates with
    the photo's, unlike a filter that blurs the face away or a picture that is off by
    a few pixels."""
    faces = [_face(seed, size) for seed in (1, 4, 7, 10)]
    for name in st.STYLES:
        score = np.mean([_structure(f.image, st.stylise(f.image, name, np.random.default_rng(f.seed)), f.landmarks)
                         for f in faces])
        assert score > 0.5, (name, size, score)
    # the measure can fail
    blurred = np.mean([_structure(f.image, cv2.GaussianBlur(f.image, (0, 0), size / 12), f.landmarks)
                       for f in faces])
    shifted = np.mean([_structure(f.image, np.roll(f.image, size // 16, axis=1), f.landmarks) for f in faces])
    assert blurred < 0.3 and shifted < 0.3


def test_unknown_style_raises_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match="no such style") as err:
        st.stylise(_face(1, 64).image, "no such style", np.random.default_rng(0))
    assert "pencil sketch" in str(err.value) and "engraving" in str(err.value)


def test_stylise_uses_the_table():
    img = _face(1, 64).image
    assert np.array_equal(st.stylise(img, "cartoon", np.random.default_rng(1)),
                          st.STYLES["cartoon"](img, np.random.default_rng(1)))


def test_style_prompt():
    assert st.style_prompt("oil painting") == "a portrait of oil painting style"


# ------------------------------------------------------------------ geometry

def test_tps_warp_with_unmoved_points_is_identity():
    face = _face(2, 128)
    out = st.tps_warp(face.image, face.landmarks, face.landmarks)
    assert out.shape == face.image.shape and out.dtype == face.image.dtype
    assert np.abs(out.astype(int) - face.image.astype(int)).max() <= 1


def test_tps_warp_moves_content_to_the_destination():
    img = np.zeros((128, 128, 3), np.uint8)
    cv2.circle(img, (50, 60), 3, (255, 255, 255), -1)
    src = np.array([[50, 60], [20, 25], [100, 20], [25, 105], [105, 100], [95, 60]], np.float64)
    dst = src.copy()
    dst[0] += (10, 5)
    out = st.tps_warp(img, src, dst)[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:128, 0:128]
    centroid = np.array([(out * xx).sum(), (out * yy).sum()]) / out.sum()
    assert np.hypot(*(centroid - dst[0])) < 1.0
    assert np.hypot(*(centroid - src[0])) > 10  # it did move


def test_tps_warp_keeps_the_border_in_place():
    face = _face(3, 128)
    moved = st.exaggerate(face.landmarks, _mean_shape(128), np.random.default_rng(0), strength=(0.8, 0.8))
    out = st.tps_warp(face.image, face.landmarks, moved).astype(int)
    img = face.image.astype(int)
    frame = np.ones(img.shape[:2], bool)
    frame[2:-2, 2:-2] = False
    assert np.abs(out - img)[frame].mean() < 1.0
    assert (out[[0, 0, -1, -1], [0, -1, 0, -1]] == img[[0, 0, -1, -1], [0, -1, 0, -1]]).all()
    assert _mad(out, img) > 2  # while the face itself moved


def test_exaggerate_with_zero_strength_is_identity():
    pts = _face(4, 128).landmarks
    out = st.exaggerate(pts, _mean_shape(128), np.random.default_rng(0), strength=(0.0, 0.0))
    np.testing.assert_allclose(out, pts, atol=1e-9)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_exaggerate_moves_away_from_the_mean_and_keeps_the_box(seed):
    pts = _face(seed, 128).landmarks
    mean = _mean_shape(128)
    out = st.exaggerate(pts, mean, np.random.default_rng(seed))

    def residual(p):
        return np.linalg.norm(p - st._align_similarity(mean, p), axis=1).mean() / np.sqrt(np.ptp(p, 0).prod())

    assert residual(out) > 1.2 * residual(pts)
    size = lambda p: np.sqrt(np.ptp(p, 0).prod())  # noqa: E731
    assert abs(size(out) / size(pts) - 1) < 0.03
    centre = lambda p: (p.min(0) + p.max(0)) / 2  # noqa: E731
    assert np.hypot(*(centre(out) - centre(pts))) < 1.0


def test_sample_shapes_draws_new_shapes_with_the_few_shapes_spread():
    shapes = np.stack([_face(k, 128).landmarks for k in range(10, 16)])

    def residual(p, shape):  # distance to `shape` up to a similarity transform, in box sizes
        return np.linalg.norm(p - st._align_similarity(shape, p), axis=1).mean() / np.sqrt(np.ptp(p, 0).prod())

    mean = st.sample_shapes(shapes, 3, np.random.default_rng(0), scale=0.0)
    assert np.allclose(mean, mean[0])  # scale 0: the aligned mean shape, every time
    drawn = st.sample_shapes(shapes, 4000, np.random.default_rng(1))
    assert drawn.shape == (4000, *shapes.shape[1:])
    assert np.array_equal(drawn[:5], st.sample_shapes(shapes, 5, np.random.default_rng(1)))  # the generator decides
    # the draws spread about the mean as the few shapes do (up to the sampling error of 4,000 draws) ...
    spread = lambda a, m: np.mean([residual(x, m) for x in a])  # noqa: E731
    own = spread(shapes, mean[0])
    assert 0.8 * own < spread(drawn[:400], mean[0]) < 1.25 * own
    half = st.sample_shapes(shapes, 400, np.random.default_rng(1), scale=0.5)
    assert 0.4 * own < spread(half, mean[0]) < 0.6 * own
    # ... and are new: none is one of the few shapes
    assert min(residual(d, s) for d in drawn[:50] for s in shapes) > 1e-3
    with pytest.raises(ValueError, match="K >= 2"):
        st.sample_shapes(shapes[:1], 3, np.random.default_rng(0))


def test_shape_transfer_takes_the_other_face_s_shape_and_keeps_the_box():
    pts, other = _face(7, 128).landmarks, _face(8, 128).landmarks
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(st.shape_transfer(pts, other[None], rng, weight=(0.0, 0.0)), pts, atol=1e-9)
    out = st.shape_transfer(pts, other[None], rng, weight=(1.0, 1.0))

    def residual(p, shape):  # distance to `shape` up to a similarity transform, in box sizes
        return np.linalg.norm(p - st._align_similarity(shape, p), axis=1).mean() / np.sqrt(np.ptp(p, 0).prod())

    assert residual(pts, other) > 0.01
    assert residual(out, other) < 1e-6  # weight 1: the other face's shape, up to position, scale and rotation
    size = lambda p: np.sqrt(np.ptp(p, 0).prod())  # noqa: E731
    centre = lambda p: (p.min(0) + p.max(0)) / 2  # noqa: E731
    assert abs(size(out) / size(pts) - 1) < 1e-9 and np.hypot(*(centre(out) - centre(pts))) < 1e-9
    half = st.shape_transfer(pts, other[None], np.random.default_rng(0), weight=(0.5, 0.5))
    assert residual(out, other) < residual(half, other) < residual(pts, other)
    shapes = np.stack([other, _face(9, 128).landmarks])
    a = st.shape_transfer(pts, shapes, np.random.default_rng(3))
    assert np.array_equal(a, st.shape_transfer(pts, shapes, np.random.default_rng(3)))  # the generator decides
    with pytest.raises(ValueError, match="expected"):
        st.shape_transfer(pts, other, rng)  # one shape without the leading K axis
    with pytest.raises(ValueError, match="expected"):
        st.shape_transfer(pts, other[None, :30], rng)


def test_geometric_style_transfer():
    face = _face(5, 128)
    img, pts = st.geometric_style_transfer(face.image, face.landmarks, _mean_shape(128), "engraving",
                                           np.random.default_rng(2))
    assert img.shape == face.image.shape and img.dtype == np.uint8
    assert pts.shape == face.landmarks.shape
    assert np.abs(pts - face.landmarks).max() > 1.0
    assert (pts >= 0).all() and (pts <= 127).all()
    img2, pts2 = st.geometric_style_transfer(face.image, face.landmarks, _mean_shape(128), "engraving",
                                             np.random.default_rng(2))
    assert np.array_equal(img, img2) and np.array_equal(pts, pts2)
    with pytest.raises(ValueError, match="nope"):
        st.geometric_style_transfer(face.image, face.landmarks, _mean_shape(128), "nope", np.random.default_rng(2))
