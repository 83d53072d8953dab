"""Style classifier for measuring prompt adherence of generated faces.

A generated image "adheres" to its prompt when a classifier trained on the
stage-2 multi-domain set (real/procedural images labelled with their style
names) recognises the style that the prompt asked for. The classifier is
deliberately small and cheap:

- features: a frozen ImageNet MobileNetV2 (``lib.core.mobilenet``),
  global-average-pooled to 1280 numbers per image;
- head: a multinomial logistic regression on standardised features, trained
  full-batch with L-BFGS and an L2 penalty (a strictly convex problem, so the
  result does not depend on the initial weights beyond optimiser tolerance).

Preprocessing: every image is resized (not cropped: face crops are square and
style cues sit everywhere in the picture) to ``INPUT_SIZE`` x ``INPUT_SIZE`` =
128 x 128 with ``cv2.INTER_AREA`` and ImageNet-normalised. 128 px is the
study's crop size range, keeps embedding cheap on CPU, and still gives the
backbone a 4 x 4 final feature map.

"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.mobilenet import FEATURE_DIM, WEIGHTS_FILE, MobileNetV2, load_mobilenet_v2

INPUT_SIZE = 128
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
CLASSIFIER_FILE = "classifier.safetensors"
CONFIG_FILE = "config.json"
_STD_FLOOR = 1e-2  # near-constant feature channels must not blow up on new images

@lru_cache(maxsize=1)
def _backbone() -> MobileNetV2:
    # Loaded once per process: reading and checking 14 MB for every call would dominate.
    # channels_last runs the depthwise convolutions faster on CPU (oneDNN).
    return load_mobilenet_v2().to(memory_format=torch.channels_last)


# ------------------------------------------------------------------ features

def _as_image_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim == 3:  # one (H, W, 3) image
            return [images]
        if images.ndim != 4:
            raise ValueError(f"expected (N, H, W, 3) or (H, W, 3) images, got shape {images.shape}")
    return list(images)


def preprocess(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """One RGB uint8 image -> (3, size, size) float32, resized with INTER_AREA, ImageNet-normalised."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        # A float image in [0, 1] would be silently misnormalised, so refuse it.
        raise ValueError(f"expected uint8 RGB images, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def embed(images: np.ndarray | Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """RGB uint8 images of any size -> (N, 1280) float32 pooled MobileNetV2 features."""
    items = _as_image_list(images)
    if not items:
        return np.zeros((0, FEATURE_DIM), np.float32)
    model = _backbone()
    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = np.stack([preprocess(im) for im in items[start:start + batch_size]])
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            out.append(model.pooled(x).numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


# ------------------------------------------------------------------ classifier

class StyleClassifier:
    """Multinomial logistic regression on standardised frozen MobileNetV2 features."""

    def __init__(self) -> None:
        self.classes: list[str] = []
        self.weight: np.ndarray | None = None  # (C, 1280)
        self.bias: np.ndarray | None = None  # (C,)
        self.mean: np.ndarray | None = None  # (1280,)
        self.std: np.ndarray | None = None  # (1280,)

    # -- training
    def fit(self, images: np.ndarray | Sequence[np.ndarray], labels: Sequence[str], seed: int = 0,
            steps: int = 200, l2: float = 1e-3) -> "StyleClassifier":
        """Embed `images` and fit on their style `labels` (any strings, at least two distinct)."""
        labels = [str(s) for s in labels]
        n = len(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else 1
        if n != len(labels):
            raise ValueError(f"{n} images but {len(labels)} labels")
        self._check_classes(labels)  # fail before the expensive embedding
        return self.fit_features(embed(images), labels, seed=seed, steps=steps, l2=l2)

    @staticmethod
    def _check_classes(labels: Sequence[str]) -> list[str]:
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError(f"need at least 2 distinct style labels to fit, got {classes}")
        return classes

    def fit_features(self, features: np.ndarray, labels: Sequence[str], seed: int = 0,
                     steps: int = 200, l2: float = 1e-3) -> "StyleClassifier":
        """Fit on precomputed `embed` features; full-batch L-BFGS, deterministic for a given seed."""
        labels = [str(s) for s in labels]
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or len(features) != len(labels):
            raise ValueError(f"features {features.shape} do not match {len(labels)} labels")
        self.classes = self._check_classes(labels)
        index = {c: i for i, c in enumerate(self.classes)}
        y = torch.tensor([index[s] for s in labels])
        mean = features.mean(0)
        std = np.maximum(features.std(0), _STD_FLOOR)
        x = torch.from_numpy((features - mean) / std)
        # float64 and a fixed generator: same data and seed give bit-identical weights.
        gen = torch.Generator().manual_seed(seed)
        w = (0.01 * torch.randn(len(self.classes), x.shape[1], generator=gen, dtype=torch.float64)
             ).requires_grad_()
        b = torch.zeros(len(self.classes), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, tolerance_grad=1e-9,
                                tolerance_change=1e-12, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            # L2 on weights only, so the class priors (bias) stay free.
            loss = nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.weight = w.detach().numpy().astype(np.float32)
        self.bias = b.detach().numpy().astype(np.float32)
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        return self

    # -- inference
    def _require_fitted(self) -> None:
        if self.weight is None:
            raise RuntimeError("StyleClassifier is not fitted; call fit() or load() first")

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """(N, 1280) features -> (N, C) class probabilities, columns in `classes` order."""
        self._require_fitted()
        x = (np.asarray(features, np.float32) - self.mean) / self.std
        logits = torch.from_numpy(x @ self.weight.T + self.bias)
        return torch.softmax(logits, dim=1).numpy()

    def predict_proba(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Images -> (N, C) class probabilities, columns in `classes` order."""
        self._require_fitted()
        return self.predict_proba_features(embed(images))

    def predict_features(self, features: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba_features(features).argmax(1)]

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> list[str]:
        """Images -> the most probable style name for each."""
        self._require_fitted()
        return self.predict_features(embed(images))

    def accuracy(self, images: np.ndarray | Sequence[np.ndarray], labels: Sequence[str]) -> float:
        """Fraction of images whose predicted style equals the requested one (prompt adherence)."""
        labels = [str(s) for s in labels]
        pred = self.predict(images)
        if len(pred) != len(labels):
            raise ValueError(f"{len(pred)} images but {len(labels)} labels")
        if not labels:
            raise ValueError("accuracy of an empty set is undefined")
        return float(np.mean([p == t for p, t in zip(pred, labels)]))

    # -- persistence
    def save(self, folder: str | Path) -> Path:
        """Write classifier.safetensors (weights, feature mean/std) and config.json (classes)."""
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std}
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()},
                  str(folder / CLASSIFIER_FILE))
        config = {"classes": self.classes, "backbone": f"torchvision {WEIGHTS_FILE}",
                  "input_size": INPUT_SIZE, "feature_dim": FEATURE_DIM}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "StyleClassifier":
        """Read a folder written by `save`."""
        folder = Path(folder)
        for name in (CLASSIFIER_FILE, CONFIG_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"style classifier file {name} not found in {folder}")
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if config.get("input_size", INPUT_SIZE) != INPUT_SIZE:
            # Features at another resolution would not match the saved mean/std and weights.
            raise ValueError(f"{folder} was trained at input size {config['input_size']}, "
                             f"this module embeds at {INPUT_SIZE}")
        tensors = load_file(str(folder / CLASSIFIER_FILE))
        self = cls()
        self.classes = [str(c) for c in config["classes"]]
        self.weight, self.bias = tensors["weight"].numpy(), tensors["bias"].numpy()
        self.mean, self.std = tensors["mean"].numpy(), tensors["std"].numpy()
        if self.weight.shape != (len(self.classes), FEATURE_DIM):
            raise ValueError(f"{folder}: weight shape {self.weight.shape} does not match "
                             f"{len(self.classes)} classes x {FEATURE_DIM} features")
        return self


