import pytest
import torch

from lib.detector.hourglass import StackedHourglass
from lib.detector.network import NetworkConfig

CONFIGS = [
    NetworkConfig(stacks=1, channels=16, depth=2, input_size=32, heatmap_size=8, points=68),
    NetworkConfig(stacks=2, channels=16, depth=3, input_size=64, heatmap_size=16, points=68),
    NetworkConfig(stacks=2, channels=8, depth=1, input_size=16, heatmap_size=16, points=5),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"s{c.stacks}c{c.channels}d{c.depth}i{c.input_size}")
def test_forward_backward(cfg):
    torch.manual_seed(0)
    model = StackedHourglass(cfg)
    out = model(torch.randn(2, 3, cfg.input_size, cfg.input_size))
    assert len(out) == cfg.stacks
    for o in out:
        assert o.shape == (2, cfg.points, cfg.heatmap_size, cfg.heatmap_size)
        assert torch.isfinite(o).all()
    sum(o.square().mean() for o in out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_star_configuration_is_the_published_one():
    c = NetworkConfig.star()
    assert (c.stacks, c.channels, c.input_size, c.heatmap_size, c.points) == (4, 256, 256, 64, 68)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="input_size / heatmap_size"):
        StackedHourglass(NetworkConfig(input_size=100, heatmap_size=32))
    with pytest.raises(ValueError, match="divisible"):
        StackedHourglass(NetworkConfig(input_size=64, heatmap_size=16, depth=5))
