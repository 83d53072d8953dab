"""Landmark predictors behind one interface, for the evaluation command and
the results table.

The interface is ``lib.core.predictor``: a predictor takes an RGB image and,
where the protocol gives one, the tight landmark box (margin 0), and returns
(68, 2) landmarks plus the box protocol it used. Peers that run offline: dlib's
68-point predictor and the mean-shape floor. Trained detectors
(``lib.detector.model.Detector``) implement the same interface.
"""
from __future__ import annotations

import numpy as np

from ..core import crop as cr
from ..core.faces import FaceFinder, rect_from_box
from ..core.predictor import Prediction, Predictor


def mean_shape(shapes: np.ndarray) -> np.ndarray:
    """Mean of (N, 68, 2) shapes after mapping each to a unit landmark box
    (centre 0, largest side 1)."""
    shapes = np.asarray(shapes, np.float64)
    lo, hi = shapes.min(axis=1, keepdims=True), shapes.max(axis=1, keepdims=True)
    side = (hi - lo).max(axis=2, keepdims=True)
    return (((shapes - (lo + hi) / 2) / side)).mean(axis=0)


class MeanShape(Predictor):
    """The floor: the mean training shape placed in the tight landmark box."""
    name = "mean shape"
    needs_box = True

    def __init__(self, template: np.ndarray):
        self.template = np.asarray(template, np.float64)

    @classmethod
    def fit(cls, shapes: np.ndarray) -> "MeanShape":
        return cls(mean_shape(shapes))

    def place(self, box: cr.Box) -> np.ndarray:
        return self.template * box.size + [box.cx, box.cy]

    def predict(self, image, gt_box=None):
        if gt_box is None:
            raise ValueError("the mean-shape baseline needs a face box")
        return Prediction(self.place(gt_box), "landmarks")


class Dlib(Predictor):
    """dlib's 68-point shape predictor (ERT, trained on iBUG 300-W).

    With ``box="detector"`` the face comes from the face finder (dlib's HOG
    detector; the box nearest the annotated face wins), falling back to the
    landmark box where it finds nothing; with ``box="landmarks"`` it always
    uses the landmark box, mapped to the framing dlib's detector produces.
    Its weights are for non-commercial use (they inherit iBUG 300-W's terms)."""
    needs_box = True

    def __init__(self, box: str = "detector", finder: FaceFinder | None = None, model_path: str | None = None):
        import dlib
        if model_path is None:
            import face_recognition_models
            model_path = face_recognition_models.pose_predictor_model_location()
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(model_path))
        self.finder = finder or (FaceFinder() if box == "detector" else None)
        self.box_mode = box
        self.name = f"dlib ({box} box)"

    def _shape(self, image, box: cr.Box) -> np.ndarray:
        s = self.shape_predictor(np.ascontiguousarray(image), self._dlib.rectangle(*rect_from_box(box)))
        return np.array([[p.x, p.y] for p in s.parts()], np.float64)

    def predict(self, image, gt_box=None):
        if self.box_mode == "detector":
            found = self.finder.find(image, gt_box)
            if found is not None:
                return Prediction(self._shape(image, found), "detector")
            if gt_box is None:
                raise LookupError("no face found")  # no landmark box: predict mode
            return Prediction(self._shape(image, gt_box), "landmarks (fallback)")
        if gt_box is None:
            raise ValueError("dlib with the landmark box protocol needs a face box")
        return Prediction(self._shape(image, gt_box), "landmarks")


def build(name: str, train_shapes: np.ndarray | None = None) -> Predictor:
    """A predictor by name: ``dlib``, ``dlib_box`` or ``mean_shape``."""
    if name == "dlib":
        return Dlib("detector")
    if name == "dlib_box":
        return Dlib("landmarks")
    if name == "mean_shape":
        if train_shapes is None:
            raise ValueError("mean_shape needs training shapes (a manifest or a folder of faces)")
        return MeanShape.fit(train_shapes)
    raise ValueError(f"unknown predictor {name!r}; known: dlib, dlib_box, mean_shape")
