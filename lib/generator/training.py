"""The landmark-guided diffusion model's training loop: noise (or velocity) prediction
(MSE, optionally min-SNR-gamma weighted, timesteps uniform over a DDPM schedule), optionally
with an EMA of the weights, the landmark-consistency loss of a critic and edit augmentation,
on ``pairs.PairSet`` pairs; it writes the generator folder (``sampling``) with its sample grids
and checkpoints and resumes from them exactly (``lib.core.training``). Run under ``accelerate
launch`` for one or many GPUs, mixed precision and gradient accumulation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel, compute_snr

from ..core import landmarks as lm
from ..core.training import TrainingRun, TrainResult, epoch_batch, fingerprint, make_scheduler, seed_everything
from ..data import datasets as ds
from .components import (Components, add_style_embeddings, concat_input, condition_tensor, encode_prompts, style_labels,
                         vae_scale_factor, zero_terminal_snr)
from .condition import render_batch
from .edits import random_edits
from .pairs import PairSet
from .precision import autocast
from .sampling import generate, make_pipeline, sample_grid, save_generator
from .styles import tps_warp


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-5
    train_unet: bool = False  # small profiles: the UNet has no pretraining and must learn too
    prompt_dropout: float = 0.0  # fraction of prompts replaced by "" so the CFG unconditional branch is learned
    flip: float = 0.5
    gradient_accumulation: int = 1
    mixed_precision: str = "no"  # no | fp16 | bf16
    max_grad_norm: float = 1.0
    warmup: int = 0
    schedule: str = "constant_with_warmup"  # a diffusers schedule name
    checkpoint_every: int = 500
    sample_every: int = 1000
    sample_steps: int = 20
    guidance: float = 3.0
    snr_gamma: float | None = None  # min-SNR-gamma loss weighting (Hang et al. 2023); None: plain MSE
    ema_decay: float | None = None  # EMA of the trained weights (diffusers' EMAModel, with warm-up); the EMA is saved
    # landmark consistency (train(..., critic=), lib/detector/critic.py): the critic's NME on the decoded one-step estimate
    # against the conditioning landmarks, weighted and added to the loss for timesteps below max_timestep
    consistency_weight: float = 0.0
    consistency_max_timestep: int = 1000
    # a learned embedding per style prompt of the training pairs (concat generators; see the module's docstring)
    style_embeddings: bool = False
    # train (and save the generator) on the schedule rescaled to zero terminal SNR, sampled with trailing timesteps
    # (Lin et al. 2024, diffusers' ``rescale_betas_zero_snr``): the last training step sees pure noise, as sampling
    # starts from it, so the image's overall colour and tone come from the prompt, not from noise; v-prediction only
    zero_terminal_snr: bool = False
    # edit augmentation: this share of the training pairs gets two random edits of the synthesis step
    # (``edits.random_edits``, the paper's seven) and its image warped onto the edited landmarks by the thin-plate
    # spline of warp-first synthesis, so the generator also learns the landmark sets synthesis will ask for,
    # which real faces never show (a chubby face, stretched nostrils), with an image that follows them
    edit_share: float = 0.0
    seed: int = 0
    threads: int = 0


class LandmarkDiffusion(torch.nn.Module):
    """UNet (+ ControlNet) as one module, so accelerate wraps what trains."""

    def __init__(self, unet: UNet2DConditionModel, controlnet: ControlNetModel | None, factor: int):
        super().__init__()
        self.unet, self.controlnet, self.factor = unet, controlnet, factor

    def forward(self, noisy, t, text, cond, labels=None):
        if self.controlnet is None:
            return self.unet(concat_input(noisy, cond, self.factor), t, encoder_hidden_states=text,
                             class_labels=labels).sample
        down, mid = self.controlnet(noisy, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
        return self.unet(noisy, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample


def _batch(pairs: PairSet, idx: np.ndarray, cfg: TrainConfig, step: int, conditioning: str):
    rng = np.random.default_rng([cfg.seed, step, 7])
    images, points = pairs.images[idx].copy(), pairs.points[idx].copy()
    size = pairs.resolution
    for j in range(len(idx)):
        if rng.random() < cfg.flip:
            images[j] = images[j, :, ::-1]
            points[j] = lm.flip_landmarks(points[j], size)
        if cfg.edit_share and rng.random() < cfg.edit_share:
            edited, _ = random_edits(points[j], rng, size, 2)
            images[j] = tps_warp(images[j], points[j], edited)
            points[j] = edited
    prompts = ["" if rng.random() < cfg.prompt_dropout else pairs.prompts[i] for i in idx]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    return x, condition_tensor(points, size, conditioning), prompts, points


def denoised(pred: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor, scheduler) -> torch.Tensor:
    """The one-step estimate of the clean latents from the network's prediction."""
    a = scheduler.alphas_cumprod.to(noisy.device, noisy.dtype)[t].view(-1, *[1] * (noisy.ndim - 1))
    if scheduler.config.prediction_type == "v_prediction":
        return a.sqrt() * noisy - (1 - a).sqrt() * pred
    if scheduler.config.prediction_type == "epsilon":
        return (noisy - (1 - a).sqrt() * pred) / a.sqrt()
    raise ValueError(f"prediction type {scheduler.config.prediction_type!r}: no one-step estimate for the critic")


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor, scheduler: DDPMScheduler,
                   snr_gamma: float | None = None) -> torch.Tensor:
    """MSE, or with `snr_gamma` the min-SNR-gamma weighted MSE: each timestep's loss is scaled by
    min(SNR, gamma) / SNR (noise prediction) or / (SNR + 1) (velocity), so the easy, low-noise steps
    stop dominating the gradient."""
    if not snr_gamma:
        return F.mse_loss(pred, target)
    snr = compute_snr(scheduler, t).to(pred)
    weight = torch.clamp(snr, max=snr_gamma)
    weight = weight / (snr + 1) if scheduler.config.prediction_type == "v_prediction" else weight / snr
    per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=tuple(range(1, pred.ndim)))
    return (per_sample * weight).mean()


