"""Learning landmarks from rendered faces alone (notebook 07).

The setting of "Fake It Till You Make It" (Wood et al. 2021): detectors trained
only on rendered faces with exact labels (``lib.data.procedural``, photo-like
style, random identity, expression, pose, lighting and background), tested on
real photographs. The study is a grid of

- training set sizes (``rendered.sizes``; nested: the smaller set is the first
  faces of the larger one),
- augmentation settings (``rendered.augment``: named ``AugmentConfig`` values,
  e.g. none / translation + occlusion / all),
- model families (``rendered.models``: any network of ``lib.detector.network``
  with its learning rate, e.g. the heatmap detector, coordinate regression on
  the ImageNet MobileNetV2, a ResNet-18 regressor from scratch),

every cell trained for the same steps (``rendered.train``) and selected on
rendered validation faces, so nothing real touches a rendered-only model. Each
is scored on the real test sets (and the real validation split, which chooses
the model that ``finetune`` trains further on real 300-W training faces, against
the same network trained on those real faces alone for the same steps).

Outputs: the rendered sets under ``generated/<profile>/rendered/{train,val,test}``
(300-W layout), one detector folder per cell under ``models/<profile>/rendered/``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..data import datasets as ds
from ..data import procedural
from ..detector import training as det
from ..detector.model import Detector
from ..detector.network import NetworkConfig
from . import statistics as st
from .evaluate import evaluate, table_row

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""
    model: str
    size: int
    augment: str

    @property
    def name(self) -> str:
        return f"{self.model}_{self.size}_{self.augment}"


def cells(cfg: dict) -> list[Cell]:
    """Every (model, size, augmentation) of the ``rendered`` section, models outermost."""
    return [Cell(m, n, a) for m in cfg["models"] for n in cfg["sizes"] for a in cfg["augment"]]


def render(cfg: dict, out: str | Path, progress: bool = True) -> dict[str, list[ds.Sample]]:
    """Draw (or reuse) the rendered training set (the largest size), validation and
    test sets from disjoint seed ranges, and read them back as samples. With `progress`,
    each set prints how many faces it rendered in this call, how many it found on disk,
    and the time it took."""
    r, out = cfg["render"], Path(out)
    counts = {"train": max(cfg["sizes"]), "val": r["val"], "test": r["test"]}
    sets, seed = {}, r["seed"] * 1_000_000
    for part in PARTS:
        on_disk = len(list((out / part).glob(f"{part}_*.pts"))) if (out / part).is_dir() else 0
        t0 = time.perf_counter()
        procedural.write_set(out / part, counts[part], seed, "photo", r["size"], prefix=part,
                             processes=r.get("processes", 1), progress=progress, lines=True)
        if progress:
            print(f"rendered {part}: {counts[part] - min(on_disk, counts[part])} faces this run, "
                  f"{min(on_disk, counts[part])} already on disk, {time.perf_counter() - t0:.1f} s", flush=True)
        seed += counts[part]
        sets[part] = sorted(ds.read_dataset(out / part, "300w"), key=lambda s: s.name)
        if len(sets[part]) != counts[part]:
            raise ValueError(f"{out / part}: {len(sets[part])} faces, expected {counts[part]}")
    return sets


def network(cfg: dict, model: str) -> NetworkConfig:
    if model not in cfg["models"]:
        raise KeyError(f"rendered.models has no model {model!r}; it has {sorted(cfg['models'])}")
    return NetworkConfig(**cfg["models"][model]["model"])


def train_config(cfg: dict, model: str, augment: str, extra: dict | None = None) -> det.TrainConfig:
    """The grid's training settings with the model's learning rate and the named
    augmentation; `extra` overrides keys (the fine-tune's steps)."""
    if augment not in cfg["augment"]:
        raise KeyError(f"rendered.augment has no setting {augment!r}; it has {sorted(cfg['augment'])}")
    return det.TrainConfig.from_dict({**cfg["train"], "lr": cfg["models"][model]["lr"], **(extra or {}),
                                      "augment": cfg["augment"][augment]})


def train_cell(cell: Cell, cfg: dict, train_faces: det.FaceSet, val_faces: det.FaceSet, out: str | Path,
               progress: bool = True):
    """Train one cell on the first ``cell.size`` rendered faces into ``out/<cell.name>``."""
    return det.train(train_faces.take(cell.size), val_faces, network(cfg, cell.model),
                     train_config(cfg, cell.model, cell.augment), Path(out) / cell.name, progress=progress)


def finetune_real(best: Cell, cfg: dict, real_train: det.FaceSet, real_val: det.FaceSet, out: str | Path,
                  progress: bool = True) -> dict[str, object]:
    """What rendered pretraining buys: the `best` rendered-only model trained further on
    real training faces, and the same network trained on those faces alone (its
    usual initialisation: ImageNet or from scratch), both with ``rendered.finetune``'s
    steps and augmentation, selected on the real validation split."""
    f = dict(cfg["finetune"])
    augment = f.pop("augment")
    tcfg = train_config(cfg, best.model, augment, f)
    mcfg, out = network(cfg, best.model), Path(out)
    return {"rendered, then real": det.train(real_train, real_val, mcfg, tcfg, out / "finetune_real",
                                             init=out / best.name, progress=progress),
            "real only": det.train(real_train, real_val, mcfg, tcfg, out / "real_only", progress=progress)}


def score(folder: str | Path, method: str, test_sets: dict[str, list[ds.Sample]], evaluate_cfg: dict,
          errors: list | None = None) -> tuple[list[dict], dict[str, pd.DataFrame]]:
    """Rows of ``evaluate.table_row`` (NME with its bootstrap interval, FR, AUC) of the
    detector folder on each test set (landmark box), and the per-face errors."""
    predictor = Detector(folder, "landmarks")
    b = evaluate_cfg.get("bootstrap", {})
    rows, per_image = [], {}
    for name, samples in test_sets.items():
        ev = evaluate(predictor, samples, desc=f"{Path(folder).name} on {name}", errors=errors)
        per_image[name] = ev.per_image
        rows.append(table_row(method, name, ev.per_image, tuple(evaluate_cfg["thresholds"]),
                              b.get("resamples", st.RESAMPLES), b.get("seed", st.SEED)))
    return rows, per_image


def training_summary(cell: Cell, cfg: dict, folder: str | Path) -> dict:
    """Steps, minutes, the kept step and its rendered validation NME, from the run's history."""
    h = pd.read_csv(Path(folder) / "history.csv")
    best = h.loc[h["val_nme"].idxmin()]
    model = cfg["models"][cell.model]["model"]
    return {"model": cell.model, "arch": model.get("arch", "hourglass"), "backbone":
            model.get("backbone", "") if model.get("arch") == "regression" else "",
            "init": "ImageNet" if model.get("pretrained") and model.get("arch") in ("regression", "mobilenet")
            else "from scratch", "input_px": model["input_size"],
            "training_faces": cell.size, "augment": cell.augment, "steps": int(h["step"].iloc[-1]),
            "minutes": round(float(h["seconds"].iloc[-1]) / 60, 2), "kept_step": int(best["step"]),
            "rendered_val_nme": round(float(best["val_nme"]), 3)}


def grid_markdown(table: pd.DataFrame, test_sets: list[str]) -> str:
    """One row per cell: model, faces, augmentation, then NME [95% CI] / FR@10% / AUC@10% per test set."""
    head = ("| model | init | faces | augmentation | "
            + " | ".join(f"{t} NME [95% CI] | {t} FR@10% | {t} AUC@10%" for t in test_sets) + " |")
    lines = [head, "|" + "---|" * (4 + 3 * len(test_sets))]
    for (model, size, augment), g in table.groupby(["model", "training_faces", "augment"], sort=False):
        cells_ = []
        for t in test_sets:
            r = g[g["test_set"] == t]
            cells_ += (["-"] * 3 if r.empty else
                       [f"{r.nme.iloc[0]:.2f} [{r.nme_ci_low.iloc[0]:.2f}, {r.nme_ci_high.iloc[0]:.2f}]",
                        f"{r.fr_10.iloc[0]:.2f}", f"{r.auc_10.iloc[0]:.4f}"])
        lines.append(f"| {model} | {g['init'].iloc[0]} | {size} | {augment} | " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"
