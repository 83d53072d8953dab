"""Landmark heatmaps: Gaussian encoding and sub-pixel decoding.

Heatmap coordinates follow the pixel-centre convention of the crops: a point
at crop pixel p maps to heatmap position (p + 0.5) * H / S - 0.5.
Decoding takes the arg-max and refines it by fitting a parabola to the log
heatmap in x and y (exact for a Gaussian; the refinement of DARK, Zhang et
al. 2020), falling back to the arg-max where the neighbourhood is flat."""
from __future__ import annotations

import torch


def to_heatmap(points: torch.Tensor, input_size: int, heatmap_size: int) -> torch.Tensor:
    return (points + 0.5) * (heatmap_size / input_size) - 0.5


def from_heatmap(points: torch.Tensor, input_size: int, heatmap_size: int) -> torch.Tensor:
    return (points + 0.5) * (input_size / heatmap_size) - 0.5


def encode(points: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(..., K, 2) heatmap-coordinate points -> (..., K, size, size) Gaussians, peak 1."""
    grid = torch.arange(size, dtype=points.dtype, device=points.device)
    gx = torch.exp(-((grid - points[..., 0:1]) ** 2) / (2 * sigma ** 2))  # (..., K, W)
    gy = torch.exp(-((grid - points[..., 1:2]) ** 2) / (2 * sigma ** 2))  # (..., K, H)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def decode(heatmaps: torch.Tensor) -> torch.Tensor:
    """(..., K, H, W) heatmaps -> (..., K, 2) sub-pixel (x, y) in heatmap coordinates."""
    *lead, H, W = heatmaps.shape
    hm = heatmaps.reshape(-1, H, W).float()
    idx = hm.flatten(1).argmax(dim=1)
    y, x = idx // W, idx % W
    n = torch.arange(hm.shape[0], device=hm.device)
    log = torch.log(hm.clamp_min(1e-10))

    def offset(c, lo_ok, hi_ok, at):
        left, mid, right = at(c - 1), at(c), at(c + 1)
        denom = left - 2 * mid + right
        d = 0.5 * (left - right) / torch.where(denom < -1e-6, denom, torch.full_like(denom, -1.0))
        ok = lo_ok & hi_ok & (denom < -1e-6)
        return torch.where(ok, d.clamp(-0.5, 0.5), torch.zeros_like(d))

    xc, yc = x.clamp(1, W - 2), y.clamp(1, H - 2)
    dx = offset(xc, x > 0, x < W - 1, lambda c: log[n, y, c])
    dy = offset(yc, y > 0, y < H - 1, lambda c: log[n, c, x])
    out = torch.stack([x.float() + dx, y.float() + dy], dim=1)
    return out.reshape(*lead, 2)
