"""The landmark condition image: the one renderer used for training and for
synthesis, so that the ControlNet sees at sampling time exactly what it saw
in training.

Each facial part is drawn as an anti-aliased polyline in its own colour on
black (eyes and lips as closed loops), with sub-pixel precision; colours let
the network tell the parts apart where they cross or touch (brows over eyes,
lips on a small face)."""
from __future__ import annotations

import cv2
import numpy as np

from ..core import landmarks as lm

PART_COLOURS = {  # RGB
    "jaw": (255, 255, 255),
    "right_brow": (255, 64, 64),
    "left_brow": (64, 255, 64),
    "nose_bridge": (64, 64, 255),
    "nostrils": (255, 255, 64),
    "right_eye": (255, 64, 255),
    "left_eye": (64, 255, 255),
    "outer_lips": (255, 160, 32),
    "inner_lips": (160, 32, 255),
}
_SHIFT = 4  # cv2 fixed-point bits: 1/16 px precision


def render_landmarks(points: np.ndarray, size: int, thickness: int | None = None) -> np.ndarray:
    """(68, 2) landmarks in pixel coordinates of a `size` x `size` image -> RGB uint8 condition image."""
    pts = np.asarray(points, np.float64)
    if pts.shape != (lm.N_POINTS, 2) or not np.isfinite(pts).all():
        raise ValueError(f"render_landmarks: expected finite (68, 2) landmarks, got shape {pts.shape}")
    thickness = thickness or max(1, round(size / 128))
    canvas = np.zeros((size, size, 3), np.uint8)
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    for part, idx in lm.GROUPS.items():
        cv2.polylines(canvas, [fixed[idx]], part in lm.CLOSED, PART_COLOURS[part], thickness, cv2.LINE_AA, _SHIFT)
    return canvas


def render_batch(points: np.ndarray, size: int) -> np.ndarray:
    """(N, 68, 2) -> (N, size, size, 3) uint8."""
    return np.stack([render_landmarks(p, size) for p in points]) if len(points) else np.zeros((0, size, size, 3), np.uint8)
