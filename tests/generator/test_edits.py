import numpy as np
import pytest

from lib.generator import edits
from lib.core import landmarks as lm

NAMES = ["chubby", "linear_transform", "open_eyes", "raised_eyebrow", "stretched_nostrils",
         "eye_shift", "nose_mouth_shift"]
SEEDS = range(8)


@pytest.fixture(scope="module")
def shape() -> np.ndarray:
    """conftest's face, rendered once for the module (rendering costs ~70 ms a test);
    read-only so that any in-place write by an edit fails loudly."""
    from lib.data.procedural import render_face
    pts = render_face(3, "photo", 128).landmarks
    pts.setflags(write=False)
    return pts


def rotate(points: np.ndarray, degrees: float, centre: np.ndarray) -> np.ndarray:
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return centre + (points - centre) @ rot.T


def local(points: np.ndarray) -> np.ndarray:
    """Points in the face frame of the *original* face (so displacements compare)."""
    return edits.to_face_frame(points)[0]


def in_frame_of(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    origin, axes = edits.face_frame(reference)
    return (points - origin) @ axes.T


def moved(before: np.ndarray, after: np.ndarray, tol: float = 1e-9) -> list[int]:
    return np.where(np.abs(after - before).max(axis=1) > tol)[0].tolist()


def inside_polygon(polygon: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd ray casting to the right of each point."""
    x, y = pts[:, :1], pts[:, 1:]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    x_at = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1.0, y1 - y0)
    return ((crosses & (x < x_at)).sum(axis=1) % 2) == 1


def implausibilities(points: np.ndarray) -> list[str]:
    """What is anatomically wrong with a face, judged in its own frame."""
    q = local(points)
    y = q[:, 1]
    bad = []
    for upper, lower in [(37, 41), (38, 40), (43, 47), (44, 46)]:
        if not y[upper] < y[lower]:
            bad.append(f"eye inside out at {upper}/{lower}")
    for brow, eye in [("right_brow", "right_eye"), ("left_brow", "left_eye")]:
        if not y[lm.GROUPS[brow]].max() < y[lm.GROUPS[eye]].min():
            bad.append(f"{brow} not above {eye}")
    mouth = lm.GROUPS["outer_lips"] + lm.GROUPS["inner_lips"]
    if not y[mouth].max() < y[8]:
        bad.append("mouth below chin")
    if not y[mouth].min() > y[lm.GROUPS["nostrils"]].max():
        bad.append("mouth above nose bottom")
    # the jaw, closed over the brows, encloses the eyes, nose and mouth
    outline = q[list(range(17)) + list(range(26, 16, -1))]
    outside = np.where(~inside_polygon(outline, q[27:68]))[0] + 27
    if len(outside):
        bad.append(f"points {outside.tolist()} outside the jaw")
    return bad


# ------------------------------------------------------------------ all edits

def test_edit_names_and_order():
    assert list(edits.EDITS) == NAMES


def test_fixture_face_is_plausible(shape):
    assert implausibilities(shape) == []
    assert implausibilities(rotate(shape, 30, shape.mean(axis=0))) == []


@pytest.mark.parametrize("name", NAMES)
def test_edit_is_pure_and_deterministic(name, shape):
    edit = edits.EDITS[name]
    points = shape.copy()
    out = edit(points, np.random.default_rng(7))
    np.testing.assert_array_equal(points, shape)  # input untouched
    assert out is not points and out.shape == (68, 2) and out.dtype == np.float64
    assert np.abs(out - shape).max() > 0.5  # it really edits (pixels of a 128 px face)
    np.testing.assert_array_equal(out, edit(points, np.random.default_rng(7)))
    other = edit(points, np.random.default_rng(8))
    assert np.abs(other - out).max() > 0.05


@pytest.mark.parametrize("name", NAMES)
def test_edit_accepts_integer_and_list_input(name, shape):
    rounded = np.round(shape).astype(int)
    out = edits.EDITS[name](rounded, np.random.default_rng(0))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, edits.EDITS[name](rounded.tolist(), np.random.default_rng(0)))


@pytest.mark.parametrize("name", NAMES)
def test_edit_commutes_with_rotation(name, shape):
    centre = shape.mean(axis=0)
    for seed in SEEDS:
        direct = rotate(edits.EDITS[name](shape, np.random.default_rng(seed)), 30, centre)
        rotated = edits.EDITS[name](rotate(shape, 30, centre), np.random.default_rng(seed))
        np.testing.assert_allclose(rotated, direct, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_edit_keeps_the_face_plausible(name, shape):
    for seed in range(30):
        out = edits.EDITS[name](shape, np.random.default_rng(seed))
        assert implausibilities(out) == [], (name, seed)


@pytest.mark.parametrize("name", NAMES)
def test_edit_rejects_bad_landmarks(name, shape):
    edit = edits.EDITS[name]
    with pytest.raises(ValueError, match=r"expected \(68, 2\)"):
        edit(np.zeros((68, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="67 points, expected 68"):
        edit(shape[:67], np.random.default_rng(0))
    bad = shape.copy()
    bad[30, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        edit(bad, np.random.default_rng(0))
    squashed = shape.copy()
    squashed[45] = squashed[36]
    with pytest.raises(ValueError, match="outer eye corners"):
        edit(squashed, np.random.default_rng(0))


# ------------------------------------------------------------------ each edit

def test_face_frame_is_upright_for_an_upright_face(shape):
    origin, axes = edits.face_frame(shape)
    np.testing.assert_allclose(origin, (shape[36] + shape[45]) / 2)
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-12)
    assert axes[0, 0] > 0.95 and axes[1, 1] > 0.95  # x to image right, y down to the chin
    q = local(shape)
    assert q[8, 1] > 0 and q[19, 1] < 0 and q[45, 0] > 0 > q[36, 0]


def test_chubby_widens_the_lower_jaw_only(shape):
    before = local(shape)
    half_width = (before[16, 0] - before[0, 0]) / 2
    for seed in SEEDS:
        out = edits.chubby(shape, np.random.default_rng(seed))
        after = in_frame_of(out, shape)
        assert set(moved(shape, out)) <= set(range(1, 16))
        np.testing.assert_allclose(after[[0, 16]], before[[0, 16]], atol=1e-9)
        np.testing.assert_allclose(after[:, 1], before[:, 1], atol=1e-9)  # horizontal only
        # points 4 and 12 are far from the midline: each moves the full tapered amount
        gain = (after[12, 0] - after[4, 0]) - (before[12, 0] - before[4, 0])
        fraction = gain / (2 * half_width * np.sin(np.pi * 4 / 16))
        assert 0.08 - 1e-9 <= fraction <= 0.25 + 1e-9
        # the bulge tapers: the cheeks move more than the jaw tops' neighbours
        shift = np.abs(after[:, 0] - before[:, 0])
        assert shift[4] > shift[1] and shift[12] > shift[15]


def test_linear_transform_is_a_small_affine_about_the_centre(shape):
    ones = np.c_[shape, np.ones(68)]
    for seed in SEEDS:
        out = edits.linear_transform(shape, np.random.default_rng(seed))
        solution, *_ = np.linalg.lstsq(ones, out, rcond=None)
        np.testing.assert_allclose(ones @ solution, out, atol=1e-8)  # exactly affine
        linear = solution[:2].T
        det = np.linalg.det(linear)
        assert 0.85 ** 2 - 1e-9 <= det <= 1.2 ** 2 + 1e-9  # never mirrored, modest area change
        sv = np.linalg.svd(linear, compute_uv=False)
        assert sv.max() < 1.2 * 1.2 and sv.min() > 0.85 * 0.8
        assert np.abs(linear - np.eye(2)).max() > 1e-3
        np.testing.assert_allclose(out.mean(axis=0), shape.mean(axis=0), atol=1e-9)


def test_linear_transform_rotation_is_at_most_15_degrees(shape):
    for seed in range(40):
        out = edits.linear_transform(shape, np.random.default_rng(seed))
        eye_line = lambda p: np.degrees(np.arctan2(*(p[45] - p[36])[::-1]))  # noqa: E731
        # shear and anisotropic scale tilt the eye line a little beyond the rotation
        assert abs(eye_line(out) - eye_line(shape)) < 15 + 10


def eye_height(q: np.ndarray, side: str) -> float:
    (u1, u2), (l1, l2) = edits.EYE_LIDS[side]
    return (q[l1, 1] + q[l2, 1]) / 2 - (q[u1, 1] + q[u2, 1]) / 2


def test_open_eyes_opens_both_eyes_by_20_to_60_percent(shape):
    before = local(shape)
    lids = [37, 38, 40, 41, 43, 44, 46, 47]
    for seed in SEEDS:
        out = edits.open_eyes(shape, np.random.default_rng(seed))
        after = in_frame_of(out, shape)
        assert set(moved(shape, out)) == set(lids)
        np.testing.assert_allclose(after[:, 0], before[:, 0], atol=1e-9)  # lids move vertically
        for side, eye in (("right", range(36, 42)), ("left", range(42, 48))):
            h, w = eye_height(before, side), abs(before[eye[3], 0] - before[eye[0], 0])
            gain = eye_height(after, side) - h
            # the lower lid always moves the full amount, the upper lid at most as much
            assert 2 * 0.2 * max(h, w / 3) - 1e-9 <= gain <= 2 * 0.6 * max(h, w / 3) + 1e-9
            lower = edits.EYE_LIDS[side][1]
            assert (after[list(lower), 1] > before[list(lower), 1]).all()


def test_open_eyes_opens_closed_eyes(shape):
    closed = shape.copy()
    for upper, lower, a, b in [((37, 38), (41, 40), 36, 39), ((43, 44), (47, 46), 42, 45)]:
        for u, lo in zip(upper, lower):
            closed[[u, lo]] = closed[a] + (closed[b] - closed[a]) * (1 / 3 if u in (37, 43) else 2 / 3)
    q = local(closed)
    assert abs(eye_height(q, "right")) < 1e-9 and abs(eye_height(q, "left")) < 1e-9
    after = local(edits.open_eyes(closed, np.random.default_rng(0)))
    for side, (a, b) in (("right", (36, 39)), ("left", (42, 45))):
        width = abs(q[b, 0] - q[a, 0])
        assert eye_height(after, side) >= 2 * 0.2 * width / 3 - 1e-9
    assert implausibilities(edits.open_eyes(closed, np.random.default_rng(0))) == []


def test_raised_eyebrow_lifts_only_brows_with_an_arch(shape):
    before = local(shape)
    iod = float(lm.inter_ocular(shape))
    seen = set()
    for seed in range(30):
        out = edits.raised_eyebrow(shape, np.random.default_rng(seed))
        after = in_frame_of(out, shape)
        which = tuple(sorted(set(moved(shape, out))))
        assert which in {tuple(range(17, 22)), tuple(range(22, 27)), tuple(range(17, 27))}
        seen.add(which)
        np.testing.assert_allclose(after[:, 0], before[:, 0], atol=1e-9)  # straight up the face
        lift = before[:, 1] - after[:, 1]
        for brow in (range(17, 22), range(22, 27)):
            if brow[0] in which:
                middle, ends = lift[brow[2]], lift[[brow[0], brow[4]]]
                assert 0.05 * iod - 1e-9 <= middle <= 0.2 * iod + 1e-9
                assert (ends < middle - 1e-6).all() and (ends > 0).all()
    assert len(seen) == 3  # right, left and both all occur


def test_stretched_nostrils_widens_only_the_nostrils(shape):
    before = local(shape)
    for seed in SEEDS:
        out = edits.stretched_nostrils(shape, np.random.default_rng(seed))
        after = in_frame_of(out, shape)
        assert set(moved(shape, out)) <= set(range(31, 36)) and moved(shape, out)
        np.testing.assert_array_equal(out[:17], shape[:17])  # the jaw is untouched
        np.testing.assert_allclose(after[31:36, 1], before[31:36, 1], atol=1e-9)
        np.testing.assert_allclose(after[31:36, 0].mean(), before[31:36, 0].mean(), atol=1e-9)
        ratio = (after[35, 0] - after[31, 0]) / (before[35, 0] - before[31, 0])
        assert 1.15 - 1e-9 <= ratio <= 1.5 + 1e-9


def test_eye_shift_moves_eyes_and_brows_symmetrically(shape):
    before = local(shape)
    iod = float(lm.inter_ocular(shape))
    right, left = list(range(17, 22)) + list(range(36, 42)), list(range(22, 27)) + list(range(42, 48))
    centres = lambda q: (q[42:48].mean(axis=0), q[36:42].mean(axis=0))  # noqa: E731
    signs = set()
    for seed in range(20):
        out = edits.eye_shift(shape, np.random.default_rng(seed))
        after = in_frame_of(out, shape)
        assert set(moved(shape, out)) == set(right + left)
        d_right, d_left = after[right] - before[right], after[left] - before[left]
        # each side moves rigidly, mirrored about the midline
        np.testing.assert_allclose(d_right, d_right[:1].repeat(len(right), 0), atol=1e-9)
        np.testing.assert_allclose(d_left, d_left[:1].repeat(len(left), 0), atol=1e-9)
        np.testing.assert_allclose(d_left[0], d_right[0] * [-1, 1], atol=1e-9)
        assert abs(d_left[0, 1]) <= 0.5 * abs(d_left[0, 0]) + 1e-9  # only slightly up/down
        change = np.linalg.norm(np.subtract(*centres(after))) - np.linalg.norm(np.subtract(*centres(before)))
        assert 2 * 0.05 * iod - 1e-9 <= abs(change) <= 2 * 0.15 * iod + 1e-9
        signs.add(np.sign(change))
    assert signs == {-1.0, 1.0}  # apart and together both occur


def test_nose_mouth_shift_moves_nose_bottom_and_mouth_together(shape):
    before = local(shape)
    iod = float(lm.inter_ocular(shape))
    directions = set()
    for seed in range(20):
        out = edits.nose_mouth_shift(shape, np.random.default_rng(seed))
        after = in_frame_of(out, shape)
        assert set(moved(shape, out)) == set(range(28, 36)) | set(range(48, 68))
        nose = after[31:36].mean(axis=0) - before[31:36].mean(axis=0)
        mouth = after[48:68].mean(axis=0) - before[48:68].mean(axis=0)
        np.testing.assert_allclose(nose, mouth, atol=1e-9)
        assert abs(nose[0]) < 1e-9  # along the face's vertical axis
        assert 0.05 * iod - 1e-9 <= abs(nose[1]) <= 0.15 * iod + 1e-9
        np.testing.assert_allclose(after[30] - before[30], nose, atol=1e-9)  # the tip follows
        directions.add(np.sign(nose[1]))
    assert directions == {-1.0, 1.0}


def test_nose_mouth_shift_stops_before_the_chin(shape):
    # a mouth almost on the chin has no room to move down
    low = shape.copy()
    low[48:68] += (shape[8] - shape[57]) * 0.9
    for seed in range(20):
        out = edits.nose_mouth_shift(low, np.random.default_rng(seed))
        q = in_frame_of(out, low)
        assert q[48:68, 1].max() < q[8, 1]


# ------------------------------------------------------------------ random_edits

@pytest.mark.parametrize("angle", [0, 30])
def test_random_edits_stay_plausible_over_200_seeds(shape, angle):
    face = rotate(shape, angle, shape.mean(axis=0))
    for seed in range(200):
        out, names = edits.random_edits(face, np.random.default_rng(seed), 128)
        assert implausibilities(out) == [], (seed, names)
        assert len(names) == 2 and len(set(names)) == 2 and set(names) <= set(NAMES)


def test_all_seven_edits_together_stay_plausible(shape):
    for seed in range(50):
        out, names = edits.random_edits(shape, np.random.default_rng(seed), 128, k=7)
        assert sorted(names) == sorted(NAMES)
        assert implausibilities(out) == [], (seed, names)


def test_random_edits_applies_the_named_edits_in_turn(shape):
    out, names = edits.random_edits(shape, np.random.default_rng(11), 128, margin=0.0)
    replay = np.random.default_rng(11)
    replay.choice(len(NAMES), size=2, replace=False)  # the same draw that picked the names
    expected = shape
    for name in names:
        expected = edits.EDITS[name](expected, replay)
    np.testing.assert_allclose(out, edits.fit_in_image(expected, 128, 0.0), atol=1e-12)


def test_random_edits_picks_edits_uniformly(shape):
    counts = dict.fromkeys(NAMES, 0)
    for seed in range(700):
        for name in edits.random_edits(shape, np.random.default_rng(seed), 128)[1]:
            counts[name] += 1
    # 1400 picks over 7 edits: 200 each, standard deviation about 13
    assert all(150 <= c <= 250 for c in counts.values()), counts


@pytest.mark.parametrize("margin", [0.0, 0.05, 0.2])
def test_random_edits_stays_inside_the_image_with_margin(shape, margin):
    size = 128
    lo, hi = margin * size, size - margin * size
    for seed in range(100):
        out, _ = edits.random_edits(shape, np.random.default_rng(seed), size, margin=margin)
        assert out.min() >= lo - 1e-9 and out.max() <= hi + 1e-9


def test_fit_keeps_the_face_as_large_as_possible(shape):
    centre = shape.mean(axis=0)
    size, margin = 128, 0.05
    big = centre + 2.5 * (shape - centre)  # far larger than the image
    fitted = edits.fit_in_image(big, size, margin)
    extent = fitted.max(axis=0) - fitted.min(axis=0)
    assert extent.max() == pytest.approx((1 - 2 * margin) * size)
    assert fitted.min() >= margin * size - 1e-9 and fitted.max() <= size * (1 - margin) + 1e-9
    # a uniform scale: the shape is unchanged up to scale and translation
    ratio = extent / (big.max(axis=0) - big.min(axis=0))
    assert ratio[0] == pytest.approx(ratio[1])
    # a face that only pokes out is moved, not shrunk
    shifted = shape + [60.0, 0.0]
    moved_in = edits.fit_in_image(shifted, size, margin)
    np.testing.assert_allclose(moved_in.max(axis=0) - moved_in.min(axis=0),
                               shifted.max(axis=0) - shifted.min(axis=0), atol=1e-9)
    assert moved_in[:, 0].max() == pytest.approx(size * (1 - margin))
    # a face already inside is left alone
    np.testing.assert_array_equal(edits.fit_in_image(shape, size, margin), shape)


def test_random_edits_fits_a_face_that_leaves_the_image(shape):
    out, names = edits.random_edits(shape + [70.0, -45.0], np.random.default_rng(3), 128)
    assert out.min() >= 6.4 - 1e-9 and out.max() <= 121.6 + 1e-9
    assert implausibilities(out) == [], names


def test_random_edits_rejects_bad_input(shape):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"random_edits: landmark array of shape \(68,\), expected \(68, 2\)"):
        edits.random_edits(shape[:, 0], rng, 128)
    with pytest.raises(ValueError, match="random_edits: 70 points, expected 68"):
        edits.random_edits(np.zeros((70, 2)), rng, 128)
    bad = shape.copy()
    bad[8, 0] = np.inf
    with pytest.raises(ValueError, match="random_edits: NaN or infinite coordinates"):
        edits.random_edits(bad, rng, 128)
    with pytest.raises(ValueError, match="k=8, but there are 7 edits"):
        edits.random_edits(shape, rng, 128, k=8)
    with pytest.raises(ValueError, match="k=-1"):
        edits.random_edits(shape, rng, 128, k=-1)
    with pytest.raises(ValueError, match="margin 0.5"):
        edits.random_edits(shape, rng, 128, margin=0.5)
    with pytest.raises(ValueError, match="image size 0"):
        edits.random_edits(shape, rng, 0)


def test_random_edits_with_no_edits_returns_the_face(shape):
    out, names = edits.random_edits(shape, np.random.default_rng(0), 128, k=0)
    assert names == [] and out is not shape
    np.testing.assert_array_equal(out, shape)


# ------------------------------------------------------------------ exaggeration (the caricature edit)

def _mean_of_faces(size=128):
    from lib.data.procedural import render_face
    return np.mean([render_face(i, "photo", size).landmarks for i in range(20, 40)], axis=0)


def _deviation(p, mean):
    from lib.generator.styles import _align_similarity as _align
    return np.linalg.norm(p - _align(mean, p), axis=1).mean() / np.sqrt(np.ptp(p, 0).prod())


@pytest.mark.parametrize("per_part", [False, True])
def test_exaggeration_scales_the_deviation_from_the_mean_and_keeps_the_box(shape, per_part):
    mean = _mean_of_faces()
    edit = edits.exaggeration(mean, (1.5, 1.5), per_part=per_part)
    out = edit(shape, np.random.default_rng(0))
    assert _deviation(out, mean) > 1.3 * _deviation(shape, mean)
    np.testing.assert_allclose((out.min(0) + out.max(0)) / 2, (shape.min(0) + shape.max(0)) / 2, atol=1e-6)
    assert np.sqrt(np.ptp(out, 0).prod()) == pytest.approx(np.sqrt(np.ptp(shape, 0).prod()))
    assert implausibilities(out) == []
    # factor 1 changes nothing
    np.testing.assert_allclose(edits.exaggeration(mean, (1.0, 1.0))(shape, np.random.default_rng(0)), shape, atol=1e-9)


def test_exaggeration_per_part_draws_a_factor_per_part(shape):
    mean = _mean_of_faces()
    whole = edits.exaggeration(mean, (1.3, 2.0))(shape, np.random.default_rng(1))
    parts = edits.exaggeration(mean, (1.3, 2.0), per_part=True)(shape, np.random.default_rng(1))
    assert np.abs(whole - parts).max() > 0.1


def test_edit_set_builds_exaggeration_and_rejects_unknown_names(shape):
    mean = _mean_of_faces()
    assert list(edits.edit_set()) == NAMES  # the paper's seven
    chosen = edits.edit_set([*NAMES, "exaggeration"], mean)
    assert list(chosen) == [*NAMES, "exaggeration"]
    out, names = edits.random_edits(shape, np.random.default_rng(0), 128, 8, edits=chosen)
    assert sorted(names) == sorted(chosen) and implausibilities(out) == []
    with pytest.raises(ValueError, match="mean shape"):
        edits.edit_set(["exaggeration"])
    with pytest.raises(ValueError, match="unknown edit"):
        edits.edit_set(["smile"], mean)
    with pytest.raises(ValueError, match="factor range"):
        edits.exaggeration(mean, (0.8, 1.2))
