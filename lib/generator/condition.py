"""The landmark conditions: the one renderer used for training and for
synthesis, so that the generator sees at sampling time exactly what it saw
in training.

Each facial part is drawn as an anti-aliased polyline (eyes and lips as closed
loops) with sub-pixel precision, in one of two forms:

- ``render_landmarks``: one RGB image, each part in its own colour on black
  (the ControlNet's condition image, as in the paper); colours let the network
  tell the parts apart where they cross or touch (brows over eyes, lips on a
  small face);
- ``render_parts``: one channel per part (``PARTS``), the condition the small
  profiles' UNet takes concatenated to its input (``diffusion.model.conditioning:
  concat``), where no channel has to be untangled from another."""
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


def _check(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    if pts.shape != (lm.N_POINTS, 2) or not np.isfinite(pts).all():
        raise ValueError(f"landmark condition: expected finite (68, 2) landmarks, got shape {pts.shape}")
    return pts


def render_landmarks(points: np.ndarray, size: int, thickness: int | None = None) -> np.ndarray:
    """(68, 2) landmarks in pixel coordinates of a `size` x `size` image -> RGB uint8 condition image."""
    pts = _check(points)
    thickness = thickness or max(1, round(size / 128))
    canvas = np.zeros((size, size, 3), np.uint8)
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    for part, idx in lm.GROUPS.items():
        cv2.polylines(canvas, [fixed[idx]], part in lm.CLOSED, PART_COLOURS[part], thickness, cv2.LINE_AA, _SHIFT)
    return canvas


PARTS = tuple(lm.GROUPS)  # the channels of render_parts, in order


def render_parts(points: np.ndarray, size: int, thickness: int | None = None) -> np.ndarray:
    """(68, 2) landmarks -> (size, size, len(PARTS)) uint8: each part drawn in its own channel."""
    pts = _check(points)
    thickness = thickness or max(1, round(size / 128))
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    out = np.zeros((size, size, len(PARTS)), np.uint8)
    for k, part in enumerate(PARTS):
        canvas = np.zeros((size, size), np.uint8)
        cv2.polylines(canvas, [fixed[lm.GROUPS[part]]], part in lm.CLOSED, 255, thickness, cv2.LINE_AA, _SHIFT)
        out[..., k] = canvas
    return out


def render_parts_batch(points: np.ndarray, size: int) -> np.ndarray:
    """(N, 68, 2) -> (N, size, size, len(PARTS)) uint8."""
    if not len(points):
        return np.zeros((0, size, size, len(PARTS)), np.uint8)
    return np.stack([render_parts(p, size) for p in points])


def render_batch(points: np.ndarray, size: int) -> np.ndarray:
    """(N, 68, 2) -> (N, size, size, 3) uint8."""
    return np.stack([render_landmarks(p, size) for p in points]) if len(points) else np.zeros((0, size, size, 3), np.uint8)
