"""Direct coordinate regression: a backbone, global average pooling and one linear
layer to the 2K landmark coordinates, trained with an L1 loss (the classic
baseline the heatmap detectors are compared against, e.g. in the rendered-face
studies of Wood et al. 2021).

Backbones (``NetworkConfig.backbone``):

- ``mobilenet_v2``: the ImageNet-pretrained MobileNetV2 that ships offline
  (``lib.core.mobilenet``), or from scratch with ``pretrained: false``;
- ``resnet18``: ResNet-18 (He et al. 2016) as torchvision defines it, with
  torchvision's parameter names so its state dicts load. torchvision itself is
  not a dependency: its wheels for this torch build fail to load their
  operators, and transformers then fails on import. ImageNet weights for it do
  not ship offline, so it is trained from scratch (``pretrained: false``; ``true``
  is an error, not a silent download).

Coordinates are regressed as fractions of the crop around its centre,
``(p + 0.5) / S - 0.5`` for a pixel-centre coordinate ``p`` in an ``S`` px crop,
so the output scale does not depend on the input size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import mobilenet as mn

BACKBONES = ("mobilenet_v2", "resnet18")


def _backbone(name: str, pretrained: bool) -> tuple[nn.Module, int]:
    """(feature extractor to a (N, C, h, w) map, C)."""
    if name == "mobilenet_v2":
        net = mn.load_mobilenet_v2() if pretrained else mn.MobileNetV2()
        return net.features, 1280
    if name == "resnet18":
        if pretrained:
            raise ValueError("backbone resnet18: its ImageNet weights do not ship offline; "
                             "set model.pretrained: false (trained from scratch)")
        return ResNet18(), 512
    raise ValueError(f"backbone {name!r}: expected one of {BACKBONES}")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet-18's feature extractor (stride 32, 512 channels): torchvision's
    ``resnet18`` without its pooling and classifier, initialised as torchvision does."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        for i, w in enumerate(widths):
            cin, stride = widths[max(0, i - 1)], 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def to_unit(points: torch.Tensor, size: int) -> torch.Tensor:
    """Crop pixels -> fractions of the crop around its centre."""
    return (points + 0.5) / size - 0.5


def from_unit(points: torch.Tensor, size: int) -> torch.Tensor:
    return (points + 0.5) * size - 0.5


class CoordinateRegressor(nn.Module):
    def __init__(self, cfg, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        self.features, width = _backbone(cfg.backbone, pretrained)
        self.head = nn.Linear(width, 2 * cfg.points)
        nn.init.normal_(self.head.weight, std=0.001)
        nn.init.zeros_(self.head.bias)

    def forward(self, x) -> list[torch.Tensor]:
        """Images (N, 3, S, S) -> [coordinates (N, K, 2) as fractions of the crop]."""
        y = self.head(self.features(x).mean((2, 3)))
        return [y.view(len(x), self.cfg.points, 2)]

    def landmarks(self, outputs) -> torch.Tensor:
        """(N, K, 2) crop pixels."""
        return from_unit(outputs[0], self.cfg.input_size)

    def loss(self, outputs, points: torch.Tensor, train_cfg=None) -> torch.Tensor:
        """Mean L1 distance to `points` (N, K, 2, crop pixels), in fractions of the crop;
        `train_cfg` is unused (the heatmap losses of ``TrainConfig.loss`` are the hourglass's)."""
        return F.l1_loss(outputs[0], to_unit(points, self.cfg.input_size))
