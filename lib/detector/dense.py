"""Dense landmarks: label transfer to the 68 iBUG points and unsupervised domain
adaptation from rendered to real faces (notebook 08).

- A **dense detector** is the ``hourglass`` network with ``points: 257``: it
  predicts every point of the dense scheme (``lib.core.landmarks``), trained on
  rendered faces, whose dense labels are exact. Its "nearest dense points" are
  the 68 it predicts at ``IBUG_IN_DENSE`` (``landmarks.as_68``).
- **Label transfer** (``arch: transfer`` of ``lib.detector.network``): the dense
  hourglass, then a small MLP from its dense points (read from the heatmaps by a
  local integral, differentiable) to a correction of the 68 nearest dense
  points. It is trained on real 68-point faces, with the dense detector frozen
  (``TrainConfig.freeze: [dense]``), then jointly (``freeze: []``), so the
  annotators' definition of the 68 points (e.g. 300-W's jaw line) is learnt
  from real labels while the dense detector keeps what the rendered faces taught.
- **Unsupervised adaptation** (``Adaptation``): while the dense detector trains
  on labelled rendered faces, unlabelled real faces (crops around the face
  finder's box) enter an adversarial term through a gradient-reversal layer:

  * ``daln``: DALN's discriminator-free loss (Chen et al., CVPR 2022). The
    detector's own heatmap head is the critic: the nuclear-norm Wasserstein
    discrepancy between the predictions on rendered and on real features. With
    each landmark's heatmap read as a distribution over positions (a softmax),
    the prediction matrix of a batch is (N, H*W) per landmark; the critic
    maximises ``||P_rendered||_* - ||P_real||_*``, the features, through the
    reversed gradient, minimise it.
  * ``discriminator``: the classic alternative (DANN, Ganin et al. 2016): an
    explicit domain discriminator on the same reversed features, trained with
    binary cross-entropy.

  The adversarial weight ramps up as in DANN, ``w * (2 / (1 + exp(-10 p)) - 1)``
  at progress ``p`` of the run.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import landmarks as lm
from ..core.training import epoch_batch
from .regression import from_unit, to_unit

TRANSFER_HIDDEN = 256  # width of the label-transfer MLP
INTEGRAL_WINDOW = 2    # the local integral reads (2w+1)^2 heatmap pixels around each maximum
METHODS = ("daln", "discriminator")


def local_integral(heatmaps: torch.Tensor, window: int = INTEGRAL_WINDOW) -> torch.Tensor:
    """(N, K, H, W) heatmaps -> (N, K, 2) heatmap coordinates: the mean position under the
    positive heatmap within `window` pixels of its maximum (differentiable in the values;
    the arg-max of a flat map is its centre)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.flatten(2)
    idx = flat.argmax(-1)
    cy, cx = (idx // w).float(), (idx % w).float()
    ys = torch.arange(h, dtype=heatmaps.dtype, device=heatmaps.device)
    xs = torch.arange(w, dtype=heatmaps.dtype, device=heatmaps.device)
    near = (((ys[None, None, :, None] - cy[..., None, None]).abs() <= window)
            & ((xs[None, None, None, :] - cx[..., None, None]).abs() <= window))
    weight = F.relu(heatmaps) * near + 1e-6 * near  # never all zero inside the window
    total = weight.sum((2, 3))
    x = (weight * xs[None, None, None, :]).sum((2, 3)) / total
    y = (weight * ys[None, None, :, None]).sum((2, 3)) / total
    return torch.stack([x, y], -1)


class LabelTransfer(nn.Module):
    """The ``transfer`` network: a dense hourglass (``cfg`` with ``points`` = N_DENSE)
    and an MLP mapping its dense points to a correction of the 68 nearest ones."""

    def __init__(self, cfg):
        super().__init__()
        from .hourglass import StackedHourglass
        if cfg.points != lm.N_POINTS:
            raise ValueError(f"transfer: points is {cfg.points}; the network maps the dense scheme to the "
                             f"{lm.N_POINTS} iBUG points")
        self.cfg = cfg
        self.dense = StackedHourglass(replace(cfg, arch="hourglass", points=lm.N_DENSE))
        self.mlp = nn.Sequential(nn.Linear(2 * lm.N_DENSE, TRANSFER_HIDDEN), nn.ReLU(inplace=True),
                                 nn.Linear(TRANSFER_HIDDEN, 2 * lm.N_POINTS))
        nn.init.zeros_(self.mlp[-1].weight)  # starts as the nearest dense points
        nn.init.zeros_(self.mlp[-1].bias)
        self.register_buffer("ibug", torch.as_tensor(lm.IBUG_IN_DENSE), persistent=False)

    def init_from(self, model: nn.Module) -> None:
        """Start from a dense detector (its weights go to ``dense``) or another transfer network."""
        if isinstance(model, LabelTransfer):
            self.load_state_dict(model.state_dict())
        elif getattr(model, "cfg", None) is not None and model.cfg.points == lm.N_DENSE:
            self.dense.load_state_dict(model.state_dict())
        else:
            raise ValueError("a transfer network starts from a dense detector (points: "
                             f"{lm.N_DENSE}) or a transfer network")

    def forward(self, x) -> list[torch.Tensor]:
        """[68 points (N, 68, 2) in fractions of the heatmap, then the dense heatmaps per stack]."""
        heat = self.dense(x)
        dense = to_unit(local_integral(heat[-1]), self.cfg.heatmap_size)  # fractions of the crop around its centre
        out = dense[:, self.ibug] + self.mlp(dense.flatten(1)).view(-1, lm.N_POINTS, 2)
        return [out, *heat]

    def landmarks(self, outputs) -> torch.Tensor:
        return from_unit(outputs[0], self.cfg.input_size)

    def loss(self, outputs, points: torch.Tensor, train_cfg=None) -> torch.Tensor:
        """L1 distance to the 68 target points, in fractions of the crop."""
        return F.l1_loss(outputs[0], to_unit(points, self.cfg.input_size))


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient multiplied by ``-scale`` backward."""
    return _Reverse.apply(x, scale)


def nuclear_wasserstein(source_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """DALN's nuclear-norm Wasserstein discrepancy for heatmaps: (N, K, H, W) logits of
    each domain, each landmark's map a softmax over positions; the mean over landmarks
    of ``(||P_source||_* - ||P_target||_*) / N``."""
    def nuc(logits):  # the singular values of P are the square roots of the eigenvalues of P P^T (N x N)
        p = logits.flatten(2).softmax(-1).transpose(0, 1)  # (K, N, H*W)
        eig = torch.linalg.eigvalsh(p @ p.transpose(1, 2))
        return eig.clamp_min(1e-8).sqrt().sum(-1)
    return ((nuc(source_logits) - nuc(target_logits)) / len(source_logits)).mean()


class DomainDiscriminator(nn.Module):
    """Real-or-rendered from a stack's features (N, C, H, W): two strided convolutions, pooled, one logit."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, channels, 3, 2, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                 nn.Conv2d(channels, channels, 3, 2, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1))

    def forward(self, features):
        return self.net(features)[:, 0]


class Adaptation(nn.Module):
    """The adversarial term of unsupervised adaptation, added to the detector's loss by
    ``training.train(..., adaptation=...)``. `targets`: unlabelled real crops (M, S, S, 3)
    uint8 at the detector's input size; each step draws a batch of them in a seeded
    epoch order. Its parameters (the discriminator's) are trained and checkpointed with
    the detector."""

    def __init__(self, method: str, targets: np.ndarray, channels: int, weight: float = 1.0, seed: int = 0):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"adaptation method {method!r}: expected one of {METHODS}")
        if not len(targets):
            raise ValueError("adaptation needs unlabelled target faces; none were given")
        self.method, self.weight, self.seed = method, float(weight), seed
        self.targets = targets
        self.discriminator = None
        if method == "discriminator":
            with torch.random.fork_rng():  # its initial weights depend on the seed only
                torch.manual_seed(seed)
                self.discriminator = DomainDiscriminator(channels)

    def settings(self) -> dict:
        return {"method": self.method, "weight": self.weight, "n_targets": len(self.targets)}

    def ramp(self, step: int, steps: int) -> float:
        p = step / max(1, steps)
        return self.weight * (2 / (1 + math.exp(-10 * p)) - 1)

    def loss(self, model: nn.Module, source_features: torch.Tensor, step: int, steps: int, batch) -> torch.Tensor:
        """The adversarial loss at `step`; `batch` turns uint8 crops into the network's input."""
        idx = epoch_batch(step, len(self.targets), len(source_features), self.seed + 7919)
        _, target_features = model(batch(self.targets[idx]), features=True)
        scale = self.ramp(step, steps)
        fs, ft = grad_reverse(source_features, 1.0), grad_reverse(target_features, 1.0)
        if self.method == "daln":
            return -scale * nuclear_wasserstein(model.head(fs), model.head(ft))
        logits = self.discriminator(torch.cat([fs, ft]))
        labels = torch.cat([torch.ones(len(fs)), torch.zeros(len(ft))])
        return scale * F.binary_cross_entropy_with_logits(logits, labels)


def decode_dense(model: nn.Module, outputs) -> torch.Tensor:
    """(N, 257, 2) crop pixels from a dense detector's or a transfer network's outputs."""
    if isinstance(model, LabelTransfer):
        return model.dense.landmarks(outputs[1:])
    return model.landmarks(outputs)
