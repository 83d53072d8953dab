import numpy as np
import torch

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


def test_spectrum_loss_is_zero_for_equal_images_and_punishes_blur_more_than_a_pixel_loss_does():
    x = ae.to_model_range(_faces(4))
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert ae._spectrum_l1(x, x).item() == 0
    # a blur loses high-frequency amplitude; a global brightness shift of the same pixel L1 keeps all but one
    shift = x + (blurred - x).abs().mean()
    assert ae._spectrum_l1(blurred, x) > 3 * ae._spectrum_l1(shift, x)


def test_training_with_the_spectrum_term_logs_it(tmp_path):
    faces = _faces(4)
    cfg = ae.AutoencoderTrainConfig(steps=3, batch_size=2, spectrum_weight=1.0, checkpoint_every=10, threads=1)
    h = ae.train(faces, faces[:2], MODEL, cfg, tmp_path, progress=False)
    assert "spectrum" in h.history and (h.history["spectrum"] > 0).all()
