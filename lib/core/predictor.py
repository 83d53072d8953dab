"""The one interface every landmark predictor implements (peers such as dlib and
the mean shape, and the trained detectors).

A predictor takes an RGB image and, where the protocol gives one, a face box,
and returns (68, 2) landmarks in image coordinates plus the box protocol it
actually used."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .crop import Box


@dataclass
class Prediction:
    landmarks: np.ndarray
    box: str  # which face box was used: "detector", "landmarks" or "landmarks (fallback)"


class Predictor:
    name = "predictor"
    needs_box = False  # True: the evaluation passes the ground-truth landmark box

    def predict(self, image: np.ndarray, gt_box: Box | None = None) -> Prediction:
        raise NotImplementedError
