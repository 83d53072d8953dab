"""The detector's networks behind one interface, named by ``NetworkConfig.arch``:

- ``hourglass``: STAR's stacked hourglass trained from scratch, one Gaussian
  heatmap per landmark, AWing + STAR loss, sub-pixel decoding
  (``lib.detector.hourglass``);
- ``regression``: a backbone (MobileNetV2, ImageNet-pretrained, or torchvision's
  ResNet-18 from scratch; ``backbone``) pooled into one linear layer to the
  coordinates, L1 loss (``lib.detector.regression``);
- ``transfer``: a dense hourglass (the 257 points of the dense scheme) and an
  MLP to the 68 iBUG points, for label transfer (``lib.detector.dense``);
- ``mobilenet``: an ImageNet-pretrained MobileNetV2 (the weights that ship
  offline, ``lib.core.mobilenet``) under a PIPNet-style head (Jin et al. 2021):
  on a coarse grid (``input_size / heatmap_size`` = 8, 16 or 32), one score map
  per landmark and the landmark's x and y offset from each cell's centre. The
  prediction is the best-scoring cell plus its offsets, so the grid's coarseness
  does not cap the accuracy.

Every network maps normalised crops (N, 3, S, S) to a list of output tensors and
has ``landmarks(outputs)`` (N, K, 2) in crop pixels and ``loss(outputs, points,
train_cfg)`` for target points in crop pixels, so training, fine-tuning, the
detector folder and the evaluation never ask which network they hold.

``for_inference`` gives the copy a predictor runs: every convolution followed by
a batch norm folded into one convolution (torch's ``fuse_conv_bn_eval``) and the
weights in channels-last layout, the same outputs to float precision, 1.26x faster at
batch 1 in one run of ``benchmarks/bench_detector.py``.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core import mobilenet as mn
from . import heatmaps as hm

ARCHS = ("hourglass", "mobilenet", "regression", "transfer")


@dataclass
class NetworkConfig:
    arch: str = "hourglass"  # hourglass | mobilenet | regression | transfer
    stacks: int = 4          # hourglass: stacks, channels, depth; mobilenet: channels of the head
    channels: int = 256
    depth: int = 4
    input_size: int = 256
    heatmap_size: int = 64   # the heatmap (hourglass) or score grid (mobilenet) side
    points: int = 68
    sigma: float = 1.5       # hourglass: target Gaussian width, in heatmap pixels
    pretrained: bool = True  # mobilenet, regression: start from the ImageNet weights (training from scratch only)
    backbone: str = "mobilenet_v2"  # regression: mobilenet_v2 | resnet18 (lib.detector.regression)

    @classmethod
    def star(cls) -> "NetworkConfig":
        """STAR's published configuration: 4 stacks, 256 channels, depth 4, 256 px, 64 px heatmaps."""
        return cls()

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "NetworkConfig":
        return cls(**json.loads(Path(path).read_text()))