def train(pairs: PairSet, c: Components, cfg: TrainConfig, out: str | Path, model_cfg: dict | None = None,
          init: str | Path | None = None, preview: tuple | None = None, stop_at: int | None = None,
          progress: bool = True, critic=None) -> TrainResult:
    """Train the ControlNet (and the UNet if ``cfg.train_unet``) on `pairs`; write the generator to `out`.

    `preview`: (points (K, 68, 2), prompts, seeds) drawn into ``out/samples/`` every ``sample_every``
    steps. Resumes from ``out/checkpoints/last.safetensors`` (``lib.core.training``). Under
    ``accelerate launch`` each process takes its shard of every global batch of
    ``batch_size * processes`` pairs; the main process writes checkpoints and the model.
    `critic`: required when ``cfg.consistency_weight`` is set: a frozen module whose ``loss(faces,
    points)`` is a differentiable landmark error of decoded faces ((N, 3, R, R) in [-1, 1]) against
    their conditioning landmarks (``lib.detector.critic.Critic``); it is added for timesteps below
    ``cfg.consistency_max_timestep`` on the one-step estimate (``denoised``)."""
    from accelerate import Accelerator

    out = Path(out)
    seed_everything(cfg.seed, cfg.threads)
    # bf16 needs no loss scaling, so it is this module's autocast alone and accelerate's process-wide state stays
    # float32: a bf16 stage can share a process (a notebook, a test session, a bench) with float32 ones; fp16 (GPUs)
    # also takes accelerate's gradient scaler
    autocast(cfg.mixed_precision)  # an unknown name fails here, before any work
    acc = Accelerator(mixed_precision="fp16" if cfg.mixed_precision == "fp16" else "no",
                      gradient_accumulation_steps=cfg.gradient_accumulation)
    if c.controlnet is None and not cfg.train_unet:
        raise ValueError("a concat generator learns the landmarks in its UNet: set train_unet: true")
    if cfg.consistency_weight and critic is None:
        raise ValueError(f"{out}: consistency_weight {cfg.consistency_weight} needs a critic (a detector folder, "
                         "lib.detector.critic)")
    critic = critic if cfg.consistency_weight else None
    for m in (c.vae, c.text_encoder):
        m.requires_grad_(False).eval()
    if cfg.style_embeddings:
        add_style_embeddings(c, pairs.prompts)
    if cfg.zero_terminal_snr:
        c.scheduler = zero_terminal_snr(c.scheduler)  # saved with the generator, so its sampler uses it too
    c.unet.requires_grad_(cfg.train_unet)
    if c.controlnet is not None:
        c.controlnet.requires_grad_(True)
    net = LandmarkDiffusion(c.unet, c.controlnet, vae_scale_factor(c.vae))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    sched = make_scheduler(opt, cfg.schedule, cfg.warmup, cfg.steps)
    trained = {**({"controlnet": c.controlnet} if c.controlnet is not None else {}),
               **({"unet": c.unet} if cfg.train_unet else {})}
    world, rank = acc.num_processes, acc.process_index
    # the process count is not a resume setting: a model launched on N processes (lib/launch.py) is
    # picked up by the notebook's single process; a run resumed on another count keeps its own global batch
    run = TrainingRun(out, {"model": model_cfg or {}, "train": asdict(cfg), "init": str(init), "n": len(pairs),
                            "data": fingerprint(pairs.images, pairs.points, pairs.prompts),
                            "init_weights": fingerprint(Path(init)) if init else None,
                            "vae": fingerprint([v.detach().cpu().float().numpy() for v in c.vae.state_dict().values()]),
                            **({"critic": fingerprint([v.detach().cpu().numpy() for v in critic.state_dict().values()])}
                               if critic is not None else {})},
                      cfg.steps, cfg.checkpoint_every, f"train {out.name}", stop_at,
                      progress, is_main=acc.is_main_process, barrier=acc.wait_for_everyone)
    # EMA with warm-up (decay 1 - (1 + step)^(-2/3), capped at ema_decay): the average follows the
    # weights closely early on and smooths them later; previews and the saved generator use it
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3) if cfg.ema_decay else None
    run.resume(trained, opt, sched, ema)
    net, opt = acc.prepare(net, opt)
    c.vae.to(acc.device)
    c.text_encoder.to(acc.device)
    if critic is not None:
        critic.to(acc.device)
    prompt_cache: dict[str, torch.Tensor] = {}

    def embed(prompts):
        new = sorted(set(prompts) - prompt_cache.keys())
        if new:
            for p, e in zip(new, encode_prompts(c.tokenizer, c.text_encoder, new)):
                prompt_cache[p] = e
        return torch.stack([prompt_cache[p] for p in prompts])

    global_batch = cfg.batch_size * world
    scale = c.vae.config.scaling_factor
    net.train()
    for step in run:
        loss_sum = consistency_sum = 0.0
        for micro in range(cfg.gradient_accumulation):
            k_step = step * cfg.gradient_accumulation + micro  # every micro-batch has its own data and noise
            idx = epoch_batch(k_step, len(pairs), global_batch, cfg.seed)[rank::world]
            x, cond, prompts, points = _batch(pairs, idx, cfg, k_step, c.conditioning)
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + k_step * 101 + rank)
            with torch.no_grad():
                latents = c.vae.encode(x.to(acc.device, c.vae.dtype)).latent_dist.sample(generator=g) * scale
            noise = torch.randn(latents.shape, generator=g).to(latents)
            t = torch.randint(0, c.scheduler.config.num_train_timesteps, (len(idx),), generator=g).to(acc.device)
            noisy = c.scheduler.add_noise(latents, noise, t)
            target = noise if c.scheduler.config.prediction_type == "epsilon" else c.scheduler.get_velocity(latents, noise, t)
            text = embed(prompts)
            with acc.accumulate(net):
                with autocast(cfg.mixed_precision, acc.device.type):
                    labels = style_labels(c.style_prompts, prompts)
                    pred = net(noisy, t, text, cond.to(acc.device), None if labels is None else labels.to(acc.device))
                loss = diffusion_loss(pred.float(), target.float(), t, c.scheduler, cfg.snr_gamma)
                read = (t < cfg.consistency_max_timestep).cpu().numpy() if critic is not None else None
                if read is not None and read.any():  # the critic reads the faces the estimate decodes to
                    x0 = denoised(pred.float()[read], noisy.float()[read], t[read], c.scheduler)
                    with autocast(cfg.mixed_precision, acc.device.type):  # decoder and critic in the training precision
                        faces = c.vae.decode((x0 / scale).to(c.vae.dtype)).sample.float().clamp(-1, 1)
                        consistency = critic.loss(faces, points[read]).float()
                    loss = loss + cfg.consistency_weight * consistency * read.mean()
                    consistency_sum += float(consistency.detach())
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm:
                    acc.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            loss_sum += float(loss.detach())
        if ema is not None:
            ema.step(params)
        # the mean loss over all processes, so the history is the global batch's
        loss_mean = float(acc.reduce(torch.tensor(loss_sum / cfg.gradient_accumulation, device=acc.device), "mean"))
        extra = {"consistency": consistency_sum / cfg.gradient_accumulation} if critic is not None else {}
        run.log(loss=loss_mean, lr=sched.get_last_lr()[0], **extra)
        if preview is not None and acc.is_main_process and (run.step % cfg.sample_every == 0 or run.step == cfg.steps):
            net.eval()
            with _averaged(ema, params):
                _write_preview(c, preview, out / "samples" / f"step_{run.step:07d}.png", pairs.resolution, cfg)
            net.train()
    result = run.finish()
    final = out / "samples" / f"step_{run.step:07d}.png"
    if result.finished and ema is not None:
        ema.copy_to(params)  # the generator is the average
    if preview is not None and acc.is_main_process and result.finished and not final.exists():
        _write_preview(c, preview, final, pairs.resolution, cfg)  # a run interrupted between checkpoint and grid
    # a call that finds the model finished (0 steps) leaves the saved generator as it is: saving it again would
    # rewrite generator.json (its "processes") and the tokenizer files, which stage 2's init fingerprint reads
    if result.finished and acc.is_main_process and (result.steps_run or not (out / "generator.json").exists()):
        save_generator(out, c, {"steps": run.step, "resolution": pairs.resolution, "train": asdict(cfg),
                                "init": str(init) if init else None, "pairs": len(pairs), "processes": world})
    acc.wait_for_everyone()
    return result


class _averaged:
    """Within the block, `params` hold the EMA weights (if any); afterwards the trained ones again."""

    def __init__(self, ema: EMAModel | None, params: list):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def _write_preview(c: Components, preview: tuple, path: Path, resolution: int, cfg: TrainConfig) -> None:
    points, prompts, seeds = preview
    images = generate(make_pipeline(c), points, prompts, seeds, resolution, cfg.sample_steps, cfg.guidance)
    grid = sample_grid(images, render_batch(points, resolution))
    ds.save_image(path, grid)
