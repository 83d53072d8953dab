"""Fine-tuning a trained detector on another domain's faces: one run per seed, a
fixed share of real faces in every batch (``TrainConfig.mix``), and the batch mix
chosen on validation faces only. Built on ``lib.detector.training``; only the
detector stage imports it, so changing a fine-tune recipe reruns that stage and
not the diffusion stages (whose critic imports ``training``)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core import metrics
from ..core.training import TrainResult
from ..data import data_prep
from ..data import datasets as ds
from .model import load_detector, predict_crops
from .network import NetworkConfig
from .training import FaceSet, TrainConfig, train, validation_crops


def finetune(samples: list[ds.Sample], val_samples: list[ds.Sample], mcfg: NetworkConfig, train_cfg: dict,
             out: str | Path, init: str | Path, seeds: list[int], holdout: float,
             errors: list | None = None, progress: bool = True,
             pools: dict[str, list[ds.Sample]] | None = None) -> dict[int, TrainResult]:
    """Fine-tune the detector folder `init` on `samples` once per seed, into
    ``out/seed<k>/``. The seed sets the data order and augmentation (``TrainConfig.seed``)
    and which part of `samples` is held out for validation beside `val_samples`
    (``data_prep.holdout``), so the spread over seeds covers all three. `pools`: the
    faces the batch mix (``train_cfg["mix"]``) draws from."""
    out, results = Path(out), {}
    for seed in seeds:
        kept, held = data_prep.holdout(samples, holdout, seed)
        cfg = TrainConfig.from_dict({**train_cfg, "seed": seed})
        faces = {name: FaceSet(pool, errors) for name, pool in (pools or {}).items()}
        results[seed] = train(FaceSet(kept, errors), FaceSet(val_samples + held, errors), mcfg, cfg,
                              out / f"seed{seed}", init=init, progress=progress, pools=faces)
    return results


def validation_nme(folder: str | Path, faces: FaceSet) -> float:
    """Mean NME (%) of the detector folder on `faces`, each cropped by its landmark box."""
    model, config = load_detector(folder)
    crops, pts = validation_crops(faces, model.cfg.input_size, config["margin"])
    return float(metrics.nme_per_image(predict_crops(model, crops), pts).mean() * 100)


def choose_mix(samples: list[ds.Sample], val_samples: list[ds.Sample], domain_val: list[ds.Sample],
               mcfg: NetworkConfig, train_cfg: dict, candidates: list[dict], tolerance: float, out: str | Path,
               init: str | Path, seed: int, holdout: float, errors: list | None = None, progress: bool = True,
               pools: dict[str, list[ds.Sample]] | None = None) -> tuple[dict, pd.DataFrame]:
    """The batch mix (``TrainConfig.mix``) for the fine-tunes, chosen on validation faces only.

    Each candidate fine-tunes `init` on `samples` once (seed `seed`, into ``out/mix<k>``) and
    is scored on the real validation faces (`val_samples`) and the domain's validation faces
    (`domain_val`, e.g. ``val_caricature``): the chosen mix has the lowest domain NME among the
    candidates whose real NME is at most `tolerance` points above `init`'s, or, when none is,
    the lowest real NME. Returns (the mix, one row per candidate)."""
    if not candidates:
        raise ValueError("choose_mix needs at least one candidate mix")
    if not domain_val:
        raise ValueError("choose_mix needs the domain's validation faces (a val_<domain> split from data prep)")
    out = Path(out)
    real, domain = FaceSet(val_samples, errors), FaceSet(domain_val, errors)
    start = validation_nme(init, real)
    rows = []
    for k, mix in enumerate(candidates):
        folder = out / f"mix{k}"
        run = finetune(samples, val_samples, mcfg, {**train_cfg, "mix": dict(mix)}, folder, init, [seed], holdout,
                       errors, progress, pools)[seed]
        nme_real = validation_nme(folder / f"seed{seed}", real)
        rows.append({"mix": json.dumps(dict(mix), sort_keys=True), "real val NME (%)": nme_real,
                     "domain val NME (%)": validation_nme(folder / f"seed{seed}", domain),
                     "within tolerance": nme_real <= start + tolerance,
                     "minutes": float(run.history["seconds"].iloc[-1]) / 60})  # the whole run, resumed or not
    table = pd.DataFrame(rows)
    ok = table[table["within tolerance"]]
    best = ok["domain val NME (%)"].idxmin() if len(ok) else table["real val NME (%)"].idxmin()
    table["chosen"] = table.index == best
    table.attrs["initial real val NME (%)"] = start
    return dict(candidates[best]), table
