"""A small image autoencoder (diffusers' ``AutoencoderKL``) for the small
profiles, where no pretrained latent space exists. The diffusion model then
works on a 4x smaller latent grid: at 64 px a UNet + ControlNet training step
costs about a third of the same step in pixel space on a CPU
(``python -m benchmarks.bench_diffusion`` prints both).

Trained on the real training faces (and restyled copies of some, so that the
stage-2 styles fit its latent space) with an L1 + Sobel-edge reconstruction
loss and a small KL term (keeps the latent smooth and near unit scale);
the latent scaling factor is measured after training, as for Stable
Diffusion. Checkpoints every N steps; an interrupted run resumes exactly.
The result is saved with ``save_pretrained`` and loads with
``AutoencoderKL.from_pretrained``."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from ..core.training import TrainingRun, TrainResult, epoch_batch, fingerprint, make_scheduler, seed_everything
from .precision import autocast


@dataclass
class AutoencoderTrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    schedule: str = "cosine"  # a diffusers schedule name
    kl_weight: float = 1e-6
    edge_weight: float = 0.5
    style_share: float = 0.0  # restyled copies per training face (stages.restyled_copies)
    styles: tuple = ()  # their styles: the stage-2 set's filter styles (set by stages.train_autoencoder)
    checkpoint_every: int = 250
    mixed_precision: str = "no"  # no | bf16 | fp16: autocast of the forward pass (lib.generator.precision.autocast)
    seed: int = 0
    threads: int = 0


def build(model: dict) -> AutoencoderKL:
    """`model`: block_out_channels (its length sets the downsampling, 2**(len-1)), latent_channels,
    layers_per_block, norm_num_groups, mid_block_attention (off by default: a quarter of the step time at 64 px)."""
    ch = tuple(model["block_out_channels"])
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(ch),
                         up_block_types=("UpDecoderBlock2D",) * len(ch), block_out_channels=ch,
                         layers_per_block=model.get("layers_per_block", 1), latent_channels=model.get("latent_channels", 4),
                         norm_num_groups=model.get("norm_num_groups", 8), sample_size=model.get("resolution", 64),
                         mid_block_add_attention=model.get("mid_block_attention", False))


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def from_model_range(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def _sobel(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    w = torch.stack([k, k.T])[:, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, groups=x.shape[1])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * math.log10(255 ** 2 / max(mse, 1e-10)))


@torch.inference_mode()
def reconstruct(vae: AutoencoderKL, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch_size):
        x = to_model_range(images[i:i + batch_size])
        out.append(from_model_range(vae.decode(vae.encode(x).latent_dist.mode()).sample))
    return np.concatenate(out) if out else images.copy()


@torch.inference_mode()
def latent_scale(vae: AutoencoderKL, images: np.ndarray, batch_size: int = 64) -> float:
    """1 / std of the latents, so the diffusion model sees unit-variance inputs (SD's convention)."""
    z = torch.cat([vae.encode(to_model_range(images[i:i + batch_size])).latent_dist.mode()
                   for i in range(0, len(images), batch_size)])
    return float(1.0 / z.std())


def train(images: np.ndarray, val_images: np.ndarray, model: dict, cfg: AutoencoderTrainConfig, out: str | Path,
          stop_at: int | None = None, progress: bool = True) -> TrainResult:
    """Train on (N, R, R, 3) uint8 faces and write a diffusers folder to `out`;
    resumes from ``out/checkpoints/last.safetensors`` (``lib.core.training``)."""
    out = Path(out)
    seed_everything(cfg.seed, cfg.threads)
    vae = build(model)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    sched = make_scheduler(opt, cfg.schedule, cfg.warmup, cfg.steps)
    run = TrainingRun(out, {"model": model, "train": asdict(cfg), "n": len(images), "data": fingerprint(images)},
                      cfg.steps, cfg.checkpoint_every,
                      "train autoencoder", stop_at, progress)
    run.resume({"vae": vae}, opt, sched)
    vae.train()
    for step in run:
        idx = np.sort(epoch_batch(step, len(images), cfg.batch_size, cfg.seed))
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        x = to_model_range(images[idx])
        if torch.rand(1, generator=g) < 0.5:  # flip: faces are near symmetric
            x = x.flip(-1)
        with autocast(cfg.mixed_precision):  # the posterior, its sample and the losses stay float32
            post = DiagonalGaussianDistribution(vae.encode(x).latent_dist.parameters.float())
            rec = vae.decode(post.sample(generator=g)).sample.float()
        l1 = (rec - x).abs().mean()
        edge = (_sobel(rec) - _sobel(x)).abs().mean()
        kl = post.kl().mean()
        loss = l1 + cfg.edge_weight * edge + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.log(loss=loss.item(), l1=l1.item(), kl=kl.item())
    result = run.finish()
    vae.eval()
    if result.finished:
        vae.register_to_config(scaling_factor=latent_scale(vae, images[:256]))
        vae.save_pretrained(out)
        rec = reconstruct(vae, val_images)
        summary = {"val_psnr": psnr(rec, val_images) if len(val_images) else None, "scaling_factor": vae.config.scaling_factor,
                   "steps": run.step, "val_faces": len(val_images)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return result


def load(folder: str | Path) -> AutoencoderKL:
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}/config.json: missing; train the autoencoder first (notebook 02)")
    return AutoencoderKL.from_pretrained(folder).eval()
