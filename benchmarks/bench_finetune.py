"""Fine-tune recipes on validation faces only: each variant fine-tunes the profile's trained
real-only detector (``models/<profile>/detector_real``) on one or more of the profile's fine-tune
sets (``--sets``, names from ``detector.finetune.sets``; default: the batch-mix set, the two-stage
synthetic set), each with the few real domain faces as notebook 05 adds them, once per seed, and
is scored on the real validation faces and on the domain validation faces (``val_*`` splits: the 5
held-out real caricatures in ``cpu``). Variants run the profile's steps unless they set their own.
Prints figures; asserts nothing.

    ./study run python -m benchmarks.bench_finetune --profile cpu --out finetune_recipes
    ./study run python -m benchmarks.bench_finetune --profile cpu --variants "the profile's recipe" \
        "600 steps" "1200 steps" --sets synthetic_two_stage fewshot --out finetune_steps
    ./study run python -m benchmarks.bench_finetune --profile cpu --variants "the profile's recipe" --alone \
        --sets fewshot geometric_style synthetic_two_stage --shape-transfer 0.5 1.0 --out finetune_alone

``--out NAME`` writes the table to ``results/<profile>/benchmarks/NAME.{csv,md}``.

``--alone`` fine-tunes on each set by itself, without the few real domain faces every method of notebook 05
gets, so it shows what a set teaches of the domain on its own. ``--shape-transfer`` adds a set built like the
Face of Art baseline's, but with each face warped toward one of the few real domain faces' shapes;
with ``--shape-model N`` also one warped toward N shapes drawn from a shape model of those faces.
``--per-style K`` adds the two-stage set drawn anew with K faces per style (the size of the set).

The batch mix is the one the profile's run chose (``results/<profile>/detector_mix.csv``) unless
a variant sets its own. The figures are the plain fine-tunes' (notebook 05 then interpolates each
method's weights toward the real-only detector, ``detector.finetune.interpolate``; that choice is
made in the notebook, on the same validation faces). Models go to a scratch folder (``--work``);
test sets are never read.
"""
from __future__ import annotations

import argparse
import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from safetensors.torch import load_file

from lib import pipeline
from lib.core import metrics
from lib.data import data_prep
from lib.data import datasets as ds
from lib.detector import training as tr
from lib.detector.finetune import Recipe, finetune, recipes, validation_nme
from lib.detector.model import load_detector, predict_crops
from lib.detector.network import NetworkConfig
from lib.generator import styles as st
from lib.generator import synthesis as syn

from .common import add_out_argument, parse_args, with_settings, write_table

# name -> settings over the profile's fine-tune section (detector.finetune.train) as it stands when the bench runs
# (the table's heading names its lr and steps); dotted keys name nested settings (``augment.rotate``)
VARIANTS = {
    "the profile's recipe": {},
    "lr 3e-4": {"lr": 3.0e-4},
    "lr 1e-3": {"lr": 1.0e-3},
    "norm statistics frozen": {"freeze_norm_stats": True},
    "lr 3e-4, norm statistics frozen": {"lr": 3.0e-4, "freeze_norm_stats": True},
    "lr 1e-3, norm statistics frozen": {"lr": 1.0e-3, "freeze_norm_stats": True},
    "600 steps": {"steps": 600},
    "1200 steps": {"steps": 1200},
    # the real-only detector's augmentation since 23a4d7d (README, "The detector's training recipe")
    "lighter augmentation": {"augment.rotate": 18.0, "augment.occlusion": 0.1, "augment.blur": 0.1},
    # batch mixes with a larger share of real training photos (the set's own faces fill the rest of each batch)
    "mix fewshot 0.25, real 0.5": {"mix": {"fewshot": 0.25, "real": 0.5}},
    "mix fewshot 0.375, real 0.375": {"mix": {"fewshot": 0.375, "real": 0.375}},
    "mix fewshot 0.5, real 0.375": {"mix": {"fewshot": 0.5, "real": 0.375}},
}


