"""Fine-tuning a trained detector on another domain's faces: one run per seed, a
fixed share of real faces in every batch (``TrainConfig.mix``), the batch mix
chosen on validation faces only, and the fine-tuned weights interpolated back
toward the starting detector's by a weight chosen on validation. Built on
``lib.detector.training``; only the detector stage imports it, so changing a
fine-tune recipe reruns that stage and not the diffusion stages (whose critic
imports ``training``)."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core import metrics
from ..core.training import TrainResult
from ..data import data_prep
from ..data import datasets as ds
from .model import load_detector, predict_crops, save_detector
from .network import NetworkConfig
from .training import FaceSet, TrainConfig, train, validation_crops


@dataclass(frozen=True)
class Recipe:
    """One fine-tune of ``detector.finetune.sets``: its set (a folder under the profile's
    generated/; None: no set), whether the few real domain faces (``fewshot_*`` splits) join
    it, and its batch mix (None: the mix chosen on validation for every fine-tune)."""
    path: str | None
    fewshot: bool = True
    mix: dict | None = None

    def samples(self, generated: str | Path, fewshot: list[ds.Sample],
                errors: list | None = None) -> list[ds.Sample]:
        """The fine-tune's faces: the set's (read from `generated`) and, unless the recipe
        leaves them out, the few real domain faces."""
        own = ds.read_dataset(Path(generated) / self.path, "synthetic", errors) if self.path else []
        return own + (list(fewshot) if self.fewshot else [])

    def train_cfg(self, train: dict, chosen_mix: dict) -> dict:
        """The fine-tune's training settings: `train` with the recipe's own batch mix, or the chosen one."""
        return {**train, "mix": dict(chosen_mix if self.mix is None else self.mix)}


def recipes(sets: dict) -> dict[str, Recipe]:
    """``detector.finetune.sets`` as one Recipe per fine-tune. An entry is a folder (null: no
    set, e.g. the few-shot baseline), which gets the few real domain faces and the batch mix
    chosen on validation, as every method does so the comparison stays fair; or a mapping
    ``{path, fewshot, mix}`` for a recipe of its own, e.g. the paper's, the set alone:
    ``{path: synthetic/two_stage, fewshot: false, mix: {}}``."""
    out = {}
    for name, entry in sets.items():
        if entry is None or isinstance(entry, str):
            out[name] = Recipe(entry)
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"detector.finetune.sets.{name}: expected a folder, null or a mapping "
                             f"{{path, fewshot, mix}}, got {entry!r}")
        unknown = sorted(set(entry) - {"path", "fewshot", "mix"})
        if unknown:
            raise ValueError(f"detector.finetune.sets.{name}: unknown keys {unknown} (known: path, fewshot, mix)")
        mix = entry.get("mix")
        if mix is not None and not isinstance(mix, dict):
            raise ValueError(f"detector.finetune.sets.{name}.mix: expected a mapping of shares, got {mix!r}")
        out[name] = Recipe(entry.get("path"), bool(entry.get("fewshot", True)), mix)
        if out[name].path is None and not out[name].fewshot:
            raise ValueError(f"detector.finetune.sets.{name}: no faces to fine-tune on (no path and fewshot: false)")
    return out


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


def _mean_nme(model: torch.nn.Module, crops: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean NME (%) of a network on (crops, landmarks) of ``training.validation_crops``; NaN for none."""
    images, points = crops
    if not len(images):
        return float("nan")
    return float(metrics.nme_per_image(predict_crops(model, images), points).mean() * 100)


def validation_nme(folder: str | Path, faces: FaceSet) -> float:
    """Mean NME (%) of the detector folder on `faces`, each cropped by its landmark box."""
    model, config = load_detector(folder)
    return _mean_nme(model, validation_crops(faces, model.cfg.input_size, config["margin"]))


def _choose(table: pd.DataFrame, start: float, tolerance: float) -> int:
    """The validation rule of the fine-tune's choices, on a table of candidates with "real val
    NME (%)" and "domain val NME (%)": the lowest domain NME among the candidates whose real NME
    is at most `tolerance` points above `start` (the starting detector's), or, when none is (or
    there are no domain faces), the lowest real NME. Marks "within tolerance" and "chosen" in
    `table` and returns the chosen row's index."""
    table["within tolerance"] = table["real val NME (%)"] <= start + tolerance
    ok = table[table["within tolerance"] & table["domain val NME (%)"].notna()]
    best = ok["domain val NME (%)"].idxmin() if len(ok) else table["real val NME (%)"].idxmin()
    table["chosen"] = table.index == best
    table.attrs["initial real val NME (%)"] = start
    return best


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
        rows.append({"mix": json.dumps(dict(mix), sort_keys=True),
                     "real val NME (%)": validation_nme(folder / f"seed{seed}", real),
                     "domain val NME (%)": validation_nme(folder / f"seed{seed}", domain),
                     "minutes": float(run.history["seconds"].iloc[-1]) / 60})  # the whole run, resumed or not
    table = pd.DataFrame(rows)
    best = _choose(table, start, tolerance)
    return dict(candidates[best]), table[["mix", "real val NME (%)", "domain val NME (%)", "within tolerance",
                                          "minutes", "chosen"]]


