"""The 68-point iBUG / 300-W landmark scheme: index groups, flip permutation,
normalising distances and the published WFLW 98-to-68 correspondence."""
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
    return out[FLIP_PERMUTATION]


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners; works on (68, 2) or (N, 68, 2)."""
    a, b = OUTER_EYE_CORNERS
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def inter_pupil(points: np.ndarray) -> np.ndarray:
    """Distance between the eye centres (mean of each eye's six points)."""
    right = points[..., GROUPS["right_eye"], :].mean(axis=-2)
    left = points[..., GROUPS["left_eye"], :].mean(axis=-2)
    return np.linalg.norm(right - left, axis=-1)


def box_diagonal(points: np.ndarray) -> np.ndarray:
    """Diagonal of the landmarks' bounding box."""
    size = points.max(axis=-2) - points.min(axis=-2)
    return np.linalg.norm(size, axis=-1)


def validate(points: np.ndarray, source: str, image_size: tuple[int, int] | None = None,
             tolerance: float = 0.1) -> np.ndarray:
    """Return points as float64 (68, 2) or raise ValueError naming `source`.

    `image_size` is (height, width); points may stick out of the image by
    `tolerance` times the face size (annotators place occluded jaw points
    just outside the frame), anything further is an error."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{source}: landmark array of shape {pts.shape}, expected (68, 2)")
    if pts.shape[0] != N_POINTS:
        raise ValueError(f"{source}: {pts.shape[0]} points, expected {N_POINTS}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{source}: NaN or infinite coordinates")
    if image_size is not None:
        h, w = image_size
        slack = tolerance * float(box_diagonal(pts))
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        if lo[0] < -slack or lo[1] < -slack or hi[0] > w - 1 + slack or hi[1] > h - 1 + slack:
            raise ValueError(
                f"{source}: coordinates outside the {w}x{h} image "
                f"(x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f})")
    return pts
