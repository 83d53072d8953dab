"""Tests for lib.detector.dense: the local integral, gradient reversal, DALN's discrepancy (against
a direct SVD and by gradient check), the adversarial term, label transfer (starts as the nearest
dense points, trains frozen then jointly, saves as a detector folder) and dense detectors as predictors."""
import numpy as np
import pytest
import torch

from lib.core import crop as cr
from lib.core import landmarks as lm
from lib.detector import dense as dn
from lib.detector import heatmaps as hm
from lib.detector import model as det
from lib.detector import training as tr
from lib.detector.model import to_tensor
from lib.detector.network import NetworkConfig, build_network
from tests.detector.conftest import short_config as _cfg

DENSE = NetworkConfig(stacks=1, channels=8, depth=2, input_size=32, heatmap_size=8, sigma=1.0, points=lm.N_DENSE)
TRANSFER = NetworkConfig(arch="transfer", stacks=1, channels=8, depth=2, input_size=32, heatmap_size=8, sigma=1.0)


def test_local_integral_reads_a_gaussian_at_its_centre():
    pts = torch.tensor([[[3.3, 4.6], [0.2, 7.0]]])
    got = dn.local_integral(hm.encode(pts, 8, 0.6), window=3)
    torch.testing.assert_close(got[0, 0], pts[0, 0], atol=0.02, rtol=0)
    assert 0 <= got[0, 1, 0] < 1.0 and got[0, 1, 1] > 6.5  # at the border it stays near the peak


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    (dn.grad_reverse(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_nuclear_wasserstein_equals_the_svd_definition_and_passes_a_gradient_check():
    torch.manual_seed(0)
    a = torch.randn(6, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    nuc = lambda t: torch.linalg.svdvals(t.flatten(2).softmax(-1).transpose(0, 1)).sum(-1)  # noqa: E731
    torch.testing.assert_close(dn.nuclear_wasserstein(a, b), ((nuc(a) - nuc(b)) / 6).mean())
    assert torch.autograd.gradcheck(lambda x, y: dn.nuclear_wasserstein(x, y), (a, b))
    # confident, diverse predictions have the larger nuclear norm
    sharp = torch.zeros(4, 1, 2, 2)
    sharp.view(4, 1, 4)[torch.arange(4), 0, torch.arange(4)] = 20.0
    assert float(dn.nuclear_wasserstein(sharp, torch.zeros(4, 1, 2, 2))) > 0.3


@pytest.mark.parametrize("method", dn.METHODS)
def test_adversarial_term_reaches_the_features_the_critic_and_the_discriminator(method):
    torch.manual_seed(0)
    model = build_network(DENSE)
    targets = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    adapt = dn.Adaptation(method, targets, DENSE.channels, weight=1.0)
    outputs, features = model(torch.randn(4, 3, 32, 32), features=True)
    assert features.shape == (4, 8, 8, 8) and torch.equal(model.head(features), outputs[-1])
    loss = adapt.loss(model, features, step=5, steps=10, batch=to_tensor)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    assert model.stem[0].weight.grad is not None and model.stem[0].weight.grad.abs().sum() > 0
    if method == "discriminator":
        assert all(p.grad is not None for p in adapt.parameters())
    assert adapt.ramp(0, 10) == 0 and adapt.ramp(10, 10) == pytest.approx(1.0, abs=1e-4)


def test_adaptation_rejects_an_unknown_method_and_no_targets():
    with pytest.raises(ValueError, match="'mmd'"):
        dn.Adaptation("mmd", np.zeros((1, 8, 8, 3), np.uint8), 8)
    with pytest.raises(ValueError, match="unlabelled target faces"):
        dn.Adaptation("daln", np.zeros((0, 8, 8, 3), np.uint8), 8)


def test_label_transfer_starts_as_the_nearest_dense_points_of_its_detector():
    torch.manual_seed(0)
    dense = build_network(DENSE).eval()
    transfer = build_network(TRANSFER).eval()
    transfer.init_from(dense)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = transfer(x)
        heat = dense(x)[-1]
    expected = hm.from_heatmap(dn.local_integral(heat), 32, 8)[:, lm.IBUG_IN_DENSE]
    torch.testing.assert_close(transfer.landmarks(out), expected, atol=1e-4, rtol=0)
    assert out[0].shape == (2, 68, 2) and len(out) == 2
    with pytest.raises(ValueError, match="starts from a dense detector"):
        transfer.init_from(build_network(NetworkConfig(stacks=1, channels=8, depth=2, input_size=32, heatmap_size=8)))


@pytest.fixture
def dense_faces(faces):
    train, val = faces
    return tuple(tr.FaceSet.from_arrays(f.images, [lm.to_dense(p) for p in f.points]) for f in (train, val))


def test_dense_detector_trains_and_predicts_the_68_as_a_detector_folder(dense_faces, faces, tmp_path):
    train, val = dense_faces
    result = tr.train(train, val, DENSE, _cfg(steps=2, val_every=2), tmp_path / "dense", progress=False)
    assert result.finished and np.isfinite(result.history["val_nme"].dropna()).all()
    image = faces[1].images[0]
    p = det.Detector(tmp_path / "dense").predict(image, cr.box_from_landmarks(faces[1].points[0], 0.0))
    assert p.landmarks.shape == (68, 2)


def test_label_transfer_trains_frozen_then_jointly(dense_faces, faces, tmp_path):
    train, val = dense_faces
    tr.train(train, val, DENSE, _cfg(steps=2, val_every=2), tmp_path / "dense", progress=False)
    before = det.load_detector(tmp_path / "dense")[0].state_dict()
    real_train, real_val = faces
    tr.train(real_train, real_val, TRANSFER, _cfg(steps=3, val_every=3, freeze=["dense"]), tmp_path / "frozen",
             init=tmp_path / "dense", progress=False)
    frozen, config = det.load_detector(tmp_path / "frozen")
    assert config["model"]["arch"] == "transfer"
    for k, v in before.items():  # weights and normalisation statistics of the frozen detector unchanged
        assert torch.equal(frozen.dense.state_dict()[k], v), k
    assert frozen.mlp[-1].weight.abs().sum() > 0
    tr.train(real_train, real_val, TRANSFER, _cfg(steps=2, val_every=2), tmp_path / "joint",
             init=tmp_path / "frozen", progress=False)
    joint = det.load_detector(tmp_path / "joint")[0]
    assert not torch.equal(joint.dense.stem[0].weight, frozen.dense.stem[0].weight)
    with pytest.raises(ValueError, match=r"freeze names \['trunk'\]"):
        tr.train(real_train, real_val, TRANSFER, _cfg(steps=1, freeze=["trunk"]), tmp_path / "bad",
                 init=tmp_path / "dense", progress=False)


def test_training_with_adaptation_checkpoints_the_discriminator_and_resumes(dense_faces, tmp_path):
    train, val = dense_faces
    targets = np.stack(train.images[:4])[:, :32, :32]
    adapt = lambda: dn.Adaptation("discriminator", targets, DENSE.channels, 1.0)  # noqa: E731
    full = tr.train(train, val, DENSE, _cfg(steps=4), tmp_path / "a", progress=False, adaptation=adapt())
    tr.train(train, val, DENSE, _cfg(steps=4), tmp_path / "b", progress=False, adaptation=adapt(), stop_at=2)
    resumed = tr.train(train, val, DENSE, _cfg(steps=4), tmp_path / "b", progress=False, adaptation=adapt())
    assert resumed.resumed_from == 2
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"], rtol=1e-5)
