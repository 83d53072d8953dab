"""Shared by the detector tests: tiny network configs (one of every architecture), ten rendered faces and a short
training config."""
import pytest

from lib.data import datasets as ds
from lib.data.procedural import render_face
from lib.detector import training as tr
from lib.detector.network import NetworkConfig

MCFG = NetworkConfig(stacks=1, channels=16, depth=2, input_size=32, heatmap_size=8, sigma=1.0)
MOBILE = NetworkConfig(arch="mobilenet", channels=32, input_size=64, heatmap_size=4, pretrained=False)
# one small network of every architecture, for the checks that inference keeps the landmarks
INFERENCE_CASES = [
    NetworkConfig(stacks=2, channels=16, depth=2, input_size=32, heatmap_size=8),
    MOBILE,
    NetworkConfig(arch="regression", backbone="mobilenet_v2", input_size=32, pretrained=False),
    NetworkConfig(arch="regression", backbone="resnet18", input_size=32, pretrained=False),
    NetworkConfig(arch="transfer", stacks=1, channels=8, depth=2, input_size=32, heatmap_size=8),
]


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    out = []
    for i in range(10):
        f = render_face(200 + i, "photo", 64)
        ds.save_image(d / f"{i}.jpg", f.image)
        out.append(ds.Sample(d / f"{i}.jpg", f.landmarks))
    return out


@pytest.fixture(scope="session")
def faces(samples):
    return tr.FaceSet(samples[:8]), tr.FaceSet(samples[8:])


def short_config(**kw):
    base = dict(steps=6, batch_size=4, lr=1e-3, warmup=2, checkpoint_every=3, val_every=3, threads=1)
    base.update(kw)
    return tr.TrainConfig.from_dict(base)