def for_inference(model: nn.Module) -> nn.Module:
    """An evaluation-mode copy of `model` for prediction only (never trained or saved:
    its folded layers change the state dict): each ``Conv2d`` directly followed by a
    ``BatchNorm2d`` inside an ``nn.Sequential`` becomes one convolution, and the weights
    are channels-last, so inputs should be too (``lib.detector.model.predict_crops``)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for i in range(len(seq) - 1):
                conv, bn = seq[i], seq[i + 1]
                if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
                    seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model.to(memory_format=torch.channels_last)


def build_network(cfg: NetworkConfig, pretrained: bool | None = None) -> nn.Module:
    """The network `cfg` names. `pretrained` (default: ``cfg.pretrained``) loads the
    ImageNet backbone weights of a ``mobilenet`` or ``regression``; pass False when weights follow."""
    if cfg.arch == "hourglass":
        from .hourglass import StackedHourglass
        return StackedHourglass(cfg)
    if cfg.arch == "mobilenet":
        return MobileNetHeatmap(cfg, cfg.pretrained if pretrained is None else pretrained)
    if cfg.arch == "transfer":
        from .dense import LabelTransfer
        return LabelTransfer(cfg)
    if cfg.arch == "regression":
        from .regression import CoordinateRegressor
        return CoordinateRegressor(cfg, cfg.pretrained if pretrained is None else pretrained)
    raise ValueError(f"arch {cfg.arch!r}: expected one of {ARCHS}")


class MobileNetHeatmap(nn.Module):
    """MobileNetV2 features (up to its 320-channel block), with the strides beyond
    ``input_size / heatmap_size`` turned into dilations (as DeepLab does), then a
    1x1 conv block of ``channels`` and three 1x1 heads: scores, x offsets, y offsets."""

    def __init__(self, cfg: NetworkConfig, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        stride = cfg.input_size // cfg.heatmap_size
        if stride * cfg.heatmap_size != cfg.input_size or stride not in (8, 16, 32):
            raise ValueError(f"mobilenet: input_size / heatmap_size must be 8, 16 or 32, got "
                             f"{cfg.input_size} / {cfg.heatmap_size}")
        backbone = mn.load_mobilenet_v2() if pretrained else mn.MobileNetV2()
        features = backbone.features[:18]  # without the 1280-channel ImageNet layer
        reached, dilation = 2, 1  # the stem conv has stride 2
        for block in list(features)[1:]:
            dw = block.conv[-3][0]  # the 3x3 depthwise conv of an inverted residual
            if dw.stride == (2, 2):
                if reached >= stride:
                    dw.stride, dilation = (1, 1), dilation * 2
                    dw.dilation, dw.padding = (dilation // 2,) * 2, (dilation // 2,) * 2
                    continue
                reached *= 2
            if dilation > 1:
                dw.dilation, dw.padding = (dilation,) * 2, (dilation,) * 2
        self.features = features
        c = cfg.channels
        self.neck = nn.Sequential(nn.Conv2d(320, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.heads = nn.Conv2d(c, 3 * cfg.points, 1)
        nn.init.normal_(self.heads.weight, std=0.001)
        nn.init.zeros_(self.heads.bias)

    def forward(self, x) -> list[torch.Tensor]:
        """Images (N, 3, S, S) -> [scores (N, K, G, G), offsets (N, K, 2, G, G)], offsets in cells."""
        y = self.heads(self.neck(self.features(x)))
        n, _, g, _ = y.shape
        k = self.cfg.points
        return [y[:, :k], y[:, k:].reshape(n, 2, k, g, g).transpose(1, 2)]

    def landmarks(self, outputs) -> torch.Tensor:
        """(N, K, 2) crop pixels: the best cell of each score map plus its offsets."""
        scores, offsets = outputs
        n, k, g, _ = scores.shape
        idx = scores.flatten(2).argmax(-1)  # (N, K)
        cells = torch.stack([idx % g, idx // g], -1).to(offsets.dtype)
        off = offsets.flatten(3).gather(3, idx[:, :, None, None].expand(n, k, 2, 1))[..., 0]
        return hm.from_heatmap(cells + off, self.cfg.input_size, g)

    def loss(self, outputs, points: torch.Tensor, train_cfg=None, score_weight: float = 10.0) -> torch.Tensor:
        """PIPNet's loss: mean squared error of the score maps against a one-hot map at
        the cell nearest each landmark (weighted 10, as PIPNet), plus the L1 error of
        that cell's offsets. `points` (N, K, 2) in crop pixels; `train_cfg` is unused
        (the heatmap losses of ``TrainConfig.loss`` are the hourglass's)."""
        scores, offsets = outputs
        n, k, g, _ = scores.shape
        p = hm.to_heatmap(points, self.cfg.input_size, g)
        cells = p.round().clamp(0, g - 1)
        idx = (cells[..., 1] * g + cells[..., 0]).long()  # (N, K)
        target = torch.zeros_like(scores).flatten(2).scatter_(2, idx[..., None], 1.0)
        score_loss = F.mse_loss(scores.flatten(2), target)
        off = offsets.flatten(3).gather(3, idx[:, :, None, None].expand(n, k, 2, 1))[..., 0]
        return score_weight * score_loss + F.l1_loss(off, p - cells)
