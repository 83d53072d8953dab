"""The one face finder: dlib's HOG frontal face detector, returning face boxes in
the framing every predictor receives, the *tight landmark box* (the square
around the 68 points, margin 0).

Calibration, measured on the 300-W training part (AFW): dlib's detection is as
wide as the landmark box and centred 0.08 of its side higher. Each predictor
grows the box by its own crop margin (``crop.grow``)."""
from __future__ import annotations

import cv2
import numpy as np

from .crop import Box, box_from_landmarks

SHIFT_Y = 0.08  # dlib's box centre sits this fraction of its side above the landmark box centre


def box_from_rect(x0: float, y0: float, x1: float, y1: float) -> Box:
    """Tight landmark box estimated from a detector rectangle."""
    side = max(x1 - x0, y1 - y0)
    return Box((x0 + x1) / 2, (y0 + y1) / 2 + SHIFT_Y * side, side)


def rect_from_box(box: Box) -> tuple[int, int, int, int]:
    """The rectangle dlib's detector would draw around a face with this tight landmark box."""
    side = box.size
    cx, cy = box.cx, box.cy - SHIFT_Y * side
    return (int(round(cx - side / 2)), int(round(cy - side / 2)),
            int(round(cx + side / 2)), int(round(cy + side / 2)))


class FaceFinder:
    """Find faces with dlib's HOG detector. Images larger than `max_side` are
    downscaled before detection (the HOG detector's time and memory grow with
    the pixel count; faces in such images are large) and the boxes mapped back."""

    def __init__(self, upsample: int = 1, max_side: int = 1024):
        import dlib
        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[Box]:
        """Tight landmark boxes of every face found, in image pixels."""
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                        interpolation=cv2.INTER_AREA)
        rects = self._detector(np.ascontiguousarray(small), self.upsample)
        return [box_from_rect(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)
                for r in rects]

    def find(self, image: np.ndarray, near: Box | None = None) -> Box | None:
        """The face the caller means: the detection nearest `near` (an annotation's
        box) when given, else the largest; None when no face is found."""
        boxes = self.detect(image)
        if not boxes:
            return None
        if near is not None:
            return min(boxes, key=lambda b: np.hypot(b.cx - near.cx, b.cy - near.cy))
        return max(boxes, key=lambda b: b.size)


def box_errors(finder: FaceFinder, images, points, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """How the face finder's boxes differ from the tight landmark boxes of annotated faces:
    (n, 3) rows of (dx, dy) / landmark box side and log(finder side / landmark side), one
    per face it finds (the detection nearest the annotation). `limit`: measure at most
    that many faces, drawn with `seed`. Detector training draws its box jitter from these
    rows so that it sees the boxes it will be given (``AugmentConfig.detector_boxes``)."""
    idx = np.arange(len(images))
    if limit is not None and len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    rows = []
    for i in idx:
        truth = box_from_landmarks(points[i], 0.0)
        found = finder.find(images[i], truth)
        if found is not None:
            rows.append(((found.cx - truth.cx) / truth.size, (found.cy - truth.cy) / truth.size,
                         np.log(found.size / truth.size)))
    return np.array(rows, np.float64).reshape(-1, 3)
