from dataclasses import asdict, replace

import numpy as np
import torch

from lib.core.training import settings_signature
from lib.generator import autoencoder as ae
from lib.data.procedural import render_face

MODEL = {"block_out_channels": [8, 16, 16], "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 8,
         "resolution": 32}


def _faces(n=8):
    return np.array([render_face(i, "photo", 32).image for i in range(n)])


def test_build_downsamples_by_four():
    vae = ae.build(MODEL)
    z = vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mode()
    assert z.shape == (1, 4, 8, 8)
    assert vae.decode(z).sample.shape == (1, 3, 32, 32)


def test_training_lowers_the_error_saves_a_diffusers_folder_and_resumes(tmp_path):
    faces = _faces()
    cfg = ae.AutoencoderTrainConfig(steps=120, batch_size=4, lr=3e-3, checkpoint_every=40, threads=1)
    before = ae.psnr(ae.reconstruct(ae.build(MODEL), faces), faces)
    h = ae.train(faces, faces[:4], MODEL, cfg, tmp_path / "a", progress=False)
    vae = ae.load(tmp_path / "a")
    after = ae.psnr(ae.reconstruct(vae, faces), faces)
    assert after > before + 2
    assert vae.config.scaling_factor > 0 and len(h.history) == 120 and h.finished
    # an interrupted run resumes to the same weights
    ae.train(faces, faces[:4], MODEL, cfg, tmp_path / "b", stop_at=40, progress=False)
    ae.train(faces, faces[:4], MODEL, cfg, tmp_path / "b", progress=False)
    other = ae.load(tmp_path / "b")
    for (k, a), b in zip(vae.state_dict().items(), other.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_bf16_autocast_trains_float32_weights_and_keeps_the_float32_path(tmp_path):
    faces = _faces()
    cfg = ae.AutoencoderTrainConfig(steps=60, batch_size=4, lr=3e-3, checkpoint_every=60, threads=1)
    before = ae.psnr(ae.reconstruct(ae.build(MODEL), faces), faces)
    half = ae.train(faces, faces[:4], MODEL, replace(cfg, mixed_precision="bf16"), tmp_path / "bf16", progress=False)
    full = ae.train(faces, faces[:4], MODEL, cfg, tmp_path / "fp32", progress=False)
    vae = ae.load(tmp_path / "bf16")
    assert all(p.dtype == torch.float32 for p in vae.parameters())
    assert ae.psnr(ae.reconstruct(vae, faces), faces) > before + 1
    assert not np.allclose(half.history["loss"], full.history["loss"])  # the setting reaches the forward pass
    # the precision is a setting of the run: a float32 run does not resume a bf16 checkpoint
    sig = [settings_signature({"train": asdict(c)}) for c in (cfg, replace(cfg, mixed_precision="bf16"))]
    assert sig[0] != sig[1]
