"""Training the landmark detector: Adam, warm-up + cosine schedule, EMA of the
weights, checkpoints with exact resume, selection on validation NME. Fine-tuning on
another domain builds on it in ``lib.detector.finetune``.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers.training_utils import EMAModel

from ..core import crop as cr
from ..core import metrics
from ..core.training import TrainingRun, TrainResult, epoch_batch, fingerprint, make_scheduler, seed_everything
from ..data import datasets as ds
from .augment import AugmentConfig, augment
from .network import NetworkConfig, build_network
from .model import load_detector, predict_crops, save_detector, to_tensor


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    schedule: str = "cosine"  # a diffusers schedule name (warm-up, then cosine decay to 0)
    ema_decay: float = 0.995
    loss: str = "star"  # star | awing | mse
    star_weight: float = 0.05
    star_w: float = 1.0
    margin: float = 0.25
    checkpoint_every: int = 200
    val_every: int = 200
    seed: int = 0
    threads: int = 0  # 0: torch's default
    # share of every batch drawn from named pools of faces beside the training set (train(..., pools)),
    # e.g. {"fewshot": 0.25, "real": 0.25}: the few real domain faces and real photos keep their weight
    # however large the synthetic set is; the rest of the batch comes from the training set
    mix: dict = field(default_factory=dict)
    # names of the network's child modules kept fixed (weights and normalisation statistics), e.g. [dense]
    # for label transfer on a frozen dense detector (lib.detector.dense)
    freeze: list = field(default_factory=list)
    # keep every batch norm's running statistics as the starting detector had them (its affine weights
    # still train): a fine-tune on another domain then does not move the statistics real faces are read with
    freeze_norm_stats: bool = False
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

    @classmethod
    def from_arrays(cls, images: list[np.ndarray], points: list[np.ndarray]) -> "FaceSet":
        """Faces already in memory (e.g. with dense labels, ``lib.core.landmarks.to_dense``)."""
        if len(images) != len(points):
            raise ValueError(f"{len(images)} images but {len(points)} landmark arrays")
        faces = cls([])
        faces.images, faces.points = list(images), list(points)
        return faces

    def take(self, n: int) -> "FaceSet":
        """The first `n` faces (a nested subset: the faces of a smaller set are in every larger one)."""
        if n > len(self):
            raise ValueError(f"asked for {n} faces of a set of {len(self)}")
        return FaceSet.from_arrays(self.images[:n], self.points[:n])


def batch_faces(step: int, faces: FaceSet, cfg: TrainConfig, pools: dict[str, FaceSet] | None = None
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (image, landmarks) pairs of the batch at `step`: ``round(share * batch_size)``
    from each pool named in ``cfg.mix`` (each pool in its own seeded epoch order), the
    rest from `faces`."""
    pools = pools or {}
    missing = sorted(set(cfg.mix) - set(pools))
    if missing:
        raise ValueError(f"batch mix names pools {missing} that were not given (given: {sorted(pools)})")
    counts = {name: int(round(share * cfg.batch_size)) for name, share in cfg.mix.items()}
    if sum(counts.values()) > cfg.batch_size:
        raise ValueError(f"batch mix {cfg.mix} takes more than the whole batch of {cfg.batch_size}")
    rest = cfg.batch_size - sum(counts.values())
    out = [(faces.images[i], faces.points[i]) for i in (epoch_batch(step, len(faces), rest, cfg.seed) if rest else [])]
    for k, (name, n) in enumerate(counts.items()):
        if n and len(pools[name]):
            idx = epoch_batch(step, len(pools[name]), n, cfg.seed * 1_000 + k + 1)
            out += [(pools[name].images[i], pools[name].points[i]) for i in idx]
    return out


def _batch(pairs: list[tuple[np.ndarray, np.ndarray]], cfg: TrainConfig, mcfg: NetworkConfig, step: int,
           box_errors: np.ndarray | None = None):
    """Augmented crops (N, 3, S, S) and their landmarks (N, K, 2) in crop pixels."""
    imgs, pts = [], []
    for j, (image, points) in enumerate(pairs):
        rng = np.random.default_rng([cfg.seed, step, j])
        box = cr.box_from_landmarks(points, cfg.margin)
        img, p = augment(image, points, box, mcfg.input_size, rng, cfg.augment, box_errors)
        imgs.append(img)
        pts.append(p)
    return to_tensor(np.array(imgs)), torch.tensor(np.array(pts), dtype=torch.float32)


BOX_SAMPLE = 1000  # training faces the face finder's box errors are measured on


def measure_box_errors(faces: FaceSet, seed: int = 0) -> np.ndarray:
    """The face finder's box errors on (at most BOX_SAMPLE of) the training faces
    (``lib.core.faces.box_errors``), for ``AugmentConfig.detector_boxes``."""
    from ..core.faces import FaceFinder, box_errors
    return box_errors(FaceFinder(), faces.images, faces.points, limit=BOX_SAMPLE, seed=seed)


def validation_crops(faces: FaceSet, size: int, margin: float):
    crops, pts = [], []
    for img, p in zip(faces.images, faces.points):
        c, _, q = cr.crop(img, cr.box_from_landmarks(p, margin), size, p)
        crops.append(c)
        pts.append(q)
    return np.array(crops), np.array(pts)


