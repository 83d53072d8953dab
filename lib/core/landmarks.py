"""The 68-point iBUG / 300-W landmark scheme: index groups, flip permutation,
normalising distances and the published WFLW 98-to-68 correspondence; and the
dense scheme of rendered faces (257 points along the same contours).

**Dense scheme.** Each 68-point group is a contour (open: jaw, brows, nose
bridge, nostrils; closed: eyes, lips). The dense scheme samples the uniform
Catmull-Rom spline through each group's points (``catmull_rom``) at
``DENSE_PER_SEGMENT`` = 4 points per segment: jaw 65, each brow 17, nose bridge
13, nostrils 17, each eye 24, outer lips 48, inner lips 32, 257 in all. The
spline passes through its control points, so iBUG point ``i`` of a group is
dense point ``IBUG_IN_DENSE[i]`` exactly (every fourth point of its contour).
The procedural renderer draws its faces along these splines
(``lib.data.procedural.dense_curves``, 8 per segment, of which these are every
second point), and its 3D face model is projected by an affine map, under which
a spline of projected points is the projection of the spline of the 3D points:
the dense labels of a rendered face are exact. ``to_dense`` is linear
(``DENSE_MATRIX`` (257, 68)); the distances below accept either scheme."""
from __future__ import annotations

import numpy as np

N_POINTS = 68

GROUPS = {
    "jaw": list(range(0, 17)),
    "right_brow": list(range(17, 22)),  # subject's right, image left
    "left_brow": list(range(22, 27)),
    "nose_bridge": list(range(27, 31)),
    "nostrils": list(range(31, 36)),
    "right_eye": list(range(36, 42)),
    "left_eye": list(range(42, 48)),
    "outer_lips": list(range(48, 60)),
    "inner_lips": list(range(60, 68)),
}
# Closed curves are drawn as loops, the rest as open polylines.
CLOSED = {"right_eye", "left_eye", "outer_lips", "inner_lips"}

OUTER_EYE_CORNERS = (36, 45)  # inter-ocular normalisation (300-W, the paper's Table 1)


def _flip_permutation() -> np.ndarray:
    perm = list(range(N_POINTS))
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lips
    pairs += [(60, 64), (61, 63), (67, 65)]  # inner lips
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return np.array(perm)


FLIP_PERMUTATION = _flip_permutation()


def catmull_rom(points: np.ndarray, closed: bool = False, per_segment: int = 8) -> np.ndarray:
    """Dense smooth curve through `points` (uniform Catmull-Rom), `per_segment` samples per
    segment starting at each control point; a closed curve ends on its first point again.
    Linear in `points`, whose columns may be anything (coordinates, weights)."""
    pts = np.asarray(points, np.float64)
    if closed:
        ext = np.vstack([pts[-1], pts, pts[0], pts[1]])
    else:
        ext = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(len(ext) - 3):
        p0, p1, p2, p3 = ext[i:i + 4]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(pts[:1] if closed else pts[-1:])
    return np.vstack(out)


DENSE_PER_SEGMENT = 4


def _dense_scheme():
    eye = np.eye(N_POINTS)
    rows, groups, ibug = [], {}, np.zeros(N_POINTS, int)
    for g, idx in GROUPS.items():
        w = catmull_rom(eye[idx], g in CLOSED, DENSE_PER_SEGMENT)
        if g in CLOSED:
            w = w[:-1]  # the closing point is the first one again
        start = sum(len(r) for r in rows)
        groups[g] = list(range(start, start + len(w)))
        ibug[idx] = start + DENSE_PER_SEGMENT * np.arange(len(idx))
        rows.append(w)
    return np.vstack(rows), groups, ibug


DENSE_MATRIX, DENSE_GROUPS, IBUG_IN_DENSE = _dense_scheme()
N_DENSE = len(DENSE_MATRIX)


def to_dense(points: np.ndarray) -> np.ndarray:
    """(..., 68, 2) iBUG points -> (..., 257, 2) dense points along the same splines."""
    return np.einsum("dk,...kc->...dc", DENSE_MATRIX, np.asarray(points, np.float64))


def _dense_flip_permutation() -> np.ndarray:
    # mirroring permutes the 68 points; the spline weights of the mirrored points are the
    # dense weights permuted: find, for each dense point, the one it becomes
    mirrored = DENSE_MATRIX[:, FLIP_PERMUTATION]
    perm = np.array([int(np.argmin(np.abs(DENSE_MATRIX - row).sum(1))) for row in mirrored])
    assert np.allclose(DENSE_MATRIX[perm], mirrored) and len(set(perm)) == N_DENSE
    return perm


DENSE_FLIP_PERMUTATION = _dense_flip_permutation()


def as_68(points: np.ndarray) -> np.ndarray:
    """The 68 iBUG points of (..., 68, 2) or dense (..., 257, 2) points."""
    k = points.shape[-2]
    if k == N_DENSE:
        return points[..., IBUG_IN_DENSE, :]
    if k != N_POINTS:
        raise ValueError(f"{k} points: neither the 68-point iBUG scheme nor the {N_DENSE}-point dense one")
    return points

