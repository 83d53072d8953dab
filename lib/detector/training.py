"""Training the landmark detector: Adam, warm-up + cosine schedule, EMA of the
weights, checkpoints with exact resume, selection on validation NME.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..core import checkpoints
from ..core import crop as cr
from ..core import metrics
from ..data import datasets as ds
from . import heatmaps as hm
from . import losses
from .augment import AugmentConfig, augment
from .hourglass import HourglassConfig, StackedHourglass
from .model import load_detector, predict_crops, save_detector, to_tensor


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.01
    ema_decay: float = 0.995
    loss: str = "star"  # star | awing | mse
    star_weight: float = 0.05
    star_w: float = 1.0
    margin: float = 0.25
    checkpoint_every: int = 200
    val_every: int = 200
    seed: int = 0
    threads: int = 0  # 0: torch's default
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        aug = AugmentConfig(**d.pop("augment", {}))
        return cls(**d, augment=aug)


class FaceSet:
    """Faces held in memory (the 256 px crops of data prep are small)."""

    def __init__(self, samples: list[ds.Sample], errors: list | None = None):
        self.images, self.points = [], []
        for s in samples:
            try:
                self.images.append(ds.load_image(s.image_path))
                self.points.append(s.landmarks)
            except ds.BadInput as exc:
                if errors is None:
                    raise
                errors.append(str(exc))

    def __len__(self):
        return len(self.images)


def _batch(faces: FaceSet, idx, cfg: TrainConfig, mcfg: HourglassConfig, step: int):
    imgs, pts = [], []
    for j, i in enumerate(idx):
        rng = np.random.default_rng([cfg.seed, step, j])
        box = cr.box_from_landmarks(faces.points[i], cfg.margin)
        img, p = augment(faces.images[i], faces.points[i], box, mcfg.input_size, rng, cfg.augment)
        imgs.append(img)
        pts.append(p)
    target = hm.to_heatmap(torch.tensor(np.array(pts), dtype=torch.float32), mcfg.input_size, mcfg.heatmap_size)
    return to_tensor(np.array(imgs)), target


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def validation_crops(faces: FaceSet, size: int, margin: float):
    crops, pts = [], []
    for img, p in zip(faces.images, faces.points):
        c, _, q = cr.crop(img, cr.box_from_landmarks(p, margin), size, p)
        crops.append(c)
        pts.append(q)
    return np.array(crops), np.array(pts)


# ------------------------------------------------------------------ checkpoints

def run_signature(mcfg: HourglassConfig, cfg: TrainConfig, init) -> str:
    """What a checkpoint must match to be resumed: the network, every training
    setting and the initial weights' folder."""
    return json.dumps({"model": asdict(mcfg), "train": asdict(cfg), "init": str(init)}, sort_keys=True)


def save_checkpoint(path: Path, model, ema, opt, step: int, history: list, best: dict, signature: str = "") -> None:
    checkpoints.save(path, {"model": model, "ema": ema}, opt,
                     {"step": step, "history": history, "best": best, "signature": signature})


def checkpoint_signature(path: Path) -> str:
    return checkpoints.read_meta(path).get("signature", "")


def load_checkpoint(path: Path, model, ema, opt):
    meta = checkpoints.load(path, {"model": model, "ema": ema}, opt)
    return meta["step"], meta["history"], meta["best"]


# ------------------------------------------------------------------ training

def train(train_faces: FaceSet, val_faces: FaceSet, mcfg: HourglassConfig, cfg: TrainConfig, out: str | Path,
          init: str | Path | None = None, stop_at: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Train (or fine-tune from the detector folder `init`) and write the detector
    folder `out`. Resumes from ``out/checkpoints/last.safetensors`` when present.
    `stop_at` ends the run early at that step (as an interruption would)."""
    out = Path(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = StackedHourglass(mcfg)
    if init is not None:
        init_model, _ = load_detector(init)
        model.load_state_dict(init_model.state_dict())
    ema = StackedHourglass(mcfg)
    ema.load_state_dict(model.state_dict())
    ema.eval()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    ckpt = out / "checkpoints" / "last.safetensors"
    step, history, best = 0, [], {"nme": float("inf"), "step": -1}
    signature = run_signature(mcfg, cfg, init)
    if ckpt.exists():
        if checkpoint_signature(ckpt) == signature:
            step, history, best = load_checkpoint(ckpt, model, ema, opt)
            print(f"resuming from {ckpt} at step {step}")
        else:
            print(f"{ckpt}: written with other settings; starting afresh")
            ckpt.unlink()
    val_crops, val_pts = validation_crops(val_faces, mcfg.input_size, cfg.margin)
    n = len(train_faces)
    per_epoch = max(1, n // cfg.batch_size)
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    bar = tqdm(total=cfg.steps, initial=step, desc="train detector", disable=not progress)
    model.train()
    t0 = time.perf_counter()
    while step < end:
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size] if n >= cfg.batch_size else perm
        x, target_pts = _batch(train_faces, idx, cfg, mcfg, step)
        target = hm.encode(target_pts, mcfg.heatmap_size, mcfg.sigma)
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        loss = losses.detector_loss(model(x), target, target_pts, cfg.loss, cfg.star_weight, cfg.star_w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.state_dict().values(), model.state_dict().values()):
                if pe.dtype.is_floating_point:
                    pe.mul_(d).add_(pm.detach(), alpha=1 - d)
                else:
                    pe.copy_(pm)
        step += 1
        row = {"step": step, "loss": float(loss.detach()), "lr": opt.param_groups[0]["lr"]}
        if step % cfg.val_every == 0 or step == cfg.steps:
            pred = predict_crops(ema, val_crops)
            row["val_nme"] = float(metrics.nme_per_image(pred, val_pts).mean() * 100)
            if row["val_nme"] < best["nme"]:
                best = {"nme": row["val_nme"], "step": step}
                save_detector(out, ema, cfg.margin, {"selected_step": step, "val_nme": row["val_nme"]})
        history.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", best_val_nme=f"{best['nme']:.2f}")
        if step % cfg.checkpoint_every == 0 or step == end:
            save_checkpoint(ckpt, model, ema, opt, step, history, best, signature)
    bar.close()
    df = pd.DataFrame(history)
    df.to_csv(out / "history.csv", index=False)
    df.attrs["seconds"] = time.perf_counter() - t0
    return df


