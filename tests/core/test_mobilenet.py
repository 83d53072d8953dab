"""Tests for lib.core.mobilenet: the port loads torchvision's ImageNet state_dict exactly."""
import pytest
import torch

from lib.core import mobilenet as mn

TORCHVISION_PARAMS = 3_504_872  # sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters())


def test_state_dict_loads_strictly_with_torchvision_parameter_count():
    model = mn.load_mobilenet_v2()
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS
    state = torch.load(mn.weights_path(), map_location="cpu", weights_only=True)
    assert list(model.state_dict()) == list(state)  # same keys in the same order
    assert torch.equal(model.state_dict()["features.18.0.weight"], state["features.18.0.weight"])


def test_missing_weights_package_names_it(monkeypatch):
    monkeypatch.setattr(mn.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=mn.WEIGHTS_PACKAGE):
        mn.load_mobilenet_v2()