# WFLW's 98 points to the 68 of 300-W (the correspondence published with WFLW
# and used by its evaluation code): every other contour point, the upper
# eyebrow arcs, and the 6 of 8 eye points that sit where 300-W puts its own.
WFLW_TO_68 = np.array(
    list(range(0, 33, 2))  # jaw 0-16
    + [33, 34, 35, 36, 37]  # right brow
    + [42, 43, 44, 45, 46]  # left brow
    + [51, 52, 53, 54]  # nose bridge
    + [55, 56, 57, 58, 59]  # nostrils
    + [60, 61, 63, 64, 65, 67]  # right eye
    + [68, 69, 71, 72, 73, 75]  # left eye
    + list(range(76, 96))  # lips
)


def flip_landmarks(points: np.ndarray, width: float) -> np.ndarray:
    """Mirror landmarks horizontally in an image of `width` pixels (0-based
    pixel centres) and swap left/right indices so point i keeps its meaning."""
    out = points.copy()
    out[:, 0] = (width - 1) - out[:, 0]
    perm = {N_POINTS: FLIP_PERMUTATION, N_DENSE: DENSE_FLIP_PERMUTATION}.get(len(points))
    if perm is None:
        raise ValueError(f"flip: {len(points)} points, expected {N_POINTS} (iBUG) or {N_DENSE} (dense)")
    return out[perm]


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners; works on (68, 2) or (N, 68, 2) (or dense points)."""
    points = as_68(points)
    a, b = OUTER_EYE_CORNERS
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def inter_pupil(points: np.ndarray) -> np.ndarray:
    """Distance between the eye centres (mean of each eye's six points)."""
    points = as_68(points)
    right = points[..., GROUPS["right_eye"], :].mean(axis=-2)
    left = points[..., GROUPS["left_eye"], :].mean(axis=-2)
    return np.linalg.norm(right - left, axis=-1)


def eye_angle(points: np.ndarray) -> np.ndarray:
    """The tilt of the line from the right eye's centre to the left eye's, in degrees
    (image axes, y down: positive when the left eye lies lower in the picture); 0 for an
    upright face. ``crop.crop(..., angle=eye_angle(points))`` levels the eyes. Works on
    (68, 2) or (N, 68, 2) (or dense points)."""
    points = as_68(points)
    d = points[..., GROUPS["left_eye"], :].mean(axis=-2) - points[..., GROUPS["right_eye"], :].mean(axis=-2)
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


def box_diagonal(points: np.ndarray) -> np.ndarray:
    """Diagonal of the landmarks' bounding box."""
    points = as_68(points)
    size = points.max(axis=-2) - points.min(axis=-2)
    return np.linalg.norm(size, axis=-1)


SPREAD_LIMIT = 8.0  # a face's points lie within this many median distances of their median point


def spread(points: np.ndarray) -> np.ndarray:
    """Each point's distance from the points' median, in units of the median of those distances:
    a robust measure of how far a point lies from the others. The 68 points of a face reach about
    2 (jaw and chin; at most 3.6 over the cpu profile's 2,601 real faces, 4.8 over edited and
    exaggerated synthetic ones); one point misplaced far off the face stands out however far it is,
    since neither the median point nor the median distance moves with it."""
    pts = np.asarray(points, np.float64)
    d = np.linalg.norm(pts - np.median(pts, axis=0), axis=1)
    scale = float(np.median(d))
    return d / scale if scale > 0 else np.where(d > 0, np.inf, 0.0)


def robust_box(points: np.ndarray, limit: float = SPREAD_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): the bounding box of the points whose ``spread`` is at most `limit`, i.e. the face's
    extent without outlying points, which would otherwise widen it (and every tolerance read from it)."""
    pts = np.asarray(points, np.float64)
    inliers = pts[spread(pts) <= limit]
    if not len(inliers):
        inliers = pts
    return inliers.min(axis=0), inliers.max(axis=0)


def robust_diagonal(points: np.ndarray, limit: float = SPREAD_LIMIT) -> float:
    """The diagonal of ``robust_box``: the face's size, unmoved by an outlying point."""
    lo, hi = robust_box(points, limit)
    return float(np.linalg.norm(hi - lo))


def validate(points: np.ndarray, source: str, image_size: tuple[int, int] | None = None,
             tolerance: float = 0.1) -> np.ndarray:
    """Return points as float64 (68, 2) or raise ValueError naming `source`.

    `image_size` is (height, width); points may stick out of the image by
    `tolerance` times the face size (annotators place occluded jaw points
    just outside the frame), anything further is an error. The face size is the
    diagonal of ``robust_box``, the extent of the points without outliers, so a
    misplaced point does not widen its own tolerance."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{source}: landmark array of shape {pts.shape}, expected (68, 2)")
    if pts.shape[0] != N_POINTS:
        raise ValueError(f"{source}: {pts.shape[0]} points, expected {N_POINTS}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{source}: NaN or infinite coordinates")
    if image_size is not None:
        h, w = image_size
        slack = tolerance * robust_diagonal(pts)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        if lo[0] < -slack or lo[1] < -slack or hi[0] > w - 1 + slack or hi[1] > h - 1 + slack:
            raise ValueError(
                f"{source}: coordinates outside the {w}x{h} image "
                f"(x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f}; at most {slack:.1f} px out allowed)")
    return pts
