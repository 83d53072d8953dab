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


def box_from_landmarks(points: np.ndarray, margin: float, angle: float = 0.0) -> Box:
    """Square box around the landmarks' bounding box, each side grown by `margin`
    times the larger of its width and height. With `angle` (degrees, as ``crop_matrix``
    turns a crop), the bounding box is that of the landmarks turned by `angle`, so that
    ``crop(image, box, size, angle=angle)`` frames them upright as the unturned box frames
    unturned landmarks."""
    if angle:
        points = np.asarray(points, dtype=np.float64)
        c = (points.min(axis=0) + points.max(axis=0)) / 2
        a = np.radians(angle)
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # cv2.getRotationMatrix2D's turn
        turned = box_from_landmarks((points - c) @ rot.T, margin)
        # the turned box's centre in the image; crop_matrix turns about the point half a pixel
        # before a box's centre (its edges are pixel edges), hence the half pixel on both sides
        back = (np.array([turned.cx, turned.cy]) - 0.5) @ rot + c + 0.5
        return Box(float(back[0]), float(back[1]), turned.size)
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
    s = out_size / box.size
    if s >= 0.5:
        out = cv2.warpAffine(image, m, (out_size, out_size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
        return out, m, None if points is None else apply(m, points)
    # Shrinking by more than 2x aliases badly: blur first, as an area filter would. Only the
    # part of the image the crop reads is blurred (its footprint, padded by the kernel's
    # reach), so the cost follows the crop, not the image; the result is that of blurring
    # the whole image.
    sigma = 0.5 / s * 0.6
    x0, y0, x1, y1 = roi(image.shape, m, out_size, pad=int(np.ceil(4 * sigma)) + 2)
    if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the image
        fill = border_value[:image.shape[2]] if image.ndim == 3 else border_value[0]
        out = np.full((out_size, out_size) + image.shape[2:], fill, image.dtype)
        return out, m, None if points is None else apply(m, points)
    src = cv2.GaussianBlur(np.ascontiguousarray(image[y0:y1, x0:x1]), (0, 0), sigma)
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # crop coords of the region's pixels
    out = cv2.warpAffine(src, shifted, (out_size, out_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
    return out, m, None if points is None else apply(m, points)


def roi(shape: tuple, matrix: np.ndarray, out_size: int, pad: int = 0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the image pixels an `out_size` crop with `matrix` reads, grown
    by `pad` pixels and clipped to an image of `shape` (empty when it lies outside)."""
    corners = np.array([[-1, -1], [out_size, -1], [-1, out_size], [out_size, out_size]], np.float64)
    src = apply(invert(matrix), corners)
    h, w = shape[:2]
    x0, y0 = np.floor(src.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(src.max(axis=0)).astype(int) + pad + 1
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)
