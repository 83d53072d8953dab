"""Tests for lib.detector.regression: coordinate regression behind the one network interface,
the ResNet-18 port's shape and size, and a regressor trained, saved and loaded as a detector folder."""
import numpy as np
import pytest
import torch

from lib.detector import model as det
from lib.detector import regression as rg
from lib.detector import training as tr
from lib.detector.network import NetworkConfig, build_network
from tests.detector.conftest import short_config as _cfg

MOBILE = NetworkConfig(arch="regression", backbone="mobilenet_v2", input_size=32, pretrained=False)
RESNET = NetworkConfig(arch="regression", backbone="resnet18", input_size=32, pretrained=False)


@pytest.mark.parametrize("cfg", [MOBILE, RESNET], ids=lambda c: c.backbone)
def test_regressor_forward_landmarks_loss_backward(cfg):
    torch.manual_seed(0)
    model = build_network(cfg)
    out = model(torch.randn(2, 3, 32, 32))
    pts = model.landmarks(out)
    assert pts.shape == (2, 68, 2) and torch.isfinite(pts).all()
    loss = model.loss(out, torch.rand(2, 68, 2) * 32)
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not dead, dead


def test_coordinates_are_fractions_of_the_crop_and_the_loss_is_their_l1_distance():
    pts = torch.tensor([[[-0.5, -0.5], [31.5, 31.5], [15.5, 7.5]]])
    unit = rg.to_unit(pts, 32)
    torch.testing.assert_close(unit, torch.tensor([[[-0.5, -0.5], [0.5, 0.5], [0.0, -0.25]]]))
    torch.testing.assert_close(rg.from_unit(unit, 32), pts)
    model = rg.CoordinateRegressor(NetworkConfig(arch="regression", input_size=32, points=3), pretrained=False)
    torch.testing.assert_close(model.landmarks([unit]), pts)
    assert float(model.loss([unit], pts)) == pytest.approx(0.0, abs=1e-7)
    assert float(model.loss([unit + 0.1], pts)) == pytest.approx(0.1, abs=1e-6)


def test_resnet18_matches_torchvisions_definition():
    net = rg.ResNet18()
    # torchvision's resnet18 has 11,689,512 parameters, of which its classifier holds 513,000
    assert sum(p.numel() for p in net.parameters()) == 11_689_512 - 513_000
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    names = set(net.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer2.0.downsample.0.weight", "layer4.1.conv2.weight"} <= names


def test_backbones_without_offline_weights_and_unknown_ones_are_errors():
    with pytest.raises(ValueError, match="do not ship offline"):
        build_network(NetworkConfig(arch="regression", backbone="resnet18", pretrained=True))
    with pytest.raises(ValueError, match="backbone 'vgg'"):
        build_network(NetworkConfig(arch="regression", backbone="vgg", pretrained=False))


def test_pretrained_mobilenet_regressor_carries_the_imagenet_weights():
    from lib.core import mobilenet as mn
    model = build_network(NetworkConfig(arch="regression", input_size=32))
    imagenet = mn.load_mobilenet_v2().state_dict()
    assert torch.equal(model.state_dict()["features.18.0.weight"], imagenet["features.18.0.weight"])


def test_regressor_trains_saves_loads_and_predicts(faces, tmp_path):
    train, val = faces
    result = tr.train(train, val, RESNET, _cfg(steps=4, val_every=2), tmp_path / "r", progress=False)
    assert result.finished and np.isfinite(result.history["loss"]).all()
    model, config = det.load_detector(tmp_path / "r")
    assert config["model"]["backbone"] == "resnet18" and isinstance(model, rg.CoordinateRegressor)
    assert det.predict_crops(model, np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 68, 2)


def test_a_folder_naming_an_unknown_backbone_is_a_clear_error(faces, tmp_path):
    import json
    train, val = faces
    tr.train(train, val, MOBILE, _cfg(steps=2, val_every=2), tmp_path / "r", progress=False)
    cfg_path = tmp_path / "r" / "config.json"
    config = json.loads(cfg_path.read_text())
    config["model"]["backbone"] = "vgg16"
    cfg_path.write_text(json.dumps(config))
    with pytest.raises(det.BadDetectorFolder, match="model.backbone is 'vgg16'"):
        det.load_detector(tmp_path / "r")
