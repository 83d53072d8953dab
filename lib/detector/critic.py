"""The landmark critic of the generator's consistency loss: a frozen detector reads the
face the diffusion model is about to draw, and its distance to the conditioning
landmarks is added to the diffusion loss (the reward of ControlNet++, Li et al. 2024;
``lib.generator.training.train(..., critic=)``).

At training step t the network's prediction gives the denoised estimate
x0_hat(x_t, t) in one step (``lib.generator.training.denoised``); the autoencoder decodes it
(frozen, differentiable); the critic crops each face from the
conditioning landmarks' box by a differentiable affine warp (the crop of
``lib.core.crop``, the one it was trained with), and its heatmaps are decoded by
the differentiable local integral (``lib.detector.dense.local_integral``). The loss
is the mean point-to-point distance over the inter-ocular distance (an NME, 1 = one
inter-ocular distance), on the samples whose timestep is below ``max_timestep``
(at high noise the estimate is a blur the critic cannot read).

The critic is a detector folder trained on the generator's own training faces at its
resolution (``train_critic``), never the detector that later judges the
generated faces' alignment (``models/<profile>/detector_real``), so the alignment
figures are not read by the network the generator was taught to satisfy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core import crop as cr
from ..core import landmarks as lm
from ..core.training import TrainResult
from . import heatmaps as hm
from . import training as dt
from .dense import local_integral
from .model import load_detector
from .network import NetworkConfig


def crop_grid(points: np.ndarray, resolution: int, size: int, margin: float) -> torch.Tensor:
    """``F.affine_grid`` thetas (N, 2, 3) that crop the landmark box (``crop.box_from_landmarks``
    with `margin`) of each face of a `resolution` px image to `size` px, pixel centres as in
    ``crop.crop_matrix`` (align_corners=False)."""

    def to_norm(n):  # pixels -> [-1, 1] with pixel edges at +-1
        return np.array([[2 / n, 0, 1 / n - 1], [0, 2 / n, 1 / n - 1], [0, 0, 1]])

    thetas = []
    for p in points:
        m = np.vstack([cr.crop_matrix(cr.box_from_landmarks(p, margin), size), [0, 0, 1]])  # image -> crop pixels
        thetas.append((to_norm(resolution) @ np.linalg.inv(m) @ np.linalg.inv(to_norm(size)))[:2])
    return torch.tensor(np.array(thetas), dtype=torch.float32)


class Critic(torch.nn.Module):
    """A frozen 68-point hourglass detector as a differentiable landmark reader of generated faces."""

    def __init__(self, folder: str | Path):
        super().__init__()
        model, config = load_detector(folder)
        if model.cfg.arch != "hourglass" or model.cfg.points != lm.N_POINTS:
            raise ValueError(f"{folder}: the critic must be a 68-point hourglass detector, not arch "
                             f"{model.cfg.arch!r} with {model.cfg.points} points")
        self.model = model.eval().requires_grad_(False)
        self.margin = float(config["margin"])
        self.register_buffer("mean", torch.tensor(config["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config["std"], dtype=torch.float32).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # always in evaluation mode (batch-norm statistics stay fixed)
        return super().train(False)

    def landmarks(self, images: torch.Tensor, points: np.ndarray) -> torch.Tensor:
        """(N, 68, 2) landmarks in image pixels read from `images` ((N, 3, R, R) in [-1, 1]),
        each cropped from the box of its conditioning `points` (N, 68, 2)."""
        size, r = self.model.cfg.input_size, images.shape[-1]
        theta = crop_grid(points, r, size, self.margin).to(images)
        grid = F.affine_grid(theta, (len(images), 3, size, size), align_corners=False)
        crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = ((crops + 1) * 127.5 - self.mean) / self.std
        heat = self.model(x)[-1]
        with torch.autocast(images.device.type, enabled=False):  # coordinates in float32 under mixed precision
            heat = heat.float()
            in_crop = hm.from_heatmap(local_integral(heat), size, heat.shape[-1])  # crop pixels
            m = torch.stack([torch.tensor(cr.invert(cr.crop_matrix(cr.box_from_landmarks(p, self.margin), size)))
                             for p in points]).to(in_crop)  # crop -> image pixels
            return in_crop @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]

    def loss(self, images: torch.Tensor, points: np.ndarray) -> torch.Tensor:
        """Mean landmark distance over the inter-ocular distance of `points`."""
        pred = self.landmarks(images, points)
        target = torch.as_tensor(np.asarray(points), dtype=pred.dtype, device=images.device)
        iod = torch.as_tensor(lm.inter_ocular(np.asarray(points)), dtype=pred.dtype, device=images.device)
        return ((pred - target).norm(dim=-1).mean(-1) / iod.clamp_min(1e-6)).mean()


def train_critic(images: np.ndarray, points: np.ndarray, val_images: np.ndarray, val_points: np.ndarray,
                 section: dict, out: str | Path, progress: bool = True) -> TrainResult:
    """Train the critic on the generator's training faces at its resolution (``diffusion.critic``:
    ``model``, a ``NetworkConfig``; ``train``, a detector ``TrainConfig``), selected on `val_*`."""
    faces = [dt.FaceSet.from_arrays(list(i), list(p)) for i, p in ((images, points), (val_images, val_points))]
    return dt.train(*faces, NetworkConfig(**section["model"]), dt.TrainConfig.from_dict(section["train"]), out,
                    progress=progress)
