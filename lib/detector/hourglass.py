"""Stacked hourglass network (Newell et al. 2016), the landmark detector of STAR
(Zhou et al. 2023): a stem that brings the input down to the heatmap size,
then `stacks` hourglasses, each emitting one heatmap per landmark, with
intermediate supervision and re-injection of the heatmaps into the next stack.

STAR's published configuration: 4 stacks, 256 channels, depth 4, 256 px
input, 64 px heatmaps, 68 points (``NetworkConfig.star()``)."""
from __future__ import annotations

import torch
from torch import nn

from . import heatmaps as hm
from . import losses


class Residual(nn.Module):
    """Pre-activation bottleneck block."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.up = Residual(channels, channels)
        self.down = nn.Sequential(nn.MaxPool2d(2), Residual(channels, channels))
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.out = Residual(channels, channels)

    def forward(self, x):
        low = self.out(self.inner(self.down(x)))
        return self.up(x) + nn.functional.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """The ``hourglass`` network of ``lib.detector.network`` (its interface: forward,
    ``landmarks``, ``loss``)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        factor = cfg.input_size // cfg.heatmap_size
        if factor * cfg.heatmap_size != cfg.input_size or factor not in (1, 2, 4, 8):
            raise ValueError(f"input_size / heatmap_size must be 1, 2, 4 or 8, got "
                             f"{cfg.input_size} / {cfg.heatmap_size}")
        if cfg.heatmap_size % (2 ** cfg.depth):
            raise ValueError(f"heatmap_size {cfg.heatmap_size} is not divisible by 2**depth = {2 ** cfg.depth}")
        stem = [nn.Conv2d(3, c // 2, 7, stride=2 if factor > 1 else 1, padding=3, bias=False),
                nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True), Residual(c // 2, c // 2)]
        f = factor // 2 if factor > 1 else 1
        while f > 1:
            stem += [nn.MaxPool2d(2), Residual(c // 2, c // 2)]
            f //= 2
        stem += [Residual(c // 2, c)]
        self.stem = nn.Sequential(*stem)
        self.hourglasses = nn.ModuleList(Hourglass(cfg.depth, c) for _ in range(cfg.stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(c, c), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for _ in range(cfg.stacks))
        self.heads = nn.ModuleList(nn.Conv2d(c, cfg.points, 1) for _ in range(cfg.stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(cfg.stacks - 1))
        self.merge_heatmaps = nn.ModuleList(nn.Conv2d(cfg.points, c, 1) for _ in range(cfg.stacks - 1))

    def forward(self, x, features: bool = False):
        """Images (N, 3, S, S), normalised -> one (N, K, H, H) heatmap tensor per stack; with
        `features`, also the last stack's features (N, C, H, H), which ``head`` maps to its
        heatmaps (for domain adaptation, ``lib.detector.dense``)."""
        x = self.stem(x)
        outputs = []
        for i, (hg, feat, head) in enumerate(zip(self.hourglasses, self.features, self.heads)):
            y = feat(hg(x))
            h = head(y)
            outputs.append(h)
            if i < len(self.heads) - 1:
                x = x + self.merge_features[i](y) + self.merge_heatmaps[i](h)
        return (outputs, y) if features else outputs

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The last stack's heatmaps from its features."""
        return self.heads[-1](features)

    def landmarks(self, outputs) -> torch.Tensor:
        """(N, K, 2) crop pixels, decoded (sub-pixel) from the last stack's heatmaps."""
        cfg = self.cfg
        return hm.from_heatmap(hm.decode(outputs[-1]), cfg.input_size, cfg.heatmap_size)

    def loss(self, outputs, points: torch.Tensor, train_cfg) -> torch.Tensor:
        """``losses.detector_loss`` (``train_cfg.loss``: star | awing | mse) against Gaussian
        heatmaps of `points` (N, K, 2) in crop pixels."""
        cfg = self.cfg
        target_pts = hm.to_heatmap(points, cfg.input_size, cfg.heatmap_size)
        target = hm.encode(target_pts, cfg.heatmap_size, cfg.sigma)
        return losses.detector_loss(outputs, target, target_pts, train_cfg.loss, train_cfg.star_weight,
                                    train_cfg.star_w)
