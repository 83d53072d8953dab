"""The generator's training pairs: image / landmark / prompt triples held in memory at the model's
resolution (``PairSet``), read from data prep's square face crops or the multi-domain set."""
from __future__ import annotations

import numpy as np

from ..core import crop as cr
from ..core import landmarks as lm
from ..data import datasets as ds


def resize_pair(image: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop and its landmarks brought to `size` px."""
    h, w = image.shape[:2]
    box = cr.Box((w - 1) / 2, (h - 1) / 2, float(max(h, w)))
    out, _, pts = cr.crop(image, box, size, points)
    return out, pts


class PairSet:
    """Image / landmark / prompt triples held in memory at the model's resolution.

    `samples` are square face crops (data prep's ``crops/<split>``); the
    prompt comes from the sample's manifest (``prompt`` column) or `prompt`."""

    def __init__(self, samples: list[ds.Sample], resolution: int, prompt: str | None = "",
                 errors: list | None = None):
        self.images, self.points, self.prompts = [], [], []
        for s in samples:
            try:
                img, pts = resize_pair(ds.load_image(s.image_path), s.landmarks, resolution)
            except ds.BadInput as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
                continue
            self.images.append(img)
            self.points.append(pts)
            self.prompts.append(s.meta.get("prompt", prompt) if prompt is None else prompt)
        self.images = np.array(self.images, np.uint8).reshape(-1, resolution, resolution, 3)
        self.points = np.array(self.points, np.float64).reshape(-1, lm.N_POINTS, 2)
        self.resolution = resolution

    def __len__(self):
        return len(self.images)

    def __add__(self, other: "PairSet") -> "PairSet":
        out = PairSet([], self.resolution)
        out.images = np.concatenate([self.images, other.images])
        out.points = np.concatenate([self.points, other.points])
        out.prompts = self.prompts + other.prompts
        return out