def last_weights_nme(folder: Path, faces: tr.FaceSet) -> float:
    """Mean NME (%) on `faces` of the run's last EMA weights (``checkpoints/last.safetensors``), the
    weights a fine-tune without selection would keep (what the kept step costs or saves)."""
    model, config = load_detector(folder)
    state = load_file(str(folder / "checkpoints" / "last.safetensors"))
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(state[f"emamodel.{i}"])
    crops, pts = tr.validation_crops(faces, model.cfg.input_size, config["margin"])
    return float(metrics.nme_per_image(predict_crops(model.eval(), crops), pts).mean() * 100)


def read_domain_splits(profile: str, prefix: str, errors: list) -> list[ds.Sample]:
    """The profile's real domain faces of every split named `prefix`* (``fewshot_``: the few faces every domain
    method gets; ``val_``: the domain validation faces), as notebook 05 reads them."""
    data_dir = pipeline.data_dir(profile)
    return [s for split in data_prep.splits(data_dir) if split.startswith(prefix)
            for s in ds.read_dataset(data_dir / "crops" / split, "300w", errors)]


def chosen_mix(profile: str) -> dict:
    """The batch mix the profile's last run chose (``detector_mix.csv``, notebook 05)."""
    path = pipeline.results_dir(profile) / "detector_mix.csv"
    if not path.is_file():
        raise SystemExit(f"needs {path}: run notebook 05 of profile {profile} first")
    table = pd.read_csv(path)
    return json.loads(table.loc[table["chosen"], "mix"].iloc[0])


def shape_transfer_set(train_samples: list[ds.Sample], fewshot: list[ds.Sample], gs: dict, weight: tuple,
                       work: Path, errors: list, shape_model: int = 0) -> Path:
    """The Face of Art set's recipe (``detector.finetune.geometric_style``: its styles, faces per style and
    seed) with each face warped toward one of the few real domain faces' shapes instead of exaggerated
    (``synthesis.restyle(domain_shapes=...)``), written to ``work/shape_transfer_<w0>_<w1>`` once. With
    `shape_model` > 0, toward one of that many shapes drawn from a shape model of the few faces
    (``styles.sample_shapes``), into ``work/shape_model_<w0>_<w1>``."""
    shapes = np.array([s.landmarks for s in fewshot])
    name = "shape_model" if shape_model else "shape_transfer"
    out = work / f"{name}_{weight[0]:g}_{weight[1]:g}"
    if shape_model:
        shapes = st.sample_shapes(shapes, shape_model, np.random.default_rng(gs.get("seed", 0)))
    if not (out / "manifest.csv").is_file():
        syn.restyle(train_samples, gs["styles"], gs["per_style"], out, gs.get("seed", 0), strength=weight,
                    errors=errors, domain_shapes=shapes)
    return out


