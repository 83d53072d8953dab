"""A trained detector: the folder it is saved as, inference on crops, and the
folder as a predictor behind ``lib.core.predictor``'s interface.

A detector folder holds ``config.json`` (network, crop margin, normalisation),
``model.safetensors`` (the selected EMA weights) and ``history.csv`` (loss and
validation NME); ``checkpoints/last.safetensors`` holds what resuming needs.

``load_detector`` checks a folder before use: config.json against its schema
(``model``: the network, every ``NetworkConfig`` field, ``arch``, ``pretrained`` and
``backbone`` optional for folders written before there was a choice; ``points`` 68 or 257, the
iBUG or the dense scheme; ``margin`` in [0, 1];
``mean``/``std``: the RGB normalisation, used at prediction; optional
``training``: notes of the run), model.safetensors readable, its tensor names
and shapes those of the network, every weight finite. Any problem raises
``BadDetectorFolder`` (a ValueError) naming the folder and the problem.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..core import crop as cr
from ..core import landmarks as lm
from ..core.faces import FaceFinder
from ..core.predictor import Prediction, Predictor
from .network import ARCHS, NetworkConfig, build_network, for_inference

# The normalisation new detectors are trained with; a saved detector uses the
# ``mean`` and ``std`` of its own config.json.
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def to_tensor(images: np.ndarray, mean: np.ndarray = MEAN, std: np.ndarray = STD) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> normalised (N, 3, S, S) float."""
    x = (images.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class _Decoded(torch.nn.Module):
    """A network and its decoding as one module: images -> (N, K, 2) crop pixels."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network.landmarks(self.network(x))


class LandmarkGraph:
    """A network's forward pass and landmark decoding as one TorchScript graph, traced
    and frozen for each input shape on its first batch: images -> (N, K, 2) landmarks
    in crop pixels. It computes the same numbers as the eager network, bit for bit
    (the tests check every architecture), and runs a detector at batch 1 on one CPU
    thread about 1.4x faster (``benchmarks/bench_detector.py``): at 64 px and batch 1 much
    of the eager network's time goes to calling its small layers one by one.
    ``torch.compile`` measured slower here (1.3x, after half a minute of compiling per
    detector) and changes the numbers, so the study uses TorchScript, which torch 2.13
    marks as deprecated (the warning is silenced here). Give it an inference copy
    (``network.for_inference``) and channels-last inputs."""

    def __init__(self, network: torch.nn.Module):
        self.network = network.eval()
        self.cfg = network.cfg
        self._graphs: dict[tuple, torch.jit.ScriptModule] = {}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last))
        if key not in self._graphs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # sizes baked in: a graph per shape
                traced = torch.jit.trace(_Decoded(self.network).eval(), x, check_trace=False)
                self._graphs[key] = torch.jit.freeze(traced, optimize_numerics=False)  # keep numerics exact
        return self._graphs[key](x)


def _landmarks(model, x: torch.Tensor) -> torch.Tensor:
    """(N, K, 2) crop pixels from a network (its outputs decoded) or a ``LandmarkGraph``."""
    return model(x) if isinstance(model, LandmarkGraph) else model.landmarks(model(x))


@torch.inference_mode()
def predict_crops(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64,
                  mean: np.ndarray = MEAN, std: np.ndarray = STD, channels_last: bool = False,
                  flip: bool = False) -> np.ndarray:
    """Landmarks in crop pixels for (N, S, S, 3) crops, by any network of ``lib.detector.network``
    or a ``LandmarkGraph`` of one (`channels_last`: the layout of a ``network.for_inference`` copy). `flip`: test-time
    flipping, the mean of the crop's landmarks and its mirror image's (mirrored back, left and
    right swapped by ``landmarks.flip_landmarks``); both go through the network as one batch."""
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size], mean, std)
        if flip:
            x = torch.cat([x, torch.flip(x, dims=[3])])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        pts = _landmarks(model, x).numpy().astype(np.float64)
        if flip:
            n, size = len(pts) // 2, images.shape[2]
            pts = (pts[:n] + np.stack([lm.flip_landmarks(q, size) for q in pts[n:]])) / 2
        out.append(pts)
    return np.concatenate(out).astype(np.float64)


def save_detector(folder: Path, model: torch.nn.Module, margin: float, extra: dict | None = None) -> None:
    """Write the detector folder; `extra` (e.g. the selected step) goes under ``training``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    config = {"model": asdict(model.cfg), "margin": margin, "mean": MEAN.tolist(), "std": STD.tolist()}
    if extra:
        config["training"] = dict(extra)
    (folder / "config.json").write_text(json.dumps(config, indent=2))


# ------------------------------------------------------------------ validation on load

class BadDetectorFolder(ValueError):
    """A detector folder that cannot be used; the message names the folder and the problem."""


class MissingDetectorFile(BadDetectorFolder, FileNotFoundError):
    """config.json or model.safetensors is missing."""


MARGIN_RANGE = (0.0, 1.0)
# config.json: required keys, and optional ones (``training``: free-form notes of the run;
# ``selected_step`` / ``val_nme``: where folders written before ``training`` kept them).
CONFIG_KEYS = {"model": dict, "margin": float, "mean": list, "std": list}
OPTIONAL_KEYS = {"training": dict, "selected_step": int, "val_nme": float}


def _is_number(v, kind=float) -> bool:
    if isinstance(v, bool):
        return False
    if kind is int:
        return isinstance(v, int)
    return isinstance(v, (int, float)) and math.isfinite(v)


def _typed(v, kind) -> bool:
    return _is_number(v, kind) if kind in (int, float) else isinstance(v, kind)


def check_config(config, where: str) -> NetworkConfig:
    """The network config of a detector's config.json, or BadDetectorFolder saying what is wrong."""
    def bad(msg):
        return BadDetectorFolder(f"{where}: {msg}")

    if not isinstance(config, dict):
        raise bad(f"config.json holds a {type(config).__name__}, expected an object")
    known = {**CONFIG_KEYS, **OPTIONAL_KEYS}
    unknown = sorted(set(config) - set(known))
    missing = sorted(set(CONFIG_KEYS) - set(config))
    if unknown:
        raise bad(f"config.json: unknown keys {unknown}; expected {sorted(known)}")
    if missing:
        raise bad(f"config.json: missing keys {missing}")
    for k, kind in known.items():
        if k in config and not _typed(config[k], kind):
            raise bad(f"config.json: {k!r} is {config[k]!r}, expected a {kind.__name__}")
    lo, hi = MARGIN_RANGE
    if not lo <= config["margin"] <= hi:
        raise bad(f"config.json: margin {config['margin']} outside [{lo}, {hi}]")
    for k in ("mean", "std"):
        v = config[k]
        if len(v) != 3 or not all(_is_number(x) for x in v):
            raise bad(f"config.json: {k!r} is {v!r}, expected 3 numbers (RGB, 0-255 scale)")
    if not all(x > 0 for x in config["std"]):
        raise bad(f"config.json: 'std' {config['std']} must be positive")
    net = config["model"]
    names = {f.name: f.type for f in fields(NetworkConfig)}
    optional = {"arch", "pretrained", "backbone"}  # absent in folders written before there was a choice
    unknown, missing = sorted(set(net) - set(names)), sorted(set(names) - set(net) - optional)
    if unknown or missing:
        raise bad(f"config.json: 'model' keys: unknown {unknown}, missing {missing}")
    for k, v in net.items():
        if k == "arch":
            if v not in ARCHS:
                raise bad(f"config.json: model.arch is {v!r}, expected one of {list(ARCHS)}")
            continue
        if k == "backbone":
            from .regression import BACKBONES
            if v not in BACKBONES:
                raise bad(f"config.json: model.backbone is {v!r}, expected one of {list(BACKBONES)}")
            continue
        if k == "pretrained":
            if not isinstance(v, bool):
                raise bad(f"config.json: model.pretrained is {v!r}, expected true or false")
            continue
        kind = float if names[k] in (float, "float") else int
        if not _is_number(v, kind) or v <= 0:
            raise bad(f"config.json: model.{k} is {v!r}, expected a positive {kind.__name__}")
    if net["points"] not in (lm.N_POINTS, lm.N_DENSE):
        raise bad(f"config.json: model.points is {net['points']}; a detector predicts {lm.N_POINTS} (iBUG) or "
                  f"{lm.N_DENSE} (the dense scheme) points, which the study maps to the 68 it scores")
    return NetworkConfig(**net)


def load_detector(folder: str | Path) -> tuple[torch.nn.Module, dict]:
    """Load and check a detector folder: every problem (a missing or unreadable file,
    a config.json off the schema, weights that do not fit the network or are not
    finite) raises BadDetectorFolder naming the folder and the problem."""
    folder = Path(folder)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise MissingDetectorFile(f"{p}: missing; a detector folder holds config.json and model.safetensors")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadDetectorFolder(f"{folder}: config.json unreadable ({exc})") from None
    mcfg = check_config(config, str(folder))
    try:
        model = build_network(mcfg, pretrained=False)  # the folder's weights follow
    except ValueError as exc:
        raise BadDetectorFolder(f"{folder}: config.json: {exc}") from None
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
        raise BadDetectorFolder(f"{folder}: model.safetensors unreadable ({exc})") from None
    expected = model.state_dict()
    unknown, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    if unknown or missing:
        raise BadDetectorFolder(f"{folder}: model.safetensors does not fit the network of config.json: "
                                f"{len(missing)} tensors missing {missing[:3]}, "
                                f"{len(unknown)} unexpected {unknown[:3]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise BadDetectorFolder(f"{folder}: model.safetensors: {k} has shape {tuple(v.shape)}, "
                                    f"the network of config.json expects {tuple(expected[k].shape)}")
        if v.dtype.is_floating_point and not torch.isfinite(v).all():
            raise BadDetectorFolder(f"{folder}: model.safetensors: {k} holds NaN or infinite weights")
    model.load_state_dict(state)
    return model.eval(), config


# ------------------------------------------------------------------ as a predictor

class Detector(Predictor):
    """A trained detector folder as a predictor. ``box="landmarks"`` crops to
    the given tight landmark box; ``box="detector"`` finds the face with the
    face finder (falling back to the landmark box). Either box is grown by the
    crop margin the detector was trained with (its ``config.json``). `flip`:
    test-time flipping (``predict_crops``). `refine`: a second pass on the crop that the
    first pass's landmarks frame as training framed the true ones (their box grown by the
    margin), turned so that their eyes are level (``landmarks.eye_angle``); its landmarks
    are the answer, so the box only has to find the face."""
    needs_box = True

    def __init__(self, folder: str | Path, box: str = "landmarks", name: str | None = None,
                 finder: FaceFinder | None = None, flip: bool = False, refine: bool = False):
        if box not in ("landmarks", "detector"):
            raise ValueError(f"box {box!r}: expected 'landmarks' or 'detector'")
        model, self.config = load_detector(folder)
        self.model = for_inference(model)  # folded batch norms, channels-last: the same landmarks, faster
        self.graph = LandmarkGraph(self.model)  # and one traced graph: the same landmarks again, faster still
        self.channels_last = True
        self.margin = self.config["margin"]
        self.mean = np.array(self.config["mean"], np.float32)
        self.std = np.array(self.config["std"], np.float32)
        self.box_mode = box
        self.flip = flip  # test-time flipping (``predict_crops``)
        self.refine = refine  # a second pass on the upright crop the first pass's landmarks frame
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
        pts = self._landmarks(image, cr.grow(box, self.margin))
        if self.refine:
            angle = float(lm.eye_angle(pts))
            pts = self._landmarks(image, cr.box_from_landmarks(pts, self.margin, angle), angle)
        return Prediction(pts, used)

    def _landmarks(self, image, box: cr.Box, angle: float = 0.0) -> np.ndarray:
        """The 68 landmarks, in image coordinates, read from the crop of `box` turned by `angle`."""
        crop_img, m, _ = cr.crop(image, box, self.model.cfg.input_size, angle=angle)
        pts = predict_crops(self.graph, crop_img[None], mean=self.mean, std=self.std, channels_last=self.channels_last,
                            flip=self.flip)[0]
        # a dense detector answers with its nearest dense points to the 68 (lib.core.landmarks)
        return cr.apply(cr.invert(m), lm.as_68(pts))
