"""Heatmap losses for landmark detection, with per-stack weighting.

- ``awing``: Adaptive Wing loss (Wang et al. 2019) on heatmaps, with the
  foreground weight map of the paper.
- ``star``: the STAR loss (Zhou et al. 2023). Each heatmap is read as a
  distribution; its mean is the prediction and its covariance, decomposed into
  eigenvectors and eigenvalues, gives the directions and spreads of its
  ambiguity. The error is projected on the eigenvectors and divided by the
  square root of the eigenvalues, so an error along a blurry direction (along
  the jaw line, say) costs less than the same error across it; a regulariser
  on the eigenvalues keeps the spread from growing to excuse errors.
- ``mse``: plain heatmap regression, for comparison.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import heatmaps as hm


def awing(pred: torch.Tensor, target: torch.Tensor, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5,
          weight=10.0) -> torch.Tensor:
    diff = (pred - target).abs()
    a = alpha - target
    ratio = theta / epsilon
    A = omega * (1 / (1 + ratio ** a)) * a * ratio ** (a - 1) / epsilon
    C = theta * A - omega * torch.log1p(ratio ** a)
    loss = torch.where(diff < theta, omega * torch.log1p((diff / epsilon) ** a), A * diff - C)
    # foreground weighting: pixels near a landmark (dilated target > 0.2) count `weight` + 1 times
    mask = (F.max_pool2d(target, 3, stride=1, padding=1) > 0.2).float()
    return (loss * (1 + weight * mask)).mean()


def distribution_moments(heatmaps: torch.Tensor, floor: float = 1e-4):
    """Mean (..., 2) and covariance (..., 2, 2) of ReLU'd, normalised heatmaps.

    A small uniform `floor` keeps an all-negative (dead) heatmap a valid,
    wide distribution instead of a 0/0."""
    *lead, H, W = heatmaps.shape
    p = F.relu(heatmaps) + floor
    p = p / p.sum(dim=(-2, -1), keepdim=True)
    ys = torch.arange(H, dtype=p.dtype, device=p.device).view(H, 1)
    xs = torch.arange(W, dtype=p.dtype, device=p.device).view(1, W)
    mx = (p * xs).sum(dim=(-2, -1))
    my = (p * ys).sum(dim=(-2, -1))
    dx = xs - mx[..., None, None]
    dy = ys - my[..., None, None]
    cxx = (p * dx * dx).sum(dim=(-2, -1))
    cyy = (p * dy * dy).sum(dim=(-2, -1))
    cxy = (p * dx * dy).sum(dim=(-2, -1))
    cov = torch.stack([torch.stack([cxx, cxy], -1), torch.stack([cxy, cyy], -1)], -2)
    return torch.stack([mx, my], -1), cov


def eig2x2(cov: torch.Tensor, eps: float = 1e-6):
    """Eigenvalues (ascending) and eigenvectors (columns) of symmetric 2x2 matrices,
    in closed form: no gradient singularities where eigenvalues coincide."""
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    half_tr = (a + c) / 2
    disc = torch.sqrt(((a - c) / 2) ** 2 + b ** 2 + eps ** 2)
    vals = torch.stack([half_tr - disc, half_tr + disc], -1)
    angle = 0.5 * torch.atan2(2 * b, a - c + eps)  # direction of the larger eigenvalue
    v_big = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    v_small = torch.stack([-torch.sin(angle), torch.cos(angle)], -1)
    return vals, torch.stack([v_small, v_big], -1)


def star(heatmaps: torch.Tensor, target_points: torch.Tensor, w: float = 1.0, min_spread: float = 0.25
         ) -> torch.Tensor:
    """STAR loss; heatmaps (N, K, H, W), target points (N, K, 2) in heatmap
    coordinates. Eigenvalues are floored at `min_spread` (pixels squared): a
    heatmap cannot be sharper than its grid, and the floor keeps the division
    by the spread finite on collapsed heatmaps."""
    mean, cov = distribution_moments(heatmaps)
    vals, vecs = eig2x2(cov)
    vals = vals.clamp_min(min_spread)
    err = mean - target_points  # (N, K, 2)
    proj = (vecs.transpose(-1, -2) @ err.unsqueeze(-1)).squeeze(-1)  # error along each eigenvector
    dist = F.smooth_l1_loss(proj / torch.sqrt(vals), torch.zeros_like(proj), reduction="none").sum(-1)
    return (dist + 0.5 * w * vals.sum(-1)).mean()


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def detector_loss(outputs: list[torch.Tensor], target_heatmaps: torch.Tensor, target_points: torch.Tensor,
                  kind: str = "star", star_weight: float = 1.0, star_w: float = 1.0) -> torch.Tensor:
    """Sum over stacks, later stacks weighted more (weights 1/S, 2/S, ..., 1),
    of the heatmap loss (AWing, or MSE for ``kind="mse"``) plus, for
    ``kind="star"``, the STAR loss on the same heatmaps."""
    S = len(outputs)
    total = 0.0
    for s, out in enumerate(outputs, 1):
        if kind == "mse":
            l = mse(out, target_heatmaps)
        else:
            l = awing(out, target_heatmaps)
            if kind == "star":
                l = l + star_weight * star(out, target_points, star_w)
        total = total + (s / S) * l
    return total


__all__ = ["awing", "star", "mse", "detector_loss", "distribution_moments", "eig2x2", "hm"]
