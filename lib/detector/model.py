"""A trained detector: the folder it is saved as, inference on crops, and the
folder as a predictor behind ``lib.core.predictor``'s interface.

A detector folder holds ``config.json`` (network, crop margin, normalisation),
``model.safetensors`` (the selected EMA weights) and ``history.csv`` (loss and
validation NME); ``checkpoints/last.safetensors`` holds what resuming needs.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..core import crop as cr
from ..core.faces import FaceFinder
from ..core.predictor import Prediction, Predictor
from . import heatmaps as hm
from .hourglass import HourglassConfig, StackedHourglass

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> normalised (N, 3, S, S) float."""
    x = (images.astype(np.float32) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@torch.inference_mode()
def predict_crops(model: StackedHourglass, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Landmarks in crop pixels for (N, S, S, 3) crops."""
    cfg = model.cfg
    out = []
    for i in range(0, len(images), batch_size):
        heat = model(to_tensor(images[i:i + batch_size]))[-1]
        out.append(hm.from_heatmap(hm.decode(heat), cfg.input_size, cfg.heatmap_size).numpy())
    return np.concatenate(out).astype(np.float64)


def save_detector(folder: Path, model: StackedHourglass, margin: float, extra: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(
        {"model": asdict(model.cfg), "margin": margin, "mean": MEAN.tolist(), "std": STD.tolist(), **(extra or {})},
        indent=2))


def load_detector(folder: str | Path) -> tuple[StackedHourglass, dict]:
    folder = Path(folder)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing; a detector folder holds config.json and model.safetensors")
    config = json.loads(cfg_path.read_text())
    model = StackedHourglass(HourglassConfig(**config["model"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), config


# ------------------------------------------------------------------ as a predictor

class Detector(Predictor):
    """A trained detector folder as a predictor. ``box="landmarks"`` crops to
    the given tight landmark box; ``box="detector"`` finds the face with the
    face finder (falling back to the landmark box). Either box is grown by the
    crop margin the detector was trained with (its ``config.json``)."""
    needs_box = True

    def __init__(self, folder: str | Path, box: str = "landmarks", name: str | None = None,
                 finder: FaceFinder | None = None):
        if box not in ("landmarks", "detector"):
            raise ValueError(f"box {box!r}: expected 'landmarks' or 'detector'")
        self.model, self.config = load_detector(folder)
        self.margin = self.config["margin"]
        self.box_mode = box
        self.name = name or f"{Path(folder).name} ({box} box)"
        self.finder = finder or (FaceFinder() if box == "detector" else None)

    def _box(self, image, gt_box):
        if self.box_mode == "detector":
            found = self.finder.find(image, gt_box)
            if found is not None:
                return found, "detector"
            if gt_box is None:
                raise LookupError("no face found and no landmark box given")
            return gt_box, "landmarks (fallback)"
        if gt_box is None:
            raise ValueError("the landmark box protocol needs a face box")
        return gt_box, "landmarks"

    def predict(self, image, gt_box=None):
        box, used = self._box(image, gt_box)
        size = self.model.cfg.input_size
        crop_img, m, _ = cr.crop(image, cr.grow(box, self.margin), size)
        pts = predict_crops(self.model, crop_img[None])[0]
        return Prediction(cr.apply(cr.invert(m), pts), used)