# ------------------------------------------------------------------ training

def train(train_faces: FaceSet, val_faces: FaceSet, mcfg: NetworkConfig, cfg: TrainConfig, out: str | Path,
          init: str | Path | None = None, stop_at: int | None = None, progress: bool = True,
          pools: dict[str, FaceSet] | None = None, adaptation=None) -> TrainResult:
    """Train (or fine-tune from the detector folder `init`) and write the detector
    folder `out` (the EMA weights with the lowest validation NME). Resumes from
    ``out/checkpoints/last.safetensors`` (``lib.core.training``). `stop_at` ends
    the run early at that step (as an interruption would). `pools`: faces that
    ``cfg.mix`` draws a fixed share of every batch from (``batch_faces``). `adaptation`: a
    ``dense.Adaptation`` whose adversarial term on unlabelled faces is added to the loss."""
    out = Path(out)
    seed_everything(cfg.seed, cfg.threads)
    box_errors = measure_box_errors(train_faces, cfg.seed) if cfg.augment.detector_boxes else None
    if box_errors is not None and not len(box_errors):
        raise ValueError(f"{out}: augment.detector_boxes is {cfg.augment.detector_boxes}, but the face finder "
                         "found none of the training faces to measure its boxes on")
    model = build_network(mcfg, pretrained=None if init is None else False)
    if init is not None:
        init_model, _ = load_detector(init)
        if hasattr(model, "init_from"):  # a network that starts from another kind (label transfer)
            model.init_from(init_model)
        else:
            model.load_state_dict(init_model.state_dict())
    parts = dict(model.named_children())
    unknown = sorted(set(cfg.freeze) - set(parts))
    if unknown:
        raise ValueError(f"{out}: freeze names {unknown}, not parts of the {model.cfg.arch} network "
                         f"(its parts: {sorted(parts)})")
    frozen = [parts[name] for name in cfg.freeze]
    for m in frozen:
        m.requires_grad_(False)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay)
    averaged = copy.deepcopy(model).eval()  # the EMA weights, for validation and export
    trained = [p for p in model.parameters() if p.requires_grad]
    if adaptation is not None:
        trained += list(adaptation.parameters())
    opt = torch.optim.Adam(trained, lr=cfg.lr, betas=(0.9, 0.999))
    sched = make_scheduler(opt, cfg.schedule, cfg.warmup, cfg.steps)
    run = TrainingRun(out, {"model": asdict(mcfg), "train": asdict(cfg), "init": str(init), "n": len(train_faces),
                            "data": fingerprint(train_faces.images, train_faces.points),
                            "val": fingerprint(val_faces.images, val_faces.points),
                            "init_weights": fingerprint(Path(init)) if init is not None else None,
                            **({"pools": {k: fingerprint(v.images, v.points) for k, v in pools.items()}} if pools else {}),
                            **({"box_errors": fingerprint(box_errors)} if box_errors is not None else {}),
                            **({"adaptation": {**adaptation.settings(), "targets": fingerprint(adaptation.targets)}}
                               if adaptation is not None else {})},
                      cfg.steps, cfg.checkpoint_every, f"train {_label(out)}", stop_at, progress)
    modules = {"model": model, **({"adaptation": adaptation} if adaptation is not None else {})}
    run.resume(modules, opt, sched, ema, state={"best": {"nme": float("inf"), "step": -1}})
    if box_errors is not None:  # what the jitter drew from, for the reader
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(box_errors, columns=["dx", "dy", "log_scale"]).to_csv(out / "box_errors.csv", index=False)
    val_crops, val_pts = validation_crops(val_faces, mcfg.input_size, cfg.margin)
    model.train()
    for m in frozen:
        m.eval()
    if cfg.freeze_norm_stats:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    for step in run:
        x, points = _batch(batch_faces(step, train_faces, cfg, pools), cfg, mcfg, step, box_errors)
        lr = opt.param_groups[0]["lr"]
        if adaptation is None:
            loss = model.loss(model(x), points, cfg)
        else:
            outputs, features = model(x, features=True)
            loss = model.loss(outputs, points, cfg) + adaptation.loss(model, features, step, cfg.steps, to_tensor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.step(model.parameters())
        row = {"loss": float(loss.detach()), "lr": lr}
        if (step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps:
            _averaged(ema, model, averaged)
            row["val_nme"] = float(metrics.nme_per_image(predict_crops(averaged, val_crops), val_pts).mean() * 100)
            if row["val_nme"] < run.state["best"]["nme"]:
                run.state["best"] = {"nme": row["val_nme"], "step": step + 1}
                save_detector(out, averaged, cfg.margin, {"selected_step": step + 1, "val_nme": row["val_nme"]})
        run.log(**row)
    return run.finish()


def _label(out: Path) -> str:
    """detector_x, or detector_x/seed1 for one seed of a repeated fine-tune."""
    return f"{out.parent.name}/{out.name}" if out.name.startswith("seed") else out.name


def _averaged(ema: EMAModel, model: torch.nn.Module, averaged: torch.nn.Module) -> None:
    """`averaged` = the EMA of `model`'s weights, with `model`'s normalisation statistics."""
    averaged.load_state_dict(model.state_dict())
    ema.copy_to(averaged.parameters())