# ------------------------------------------------------------------ the study's judge

def style_faces(folder: str | Path, holdout: float = 0.2, resolution: int | None = None):
    """The stage-2 set's faces and styles, split into a fitting part and a held-out part
    (``data_prep.holdout``): ``(images, styles), (held_images, held_styles)``. With
    `resolution`, the images are brought to the generator's resolution (INTER_AREA), as
    the generator sees them in training and draws its own faces."""
    from ..data import datasets as ds
    from ..data.data_prep import holdout as split

    def load(samples):
        images = [ds.load_image(s.image_path) for s in samples]
        if resolution:
            images = [im if im.shape[:2] == (resolution, resolution) else
                      cv2.resize(im, (resolution, resolution), interpolation=cv2.INTER_AREA) for im in images]
        return images, [s.meta["style"] for s in samples]

    kept, held = split(ds.read_dataset(folder, "synthetic"), holdout)
    return load(kept), load(held)


def train_style_classifier(folder: str | Path, holdout: float = 0.2, resolution: int | None = None):
    """The prompt-adherence judge: a style classifier (``lib/style_classifier.py``) fit on
    the stage-2 multi-domain set (at the generator's `resolution` if given, see
    `style_faces`); returns it and its accuracy on a held-out part."""
    (images, styles), (held, held_styles) = style_faces(folder, holdout, resolution)
    clf = StyleClassifier().fit(images, styles)
    acc = clf.accuracy(held, held_styles) if held else float("nan")
    return clf, acc


def round_trip_faces(vae, folder: str | Path, holdout: float = 0.2, resolution: int | None = None):
    """The held-out stage-2 faces (``style_faces``) after a round trip through the
    autoencoder `vae` (encode, decode), with their styles: ``(images, styles)``. The
    judge's accuracy on them is the style ceiling of that latent space: a generator
    drawing in it can show no more of a style than its autoencoder keeps."""
    from ..generator import autoencoder as ae

    _, (held, styles) = style_faces(folder, holdout, resolution)
    return (list(ae.reconstruct(vae, np.stack(held))) if held else []), styles