# ------------------------------------------------------------------ interpolation toward the start

def _interpolated(start: torch.nn.Module, tuned: torch.nn.Module, alpha: float) -> torch.nn.Module:
    """A copy of `tuned` whose floating-point weights and statistics are
    ``(1 - alpha) * start + alpha * tuned`` (integer buffers, e.g. batch counts, are `tuned`'s);
    alpha 1 gives `tuned`'s weights and alpha 0 `start`'s, exactly."""
    a, b = start.state_dict(), tuned.state_dict()
    model = copy.deepcopy(tuned)
    model.load_state_dict({k: (1 - alpha) * a[k] + alpha * v if v.is_floating_point() else v for k, v in b.items()})
    return model.eval()


def _pair(start: str | Path, tuned: str | Path):
    """The detectors of folders `start` and `tuned`, checked to be one network read from the same crops."""
    a, config_a = load_detector(start)
    b, config_b = load_detector(tuned)
    same = ("margin", "mean", "std")
    if a.cfg != b.cfg or any(config_a[k] != config_b[k] for k in same):
        raise ValueError(f"{tuned}: cannot interpolate with {start}: another network or crop "
                         f"({b.cfg} margin {config_b['margin']}; {a.cfg} margin {config_a['margin']})")
    return a, b, config_b


def interpolate(start: str | Path, tuned: str | Path, alpha: float, out: str | Path) -> Path:
    """Write the detector folder `out` with the weights of the fine-tuned folder `tuned` moved
    back toward those of the folder it started from, `start`: ``(1 - alpha) * start + alpha * tuned``
    (weight-space ensembling, as WiSE-FT does: Wortsman et al., CVPR 2022). Both must be the
    same network read from the same crops; `alpha` in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolation weight {alpha} outside [0, 1]")
    a, b, config = _pair(start, tuned)
    notes = {**config.get("training", {}), "interpolated": {"start": str(start), "tuned": str(tuned), "alpha": alpha}}
    save_detector(Path(out), _interpolated(a, b, alpha), config["margin"], notes)
    return Path(out)


def choose_alpha(start: str | Path, runs: dict[int, Path], real: FaceSet, domain: FaceSet, alphas: list[float],
                 tolerance: float) -> tuple[float, pd.DataFrame]:
    """The interpolation weight (``interpolate``) for a fine-tuned method, chosen on validation
    faces only, by the rule of ``choose_mix``: each alpha interpolates every seed's run
    (`runs`, ``{seed: folder}``) toward `start` and is scored on the real validation faces
    (`real`) and the domain's (`domain`), as the mean over seeds; the chosen alpha has the lowest
    domain NME among those whose real NME is at most `tolerance` points above `start`'s, or, when
    none is, the lowest real NME. Returns (alpha, one row per alpha)."""
    if not alphas or not all(0.0 <= a <= 1.0 for a in alphas):
        raise ValueError(f"interpolation weights {alphas}: expected one or more in [0, 1]")
    if len(alphas) > 1 and not len(domain):
        raise ValueError("choose_alpha needs the domain's validation faces (a val_<domain> split from data prep)")
    start_model, config = load_detector(start)
    size, margin = start_model.cfg.input_size, config["margin"]
    real_crops, domain_crops = (validation_crops(faces, size, margin) for faces in (real, domain))
    scores = {alpha: [] for alpha in alphas}
    for folder in runs.values():
        a, b, _ = _pair(start, folder)
        for alpha in alphas:
            model = _interpolated(a, b, alpha)
            scores[alpha].append((_mean_nme(model, real_crops), _mean_nme(model, domain_crops)))
    table = pd.DataFrame([{"alpha": alpha, "real val NME (%)": float(np.mean([r for r, _ in s])),
                           "domain val NME (%)": float(np.mean([d for _, d in s]))} for alpha, s in scores.items()])
    best = _choose(table, _mean_nme(start_model, real_crops), tolerance)
    return float(table.loc[best, "alpha"]), table
