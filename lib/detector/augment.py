"""Training augmentation for the landmark detector: geometric (rotation,
scale, translation, horizontal flip with the 68-point left/right
permutation) through the one crop routine, then photometric (colour jitter,
blur, occlusion). Deterministic given the random generator."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..core import crop as cr
from ..core import landmarks as lm


@dataclass
class AugmentConfig:
    rotate: float = 30.0  # degrees, uniform in [-rotate, rotate]
    scale: float = 0.15  # box size factor in [1 - scale, 1 + scale]
    translate: float = 0.05  # fraction of the box size
    flip: float = 0.5
    blur: float = 0.2  # probability
    occlusion: float = 0.3  # probability of one random rectangle
    colour: float = 0.3  # brightness / contrast / saturation jitter amplitude
    # probability that the box is displaced as the face finder would place it: by a (dx, dy,
    # log scale) error drawn from those measured on the training faces (``faces.box_errors``),
    # instead of the uniform translate / scale jitter
    detector_boxes: float = 0.0


def augment(image: np.ndarray, points: np.ndarray, box: cr.Box, out_size: int, rng: np.random.Generator,
            cfg: AugmentConfig, box_errors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return an augmented `out_size` crop of `image` around `box` (the landmark box grown
    by the crop margin) and its landmarks. `box_errors`: the finder's measured errors, in
    units of the tight landmark box, that ``cfg.detector_boxes`` draws from."""
    if cfg.detector_boxes and rng.random() < cfg.detector_boxes:
        if box_errors is None or not len(box_errors):
            raise ValueError("detector_boxes > 0 needs the face finder's measured box errors (faces.box_errors)")
        dx, dy, log_scale = box_errors[rng.integers(len(box_errors))]
        tight = cr.box_from_landmarks(points, 0.0).size
        jittered = cr.Box(box.cx + dx * tight, box.cy + dy * tight, box.size * np.exp(log_scale))
    else:
        size = box.size * rng.uniform(1 - cfg.scale, 1 + cfg.scale)
        t = rng.uniform(-cfg.translate, cfg.translate, 2) * box.size
        jittered = cr.Box(box.cx + t[0], box.cy + t[1], size)
    angle = rng.uniform(-cfg.rotate, cfg.rotate)
    img, _, pts = cr.crop(image, jittered, out_size, points, angle=angle)
    if rng.random() < cfg.flip:
        img = np.ascontiguousarray(img[:, ::-1])
        pts = lm.flip_landmarks(pts, out_size)
    img = img.astype(np.float32)
    if cfg.colour:
        gray = img.mean(axis=2, keepdims=True)
        sat = 1 + rng.uniform(-cfg.colour, cfg.colour)
        img = gray + (img - gray) * sat
        img = (img - img.mean()) * (1 + rng.uniform(-cfg.colour, cfg.colour)) + img.mean()
        img = img * (1 + rng.uniform(-cfg.colour, cfg.colour) / 2) * rng.uniform(0.9, 1.1, 3)
    if rng.random() < cfg.blur:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < cfg.occlusion:
        w, h = rng.uniform(0.1, 0.4, 2) * out_size
        x, y = rng.uniform(0, out_size - w), rng.uniform(0, out_size - h)
        img[int(y):int(y + h), int(x):int(x + w)] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8), pts
