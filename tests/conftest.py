import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("MDFLD_DATA_ROOT", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "real_data: needs the real data root (../shared/data or $MDFLD_DATA_ROOT)")


def pytest_collection_modifyitems(config, items):
    if (DATA_ROOT / "300w").is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data root not found at {DATA_ROOT} (set MDFLD_DATA_ROOT)")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shape():
    """A procedural photo face's exact landmarks (a realistic 68-point shape)."""
    from lib.data.procedural import render_face
    return render_face(3, "photo", 128).landmarks


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------------ a tiny Stable Diffusion (the paper's code path)

def _tiny_clip(folder):
    import json

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    # CLIP's byte-level alphabet (printable bytes as themselves, the rest shifted past 255), no merges
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=12)
    enc = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                       num_attention_heads=4, max_position_embeddings=12,
                                       bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"]))
    return tok, enc


@pytest.fixture(scope="session")
def stable_diffusion_dir(tmp_path_factory):
    """A tiny random model saved in exactly Stable Diffusion 1.x's diffusers layout
    (32 px images: a 2x autoencoder, 16 px latents; CLIP tokenizer and text model)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    from lib.generator import components as dm
    out = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    tok, enc = _tiny_clip(out / "_clip")
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    unet = UNet2DConditionModel(sample_size=16, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=enc, tokenizer=tok, unet=unet, scheduler=dm.noise_scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out / "sd")
    return out / "sd"


def write_synthetic_set(folder, faces, names, styles):
    """Faces (``render_face`` results) written as a synthetic set with its manifest."""
    from lib.data import datasets as ds
    from lib.generator import synthesis
    rows = []
    for f, name, style in zip(faces, names, styles):
        ds.save_image(folder / name, f.image)
        ds.write_pts((folder / name).with_suffix(".pts"), f.landmarks)
        rows.append({"image": name, "style": style, "prompt": "", "edits": "", "seed": 0, "source": ""})
    synthesis.write_manifest(folder, rows)


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(when)``: from then on, a file that ``lib.data.datasets`` opens where ``when(path, mode)``
    holds takes part of the first write, then fails as a full disk does (ENOSPC)."""
    import builtins
    import errno

    from lib.data import datasets

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    def fill(when=lambda path, mode: True):
        def opener(path, mode="r", *args, **kwargs):
            fh = builtins.open(path, mode, *args, **kwargs)
            return Full(fh) if "w" in mode and when(str(path), mode) else fh
        monkeypatch.setattr(datasets, "open", opener, raising=False)
    return fill
