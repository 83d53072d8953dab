"""Fine-tune recipes at equal CPU time, on validation faces only: each variant fine-tunes the
profile's trained real-only detector (``models/<profile>/detector_real``) on the batch-mix set
of ``detector.finetune.mix`` (the two-stage synthetic set plus the few real domain faces), with
the same number of steps as the profile's fine-tunes, once per seed, and is scored on the real
validation faces and on the domain validation faces (``val_*`` splits: the 5 held-out real
caricatures in ``cpu``). Prints figures; asserts nothing.

    ./study run python -m benchmarks.bench_finetune --profile cpu --out results/cpu/finetune_recipes

The batch mix is the one the profile's run chose (``results/<profile>/detector_mix.csv``) unless
a variant sets its own. Models go to a scratch folder (``--work``); test sets are never read.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from lib import pipeline
from lib.data import data_prep
from lib.data import datasets as ds
from lib.detector import training as tr
from lib.detector.network import NetworkConfig

from .bench_generator import write_table

# name -> settings over the profile's fine-tune section (detector.finetune.train) as it stands when the bench runs
# (the table's heading names its lr); every variant keeps the profile's steps
VARIANTS = {
    "the profile's recipe": {},
    "lr 3e-4": {"lr": 3.0e-4},
    "lr 1e-3": {"lr": 1.0e-3},
    "norm statistics frozen": {"freeze_norm_stats": True},
    "lr 3e-4, norm statistics frozen": {"lr": 3.0e-4, "freeze_norm_stats": True},
    "lr 1e-3, norm statistics frozen": {"lr": 1.0e-3, "freeze_norm_stats": True},
}


def chosen_mix(profile: str) -> dict:
    """The batch mix the profile's last run chose (``detector_mix.csv``, notebook 05)."""
    path = pipeline.results_dir(profile) / "detector_mix.csv"
    if not path.is_file():
        raise SystemExit(f"needs {path}: run notebook 05 of profile {profile} first")
    table = pd.read_csv(path)
    return json.loads(table.loc[table["chosen"], "mix"].iloc[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--seeds", nargs="*", type=int, default=None, help="default: the profile's first two")
    ap.add_argument("--work", default="/tmp/bench_finetune", help="scratch folder for the models")
    ap.add_argument("--out", default=None, help="table path without suffix (default: print only)")
    args = ap.parse_args(argv)

    detector = pipeline.load_params(args.profile)["detector"]
    ft = detector["finetune"]
    seeds = args.seeds if args.seeds is not None else ft["seeds"][:2]
    data_dir = pipeline.data_dir(args.profile)
    crops, generated = data_dir / "crops", pipeline.generated_dir(args.profile)
    init = pipeline.ROOT / "models" / args.profile / "detector_real"
    if not (init / "model.safetensors").is_file():
        raise SystemExit(f"needs the real-only detector {init}: run notebook 05 of profile {args.profile} first")
    errors: list[str] = []
    train_samples = ds.read_dataset(crops / "train", "300w", errors)
    val_samples = ds.read_dataset(crops / "val", "300w", errors)
    splits = data_prep.splits(data_dir)
    fewshot = [s for split in splits if split.startswith("fewshot_") for s in ds.read_dataset(crops / split, "300w", errors)]
    domain_val = [s for split in splits if split.startswith("val_") for s in ds.read_dataset(crops / split, "300w", errors)]
    if not domain_val:
        raise SystemExit(f"needs the domain's validation faces (a val_<domain> split) in {crops}")
    samples = ds.read_dataset(generated / ft["sets"][ft["mix"]["set"]], "synthetic", errors) + fewshot
    pools = {"fewshot": fewshot, "real": train_samples}
    real_faces, domain_faces = tr.FaceSet(val_samples, errors), tr.FaceSet(domain_val, errors)
    for e in errors:
        print("skipped:", e)
    torch.set_num_threads(ft["train"].get("threads") or torch.get_num_threads())
    mcfg = NetworkConfig(**detector["model"])
    mix = chosen_mix(args.profile)
    start_real, start_domain = tr.validation_nme(init, real_faces), tr.validation_nme(init, domain_faces)
    print(f"{len(samples)} fine-tune faces ({ft['mix']['set']} + {len(fewshot)} few-shot), batch mix {mix}; "
          f"real-only detector: {start_real:.2f}% on {len(real_faces)} real validation faces, {start_domain:.2f}% on "
          f"{len(domain_faces)} domain validation faces", flush=True)

    rows = []
    for name in args.variants:
        train = {**ft["train"], "mix": mix, **VARIANTS[name]}
        work = Path(args.work) / name.replace(" ", "_").replace(",", "")
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.time()
        tr.finetune(samples, val_samples, mcfg, train, work, init, seeds, ft["holdout"], errors, progress=False,
                    pools=pools)
        minutes = (time.time() - t0) / 60 / len(seeds)
        real = [tr.validation_nme(work / f"seed{s}", real_faces) for s in seeds]
        domain = [tr.validation_nme(work / f"seed{s}", domain_faces) for s in seeds]
        rows.append({"variant": name, "settings": json.dumps(VARIANTS[name], sort_keys=True),
                     "steps": train["steps"], "minutes per seed": round(minutes, 1),
                     "real val NME (%)": round(sum(real) / len(real), 2),
                     "real, change": round(sum(real) / len(real) - start_real, 2),
                     "domain val NME (%)": round(sum(domain) / len(domain), 2),
                     "domain, change": round(sum(domain) / len(domain) - start_domain, 2),
                     "domain, per seed": " / ".join(f"{d:.2f}" for d in domain)})
        print(json.dumps(rows[-1]), flush=True)

    table = pd.DataFrame(rows)
    head = (f"Fine-tune recipes at equal steps ({ft['train']['steps']} each, {args.profile} profile, the profile's "
            f"fine-tune lr {ft['train']['lr']:g} and freeze_norm_stats {ft['train'].get('freeze_norm_stats', False)} "
            f"where a variant does not set them, "
            f"{torch.get_num_threads()} threads), from the real-only detector ({start_real:.2f}% on the "
            f"{len(real_faces)} real validation faces, {start_domain:.2f}% on the {len(domain_faces)} domain "
            f"validation faces), on the {ft['mix']['set']} set with batch mix {json.dumps(mix, sort_keys=True)}; "
            f"NME (inter-ocular, %, landmark box) of the kept weights, the mean over seeds {seeds}; change: "
            f"against the real-only detector.")
    write_table(table, head, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
