"""Landmark predictors behind one interface, for the evaluation command and
the results table.

A predictor takes an RGB image and, where the protocol gives one, a face box,
and returns (68, 2) landmarks in image coordinates plus the box protocol it
actually used. Peers that run offline: dlib's 68-point predictor and the
mean-shape floor. Trained detectors plug in through the same interface.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import crop as cr


@dataclass
class Prediction:
    landmarks: np.ndarray
    box: str  # which face box was used: "detector", "landmarks" or "landmarks (fallback)"


class Predictor:
    name = "predictor"
    needs_box = False  # True: the evaluation passes the ground-truth landmark box

    def predict(self, image: np.ndarray, gt_box: cr.Box | None = None) -> Prediction:
        raise NotImplementedError


def mean_shape(shapes: np.ndarray) -> np.ndarray:
    """Mean of (N, 68, 2) shapes after mapping each to a unit landmark box
    (centre 0, largest side 1)."""
    shapes = np.asarray(shapes, np.float64)
    lo, hi = shapes.min(axis=1, keepdims=True), shapes.max(axis=1, keepdims=True)
    side = (hi - lo).max(axis=2, keepdims=True)
    return (((shapes - (lo + hi) / 2) / side)).mean(axis=0)


class MeanShape(Predictor):
    """The floor: the mean training shape placed in the face box."""
    name = "mean shape"
    needs_box = True

    def __init__(self, template: np.ndarray, margin: float = 0.25):
        self.template = np.asarray(template, np.float64)
        self.margin = margin

    @classmethod
    def fit(cls, shapes: np.ndarray, margin: float = 0.25) -> "MeanShape":
        return cls(mean_shape(shapes), margin)

    def place(self, box: cr.Box) -> np.ndarray:
        side = box.size / (1 + 2 * self.margin)  # back to the landmarks' own box
        return self.template * side + [box.cx, box.cy]

    def predict(self, image, gt_box=None):
        if gt_box is None:
            raise ValueError("the mean-shape baseline needs a face box")
        return Prediction(self.place(gt_box), "landmarks")


class Dlib(Predictor):
    """dlib's 68-point shape predictor (ERT, trained on iBUG 300-W).

    With ``box="detector"`` it finds the face with dlib's HOG detector (the box
    nearest the expected face wins), falling back to the landmark box where the
    detector finds nothing; with ``box="landmarks"`` it always uses the landmark
    box, mapped to the framing dlib's detector produces.
    Its weights are for non-commercial use (they inherit iBUG 300-W's terms)."""
    needs_box = True

    def __init__(self, box: str = "detector", upsample: int = 1, model_path: str | None = None):
        import dlib
        if model_path is None:
            import face_recognition_models
            model_path = face_recognition_models.pose_predictor_model_location()
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(model_path))
        self.detector = dlib.get_frontal_face_detector()
        self.box_mode = box
        self.upsample = upsample
        self.name = f"dlib ({box} box)"

    def _rect_from_box(self, box: cr.Box, margin: float = 0.25):
        # Measured on the 300-W training part (AFW): dlib's detector box is as
        # wide as the landmark box and centred 0.08 of its side higher.
        side = box.size / (1 + 2 * margin)
        cx, cy = box.cx, box.cy - 0.08 * side
        return self._dlib.rectangle(int(round(cx - side / 2)), int(round(cy - side / 2)),
                                    int(round(cx + side / 2)), int(round(cy + side / 2)))

    def _shape(self, image, rect) -> np.ndarray:
        s = self.shape_predictor(image, rect)
        return np.array([[p.x, p.y] for p in s.parts()], np.float64)

    def detect(self, image) -> list:
        return list(self.detector(image, self.upsample))

    def predict(self, image, gt_box=None):
        image = np.ascontiguousarray(image)
        if self.box_mode == "detector":
            rects = self.detect(image)
            if rects:
                if gt_box is not None:  # the face the annotation is about
                    rect = min(rects, key=lambda r: np.hypot(r.center().x - gt_box.cx, r.center().y - gt_box.cy))
                else:
                    rect = max(rects, key=lambda r: r.area())
                return Prediction(self._shape(image, rect), "detector")
            if gt_box is None:
                raise LookupError("no face found and no landmark box given")
            return Prediction(self._shape(image, self._rect_from_box(gt_box)), "landmarks (fallback)")
        if gt_box is None:
            raise ValueError("dlib with the landmark box protocol needs a face box")
        return Prediction(self._shape(image, self._rect_from_box(gt_box)), "landmarks")


def build(name: str, train_shapes: np.ndarray | None = None, margin: float = 0.25) -> Predictor:
    """A predictor by name: ``dlib``, ``dlib_box`` or ``mean_shape``."""
    if name == "dlib":
        return Dlib("detector")
    if name == "dlib_box":
        return Dlib("landmarks")
    if name == "mean_shape":
        if train_shapes is None:
            raise ValueError("mean_shape needs training shapes (a manifest or a folder of faces)")
        return MeanShape.fit(train_shapes, margin)
    raise ValueError(f"unknown predictor {name!r}; known: dlib, dlib_box, mean_shape")


def box_from_detection(rect, margin: float = 0.25) -> cr.Box:
    """Face box for a dlib detection, in the landmark-box framing (inverse of
    the calibration in `Dlib._rect_from_box`)."""
    return cr.box_from_rect(rect.left(), rect.top(), rect.right(), rect.bottom(), margin, shift_y=0.08)