def larger_synthetic_set(profile: str, per_style: int, work: Path) -> Path:
    """The two-stage synthetic set drawn as notebook 04 draws it (the profile's styles, edits, seed, sampler and
    precision; the guidance its run chose, ``guidance.csv``), but with `per_style` faces per style, into
    ``work/drawn/synthetic_two_stage_x<per_style>``; faces already there are kept."""
    from lib.generator import sampling
    from lib.generator.pairs import PairSet
    params = pipeline.load_params(profile)
    synthesis, res = params["synthesis"], params["diffusion"]["model"]["resolution"]
    table = pd.read_csv(pipeline.results_dir(profile) / "guidance.csv")
    guidance = float(table.loc[table["chosen"], "guidance"].iloc[0])
    train = PairSet(ds.read_dataset(pipeline.data_dir(profile) / "crops" / "train", "300w"), res)
    items = syn.plan(train.points, synthesis["styles"], per_style, res, synthesis["seed"], synthesis["edits_per_face"],
                     synthesis["edits"], synthesis["exaggeration"])
    out = work / "drawn" / f"synthetic_two_stage_x{per_style}"
    pipe = sampling.load_generator(pipeline.models_dir(profile) / synthesis["generators"]["two_stage"])
    syn.synthesise(pipe, items, out, res, synthesis["steps"], guidance, synthesis["batch_size"], progress=False,
                   mixed_precision=synthesis["mixed_precision"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--sets", nargs="*", default=None,
                    help="fine-tune sets (names from detector.finetune.sets); default: the batch-mix set")
    ap.add_argument("--seeds", nargs="*", type=int, default=None, help="default: the profile's first two")
    ap.add_argument("--work", default="/tmp/bench_finetune", help="scratch folder for the models")
    ap.add_argument("--keep", action="store_true",
                    help="keep the runs already in --work: each resumes, so a finished one is only scored again")
    add_out_argument(ap)
    ap.add_argument("--alone", action="store_true",
                    help="each set by itself: without the few real domain faces and without a batch mix (what a set "
                         "teaches of the domain on its own; `fewshot` is then those few faces alone)")
    ap.add_argument("--shape-transfer", nargs=2, type=float, metavar=("W0", "W1"), default=None,
                    help="add the set `shape_transfer`: the Face of Art set's faces and styles, each warped toward one "
                         "of the few real domain faces' shapes (styles.shape_transfer, weight in [W0, W1]) instead of "
                         "exaggerated; built in --work")
    ap.add_argument("--per-style", type=int, default=0, metavar="K",
                    help="add the set `synthetic_two_stage_x<K>`: the two-stage set drawn anew as notebook 04 draws it, "
                         "with K faces per style instead of the profile's per_style; drawn into --work")
    ap.add_argument("--shape-model", type=int, default=0, metavar="N",
                    help="with --shape-transfer, also the set `shape_model`: the same, but each face warped toward one "
                         "of N shapes drawn from a shape model of the few real domain faces (styles.sample_shapes), "
                         "so its shapes go beyond those few")
    args = parse_args(ap, argv)

    params = pipeline.load_params(args.profile)
    detector = params["detector"]
    ft = detector["finetune"]
    seeds = args.seeds if args.seeds is not None else ft["seeds"][:2]
    data_dir = pipeline.data_dir(args.profile)
    crops, generated = data_dir / "crops", pipeline.generated_dir(args.profile)
    init = pipeline.models_dir(args.profile) / "detector_real"
    if not (init / "model.safetensors").is_file():
        raise SystemExit(f"needs the real-only detector {init}: run notebook 05 of profile {args.profile} first")
    errors: list[str] = []
    train_samples = ds.read_dataset(crops / "train", "300w", errors)
    val_samples = ds.read_dataset(crops / "val", "300w", errors)
    fewshot = read_domain_splits(args.profile, "fewshot_", errors)
    domain_val = read_domain_splits(args.profile, "val_", errors)
    if not domain_val:
        raise SystemExit(f"needs the domain's validation faces (a val_<domain> split) in {crops}")
    set_names = args.sets or [ft["mix"]["set"]]
    unknown = sorted(set(set_names) - set(ft["sets"]))
    if unknown:
        raise SystemExit(f"--sets: {unknown} are not fine-tune sets of profile {args.profile} ({sorted(ft['sets'])})")
    # the profile's sets by their recipes, as notebook 05 builds them; the bench's own sets by the shared recipe
    profile_recipes = recipes(ft["sets"])
    set_recipes = {name: profile_recipes[name] for name in set_names}
    if args.shape_model and not args.shape_transfer:
        raise SystemExit("--shape-model needs --shape-transfer W0 W1 (the warp weights)")
    if args.shape_transfer:
        warped = shape_transfer_set(train_samples, fewshot, ft["geometric_style"], tuple(args.shape_transfer),
                                    Path(args.work), errors)
        set_recipes["shape_transfer"] = Recipe(str(warped))
        if args.shape_model:
            modelled = shape_transfer_set(train_samples, fewshot, ft["geometric_style"], tuple(args.shape_transfer),
                                          Path(args.work), errors, args.shape_model)
            set_recipes["shape_model"] = Recipe(str(modelled))
    if args.per_style:
        larger = larger_synthetic_set(args.profile, args.per_style, Path(args.work))
        set_recipes[f"synthetic_two_stage_x{args.per_style}"] = Recipe(str(larger))
    # --alone: every set without the few real domain faces and the batch mix (but `fewshot`, which is nothing else)
    set_recipes = {name: replace(r, fewshot=False, mix={}) if args.alone and r.path else r
                   for name, r in set_recipes.items()}
    sets = {name: r.samples(generated, fewshot, errors) for name, r in set_recipes.items()}
    pools = {"fewshot": fewshot, "real": train_samples}
    real_faces, domain_faces = tr.FaceSet(val_samples, errors), tr.FaceSet(domain_val, errors)
    for e in errors:
        print("skipped:", e)
    torch.set_num_threads(ft["train"].get("threads") or torch.get_num_threads())
    mcfg = NetworkConfig(**detector["model"])
    mix = {} if args.alone else chosen_mix(args.profile)
    start_real, start_domain = validation_nme(init, real_faces), validation_nme(init, domain_faces)
    print(", ".join(f"{name}: {len(faces)} faces" for name, faces in sets.items())
          + (" (alone: without the few-shot faces but for `fewshot`, no batch mix); " if args.alone else
             f" (with the {len(fewshot)} few-shot faces), batch mix {mix}; ")
          + f"real-only detector: {start_real:.2f}% on {len(real_faces)} real validation faces, {start_domain:.2f}% on "
          f"{len(domain_faces)} domain validation faces", flush=True)

    rows = []
    # variants outside, sets inside: a stopped run has whole variants
    for name, (set_name, samples) in itertools.product(args.variants, sets.items()):
        train = with_settings(set_recipes[set_name].train_cfg(ft["train"], mix), VARIANTS[name],
                              "detector.finetune.train", params)
        work = Path(args.work) / set_name / name.replace(" ", "_").replace(",", "")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        finetune(samples, val_samples, mcfg, train, work, init, seeds, ft["holdout"], errors, progress=False,
                 pools=pools)
        # the runs' own training time (history.csv), whichever call of the bench trained them
        minutes = sum(pd.read_csv(work / f"seed{s}" / "history.csv")["seconds"].iloc[-1] for s in seeds) / 60 / len(seeds)
        real = [validation_nme(work / f"seed{s}", real_faces) for s in seeds]
        domain = [validation_nme(work / f"seed{s}", domain_faces) for s in seeds]
        last_real = [last_weights_nme(work / f"seed{s}", real_faces) for s in seeds]
        last_domain = [last_weights_nme(work / f"seed{s}", domain_faces) for s in seeds]
        kept = [json.loads((work / f"seed{s}" / "config.json").read_text())["training"]["selected_step"] for s in seeds]
        rows.append({"variant": name, "set": set_name, "settings": json.dumps(VARIANTS[name], sort_keys=True),
                     "steps": train["steps"], "kept steps": " / ".join(map(str, kept)),
                     "minutes per seed": round(minutes, 1),
                     "real val NME (%)": round(sum(real) / len(real), 2),
                     "real, change": round(sum(real) / len(real) - start_real, 2),
                     "domain val NME (%)": round(sum(domain) / len(domain), 2),
                     "domain, change": round(sum(domain) / len(domain) - start_domain, 2),
                     "domain, per seed": " / ".join(f"{d:.2f}" for d in domain),
                     "last weights: real val NME (%)": round(sum(last_real) / len(seeds), 2),
                     "last weights: domain val NME (%)": round(sum(last_domain) / len(seeds), 2)})
        print(json.dumps(rows[-1]), flush=True)

    table = pd.DataFrame(rows)
    how = ("each set alone (without the few real domain faces, no batch mix)" if args.alone else
           f"the sets named with the few real domain faces, batch mix {json.dumps(mix, sort_keys=True)}")
    head = (f"Fine-tune recipes ({args.profile} profile; the profile's {ft['train']['steps']} steps, "
            f"fine-tune lr {ft['train']['lr']:g} and freeze_norm_stats {ft['train'].get('freeze_norm_stats', False)} "
            f"where a variant does not set them, "
            f"{torch.get_num_threads()} threads), from the real-only detector ({start_real:.2f}% on the "
            f"{len(real_faces)} real validation faces, {start_domain:.2f}% on the {len(domain_faces)} domain "
            f"validation faces), on {how}; "
            f"NME (inter-ocular, %, landmark box) of the kept weights, the mean over seeds {seeds} (kept steps: chosen "
            f"on the real validation faces and the set's held-out part, as in notebook 05; last weights: the final "
            f"EMA weights, no selection); change: "
            f"against the real-only detector.")
    write_table(table, head, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
