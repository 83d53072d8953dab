"""The one crop routine: a square face box (from landmarks or a detector),
grown by a margin, warped to the model's input size with a similarity
transform whose inverse maps predictions back exactly.

Coordinates are 0-based pixel centres throughout (OpenCV's convention)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Box:
    """A square face box: centre and side length in pixels."""
    cx: float
    cy: float
    size: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return self.cx - h, self.cy - h, self.cx + h, self.cy + h


def box_from_landmarks(points: np.ndarray, margin: float) -> Box:
    """Square box around the landmarks' bounding box, each side grown by `margin`
    times the larger of its width and height."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    c = (lo + hi) / 2
    return Box(float(c[0]), float(c[1]), float((hi - lo).max() * (1 + 2 * margin)))


def grow(box: Box, margin: float) -> Box:
    """The box with each side grown by `margin` times its side: a tight landmark
    box (margin 0) framed for a predictor's crop."""
    return Box(box.cx, box.cy, box.size * (1 + 2 * margin))


def crop_matrix(box: Box, out_size: int, angle: float = 0.0) -> np.ndarray:
    """2x3 affine matrix taking image coordinates to crop coordinates.

    The box's outer edges map to the crop's outer pixel edges
    (-0.5 and out_size - 0.5), so a pixel centre maps to a pixel centre.
    `angle` (degrees, counter-clockwise in the picture) rotates the crop
    about the box centre."""
    s = out_size / box.size
    x0, y0, _, _ = box.xyxy
    m = np.array([[s, 0.0, s * (0.5 - x0) - 0.5],
                  [0.0, s, s * (0.5 - y0) - 0.5],
                  [0.0, 0.0, 1.0]])
    if angle:
        c = (out_size - 1) / 2
        rot = np.vstack([cv2.getRotationMatrix2D((c, c), angle, 1.0), [0, 0, 1]])
        m = rot @ m
    return m[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (..., 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def crop(image: np.ndarray, box: Box, out_size: int, points: np.ndarray | None = None,
         border_value=(127, 127, 127), angle: float = 0.0):
    """Warp `image` to an `out_size` square crop of `box`.

    Returns (crop, matrix, points_in_crop); points_in_crop is None without points.
    Map predictions back with `apply(invert(matrix), pred)`."""
    m = crop_matrix(box, out_size, angle)
    # Shrinking by more than 2x aliases badly: blur first, as an area filter would.
    s = out_size / box.size
    src = image
    if s < 0.5:
        sigma = 0.5 / s * 0.6
        src = cv2.GaussianBlur(image, (0, 0), sigma)
    out = cv2.warpAffine(src, m, (out_size, out_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
    return out, m, None if points is None else apply(m, points)
