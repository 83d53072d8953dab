"""The landmark critic of the generator's consistency loss: its differentiable crop (the
same pixels as ``lib.core.crop``), landmarks in image pixels, gradients into the image,
and its training (the generator's side: tests/generator/test_diffusion.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.core import crop as cr
from lib.data.procedural import render_face
from lib.detector import critic as cs
from lib.detector.network import NetworkConfig

CRITIC = NetworkConfig(stacks=1, channels=16, depth=2, input_size=32, heatmap_size=8, points=68)


SECTION = {"model": CRITIC.__dict__, "train": {"steps": 4, "batch_size": 4, "warmup": 1, "margin": 0.1,
                                               "checkpoint_every": 4, "val_every": 4, "threads": 1}}


def make_critic(folder, size: int = 64):
    faces = [render_face(i, "photo", size) for i in range(6)]
    images, points = np.array([f.image for f in faces]), np.array([f.landmarks for f in faces])
    result = cs.train_critic(images, points, images[:2], points[:2], SECTION, folder, progress=False)
    assert result.finished
    return folder


@pytest.fixture(scope="module")
def critic_dir(tmp_path_factory):
    return make_critic(tmp_path_factory.mktemp("critic") / "critic")


def test_critic_crop_is_the_crop_of_lib_core():
    face = render_face(3, "photo", 64)
    image = torch.from_numpy(face.image).permute(2, 0, 1)[None].float() / 127.5 - 1
    theta = cs.crop_grid(face.landmarks[None], 64, 32, 0.1)
    grid = F.affine_grid(theta, (1, 3, 32, 32), align_corners=False)
    ours = (F.grid_sample(image, grid, align_corners=False)[0].permute(1, 2, 0).numpy() + 1) * 127.5
    ref, _, _ = cr.crop(face.image, cr.box_from_landmarks(face.landmarks, 0.1), 32)
    assert np.abs(ours - ref.astype(np.float64)).mean() < 2.0


def test_critic_reads_landmarks_in_image_pixels_and_passes_gradients(critic_dir):
    critic = cs.Critic(critic_dir)
    face = render_face(1, "photo", 64)
    image = (torch.from_numpy(face.image).permute(2, 0, 1)[None].float() / 127.5 - 1).requires_grad_(True)
    points = face.landmarks[None]
    pred = critic.landmarks(image, points)
    assert pred.shape == (1, 68, 2)
    lo, hi = points.min(axis=1), points.max(axis=1)
    size = (hi - lo).max() * 1.2
    inside = (pred.detach().numpy() >= lo - size) & (pred.detach().numpy() <= hi + size)
    assert inside.all()  # in the image's pixels, around the face box, not in crop or heatmap pixels
    loss = critic.loss(image, points)
    loss.backward()
    assert torch.isfinite(loss) and image.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in critic.parameters())
    critic.train()
    assert not critic.model.training  # batch-norm statistics stay the trained ones
    # under bf16 autocast (mixed-precision training) the landmarks are still decoded in float32 (this briefly
    # trained critic has flat heatmaps, where bf16 moves a few points far: the median is compared)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = critic.landmarks(image, points)
    assert half.dtype == torch.float32 and float((half - pred).detach().norm(dim=-1).median()) < 0.5


def test_critic_must_be_a_68_point_hourglass(tmp_path):
    from lib.detector.model import save_detector
    from lib.detector.network import build_network
    dense = NetworkConfig(stacks=1, channels=16, depth=2, input_size=32, heatmap_size=8, points=257)
    save_detector(tmp_path / "dense", build_network(dense), 0.1)
    with pytest.raises(ValueError, match="68-point hourglass"):
        cs.Critic(tmp_path / "dense")


