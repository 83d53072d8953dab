"""Tests for lib.detector.network: both networks behind one interface (outputs, landmarks, loss),
the MobileNetV2 backbone's output strides, a mobilenet detector trained, saved and loaded, and the
inference copy (folded batch norms, channels-last) that predictors run."""
import numpy as np
import pytest
import torch

from lib.core import crop as cr
from lib.detector import model as det
from lib.detector import training as tr
from lib.detector.network import MobileNetHeatmap, NetworkConfig, build_network, for_inference
from tests.detector.conftest import INFERENCE_CASES, MCFG, MOBILE
from tests.detector.conftest import short_config as _cfg



@pytest.mark.parametrize("cfg", [MCFG, MOBILE], ids=lambda c: c.arch)
def test_one_interface_forward_landmarks_loss_backward(cfg):
    torch.manual_seed(0)
    model = build_network(cfg)
    x = torch.randn(2, 3, cfg.input_size, cfg.input_size)
    out = model(x)
    pts = model.landmarks(out)
    assert pts.shape == (2, cfg.points, 2) and torch.isfinite(pts).all()
    target = torch.rand(2, cfg.points, 2) * cfg.input_size
    loss = model.loss(out, target, _cfg())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not dead, dead


@pytest.mark.parametrize("input_size,grid", [(64, 8), (128, 8), (128, 4), (96, 3)])
def test_mobilenet_grid_follows_the_configured_stride(input_size, grid):
    cfg = NetworkConfig(arch="mobilenet", channels=16, input_size=input_size, heatmap_size=grid, pretrained=False)
    scores, offsets = MobileNetHeatmap(cfg, pretrained=False)(torch.zeros(1, 3, input_size, input_size))
    assert scores.shape == (1, 68, grid, grid) and offsets.shape == (1, 68, 2, grid, grid)


def test_mobilenet_rejects_a_stride_it_cannot_make():
    with pytest.raises(ValueError, match="8, 16 or 32"):
        build_network(NetworkConfig(arch="mobilenet", input_size=64, heatmap_size=16))
    with pytest.raises(ValueError, match="arch 'vit'"):
        build_network(NetworkConfig(arch="vit"))


def test_mobilenet_decodes_the_best_cell_plus_its_offsets_and_the_loss_is_zero_there():
    cfg = NetworkConfig(arch="mobilenet", channels=16, input_size=64, heatmap_size=4, points=3, pretrained=False)
    model = MobileNetHeatmap(cfg, pretrained=False)
    # targets in crop pixels; one at a cell centre, one off-centre, one near the border
    pts = torch.tensor([[[8.0 * 2 - 0.5, 24 - 0.5], [40.3, 10.9], [62.0, 1.0]]])
    g = hm_pts = (pts + 0.5) * 4 / 64 - 0.5
    cells = hm_pts.round().clamp(0, 3)
    scores = torch.zeros(1, 3, 4, 4)
    offsets = torch.zeros(1, 3, 2, 4, 4)
    for k in range(3):
        cx, cy = int(cells[0, k, 0]), int(cells[0, k, 1])
        scores[0, k, cy, cx] = 1.0
        offsets[0, k, :, cy, cx] = g[0, k] - cells[0, k]
    torch.testing.assert_close(model.landmarks([scores, offsets]), pts, atol=1e-5, rtol=0)
    assert float(model.loss([scores, offsets], pts)) == pytest.approx(0.0, abs=1e-7)
    assert float(model.loss([scores, offsets + 0.1], pts)) == pytest.approx(0.1, abs=1e-6)


def test_pretrained_backbone_carries_the_imagenet_weights():
    from lib.core import mobilenet as mn
    cfg = NetworkConfig(arch="mobilenet", channels=16, input_size=64, heatmap_size=4)
    model = build_network(cfg)
    imagenet = mn.load_mobilenet_v2().state_dict()
    assert torch.equal(model.state_dict()["features.17.conv.2.weight"], imagenet["features.17.conv.2.weight"])
    assert not torch.equal(build_network(cfg, pretrained=False).state_dict()["features.17.conv.2.weight"],
                           imagenet["features.17.conv.2.weight"])


def test_mobilenet_detector_trains_saves_loads_and_predicts(faces, tmp_path):
    train, val = faces
    cfg = NetworkConfig(arch="mobilenet", channels=16, input_size=64, heatmap_size=4)
    result = tr.train(train, val, cfg, _cfg(steps=4, val_every=2), tmp_path / "m", progress=False)
    assert result.finished and np.isfinite(result.history["loss"]).all()
    model, config = det.load_detector(tmp_path / "m")
    assert config["model"]["arch"] == "mobilenet" and isinstance(model, MobileNetHeatmap)
    crops = np.zeros((2, 64, 64, 3), np.uint8)
    assert det.predict_crops(model, crops).shape == (2, 68, 2)
    # and a fine-tune of it starts from the folder's weights, not ImageNet's
    tr.train(train, val, cfg, _cfg(steps=2, val_every=2, lr=1e-4), tmp_path / "ft", init=tmp_path / "m",
             progress=False)
    assert det.load_detector(tmp_path / "ft")[1]["model"]["arch"] == "mobilenet"


@pytest.mark.parametrize("cfg", INFERENCE_CASES, ids=lambda c: f"{c.arch}-{c.backbone}")
def test_inference_copy_gives_the_same_outputs_and_leaves_the_model_alone(cfg):
    torch.manual_seed(0)
    model = build_network(cfg)
    for m in model.modules():  # batch norms that do something, so folding them is checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not fast.training
    x = torch.randn(3, 3, cfg.input_size, cfg.input_size)
    with torch.inference_mode():
        model.eval()
        ref = model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_inference_copy_folds_the_hourglass_batch_norms_that_follow_a_convolution():
    model = build_network(NetworkConfig(stacks=1, channels=16, depth=2, input_size=32, heatmap_size=8))
    count = lambda m: sum(isinstance(q, torch.nn.BatchNorm2d) for q in m.modules())  # noqa: E731
    residuals = sum(type(q).__name__ == "Residual" for q in model.modules())
    # each pre-activation residual keeps its first norm (after an addition); the stem's and the
    # feature block's norms follow a convolution and go
    assert count(for_inference(model)) == residuals
    assert count(model) == 3 * residuals + 2


def test_detector_predicts_as_the_network_it_was_trained_as(faces, tmp_path):
    train, val = faces
    result = tr.train(train, val, MCFG, _cfg(steps=4), tmp_path / "d", progress=False)
    detector = det.Detector(tmp_path / "d")
    plain, _ = det.load_detector(tmp_path / "d")
    img = val.images[0]
    box = cr.box_from_landmarks(val.points[0], 0.0)
    got = detector.predict(img, box).landmarks
    crop_img, m, _ = cr.crop(img, cr.grow(box, detector.margin), MCFG.input_size)
    ref = cr.apply(cr.invert(m), det.predict_crops(plain.eval(), crop_img[None], mean=detector.mean,
                                                   std=detector.std)[0])
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert len(result.history)
