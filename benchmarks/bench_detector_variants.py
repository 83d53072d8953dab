"""Detector designs at equal CPU time, on the validation split: each variant trains the
real-only detector from scratch (or from ImageNet) for the same wall-clock budget on the
profile's training faces, then is scored on the real validation faces with the landmark
box and with the face finder's box (and under test-time flipping, and with a second pass on
the upright crop the first pass frames: ``Detector(refine=True)``), and timed at batch 1 (crop
included) beside dlib's 68-point predictor in the same process. Prints figures; asserts nothing.

    ./study run python -m benchmarks.bench_detector_variants --profile cpu --minutes 7 --out detector_variants

``--out NAME`` writes the table to ``results/<profile>/benchmarks/NAME.{csv,md}``.

``--folders NAME=PATH ...`` scores detector folders that are already trained (e.g. a
bench's scratch models, or ``models/cpu/detector_real``) the same way, without training.

Steps per variant = budget / seconds per step, measured by a short probe of that variant
(validation and checkpoints included in the budget at their profile intervals), so every
learning-rate schedule runs to its end. Models go to a scratch folder (``--work``); test
sets are never read.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib import pipeline
from lib.data import datasets as ds
from lib.detector import model as det
from lib.detector import training as tr
from lib.detector.network import NetworkConfig
from lib.evaluation import evaluate as ev
from lib.evaluation import predictors as pr

from .bench_detector import rounds_of
from .bench_finetune import read_domain_splits
from .common import add_out_argument, parse_args, with_settings, write_table

PROBE_STEPS = 12
# the probe runs this many times and keeps its fastest reading: another process on the cores can only slow a probe,
# and one disturbed probe once read a step 2x too slow and halved that variant's budget
# (results/cpu/benchmarks/detector_variants_40min.md)
PROBE_ROUNDS = 3
# STAR's rotation range (18 degrees) and a third of the occlusion and blur of the profile before 23a4d7d (its
# augmentation since then, so over the profile as it stands this variant is the profile itself)
LIGHTER = {"train.augment.rotate": 18.0, "train.augment.occlusion": 0.1, "train.augment.blur": 0.1}
# name -> settings over the profile's detector section (model.* and train.*)
VARIANTS = {
    "hourglass 64 px / 16": {},
    "hourglass 96 px / 24": {"model.input_size": 96, "model.heatmap_size": 24},
    "hourglass 128 px / 32": {"model.input_size": 128, "model.heatmap_size": 32},
    "hourglass 128 px / 16": {"model.input_size": 128, "model.heatmap_size": 16},
    "hourglass 64 px / 32": {"model.heatmap_size": 32},
    "hourglass 64 px / 16, 96 channels": {"model.channels": 96},
    "hourglass 64 px / 16, 2 stacks": {"model.stacks": 2},
    "mobilenet 128 px / 8 (ImageNet)": {"model.arch": "mobilenet", "model.channels": 128, "model.input_size": 128,
                                        "model.heatmap_size": 8, "train.lr": 1.0e-3},
    "mobilenet 96 px / 6 (ImageNet)": {"model.arch": "mobilenet", "model.channels": 128, "model.input_size": 96,
                                       "model.heatmap_size": 6, "train.lr": 1.0e-3},
    "mobilenet 128 px / 8 (from scratch)": {"model.arch": "mobilenet", "model.channels": 128, "model.input_size": 128,
                                            "model.heatmap_size": 8, "model.pretrained": False, "train.lr": 1.0e-3},
    # the profile's training recipe (over its network as it stands: 96 channels since 022f7f2)
    "hourglass 64 px / 16, lr 3e-3": {"train.lr": 3.0e-3},
    "hourglass 64 px / 16, lr 2e-2": {"train.lr": 2.0e-2},
    "hourglass 64 px / 16, lighter augmentation": LIGHTER,
    "hourglass 64 px / 16, lr 3e-3, lighter augmentation": {"train.lr": 3.0e-3, **LIGHTER},
    # over the profile's augmentation as it stands (lighter since 23a4d7d)
    "hourglass 64 px / 16, no occlusion or blur": {"train.augment.occlusion": 0.0, "train.augment.blur": 0.0},
    "hourglass 64 px / 16, rotation 10": {"train.augment.rotate": 10.0},
    # the target Gaussian's width in heatmap pixels (the profile's 1.5 until 4cd66eb, 1.0 since)
    "hourglass 64 px / 16, sigma 0.75": {"model.sigma": 0.75},
    "hourglass 64 px / 16, sigma 1.0": {"model.sigma": 1.0},
    "hourglass 64 px / 16, sigma 1.25": {"model.sigma": 1.25},
    "hourglass 64 px / 16, sigma 2.0": {"model.sigma": 2.0},
    # another seed (data order, augmentation, initial weights): how far two runs of one design differ
    "hourglass 64 px / 16, seed 1": {"train.seed": 1},
    "hourglass 64 px / 16, sigma 1.0, seed 1": {"model.sigma": 1.0, "train.seed": 1},
    "hourglass 64 px / 16, no occlusion or blur, seed 1": {"train.augment.occlusion": 0.0, "train.augment.blur": 0.0,
                                                           "train.seed": 1},
}
DETECTOR_BOXES = {"train.augment.detector_boxes": 0.5}  # --detector-boxes: half the crops framed as the finder would


def seconds_per_step(mcfg: NetworkConfig, train: dict, faces: tr.FaceSet, work: Path) -> float:
    probe = work / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    cfg = tr.TrainConfig.from_dict({**train, "steps": PROBE_STEPS, "warmup": 0, "checkpoint_every": 10 ** 6,
                                    "val_every": 10 ** 6, "augment": {**train["augment"], "detector_boxes": 0.0}})
    small = tr.FaceSet([])
    small.images, small.points = faces.images[:64], faces.points[:64]
    readings = []
    for _ in range(PROBE_ROUNDS):
        h = tr.train(small, small, mcfg, cfg, probe, progress=False).history
        shutil.rmtree(probe)
        readings.append(float(np.diff(h["seconds"].to_numpy())[2:].mean()))  # the first steps warm up
    return min(readings)


def speed(predictor, dlib, samples: list[ds.Sample], threads: int = 1, rounds: int = 3) -> tuple[float, float, float]:
    """Faces per second at batch 1 with the landmark box (crop, predict, map back) of the
    predictor and of dlib, timed in alternating rounds on `threads` torch threads (dlib's
    predictor runs on one; at batch 1 a second thread mostly adds synchronisation):
    (predictor's median, dlib's median, median of the rounds' ratios)."""
    data = [(ds.load_image(s.image_path), s.landmarks) for s in samples]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fps = rounds_of({"detector": predictor, "dlib": dlib}, data, rounds)
    finally:
        torch.set_num_threads(before)
    return (float(np.median(fps["detector"])), float(np.median(fps["dlib"])),
            float(np.median(fps["detector"] / fps["dlib"])))


def score(name: str, folder: Path, val_samples: list[ds.Sample], domain_val: list[ds.Sample], dlib,
          speed_samples: list[ds.Sample]) -> dict:
    """One row of the table for a trained detector folder: validation NME with the landmark box
    and the face finder's box, plain, with test-time flipping and with refinement (a second pass),
    the domain validation faces, and speed against dlib at batch 1."""
    row = {}
    for mode, kw in (("", {}), ("_flip", {"flip": True}), ("_refine", {"refine": True})):
        for box in ("landmarks", "detector"):
            if mode == "_flip" and box == "detector":
                continue  # flipping is read with the landmark box only, as before
            found = ev.evaluate(det.Detector(folder, box=box, **kw), val_samples, f"{name} ({box} box{mode})")
            row[f"val_nme_{box}_box{mode}"] = round(float(found.per_image["nme_inter_ocular"].mean() * 100), 2)
            if box == "detector" and not mode:  # faces the finder missed are scored with the landmark box
                row["finder_found"] = round(float((found.per_image["box"] == "detector").mean()), 3)
        if not mode and domain_val:  # how the design carries to the other domain (landmark box); not a criterion
            found = ev.evaluate(det.Detector(folder), domain_val, f"{name} (domain validation faces)")
            row["domain_val_nme"] = round(float(found.per_image["nme_inter_ocular"].mean() * 100), 2)
        fps, dlib_fps, ratio = speed(det.Detector(folder, **kw), dlib, speed_samples)
        if not mode:
            row.update(faces_per_s=round(fps, 1), dlib_faces_per_s=round(dlib_fps, 1))
        row[f"x_dlib{mode}"] = round(ratio, 2)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--minutes", type=float, default=7.0, help="training budget of every variant")
    ap.add_argument("--steps", type=int, default=None,
                    help="train every variant for this many steps instead of --minutes (equal compute for variants "
                         "whose steps cost the same, e.g. recipes of one network, whatever the machine's speed does)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--detector-boxes", nargs="*", default=[], help="variants also run with detector-box jitter")
    ap.add_argument("--folders", nargs="*", default=[], metavar="NAME=PATH",
                    help="also score these trained detector folders (no training)")
    ap.add_argument("--speed-faces", type=int, default=200)
    ap.add_argument("--work", default="/tmp/bench_detector_variants", help="scratch folder for the models")
    add_out_argument(ap)
    args = parse_args(ap, argv)

    params = pipeline.load_params(args.profile)
    detector = params["detector"]
    crops = pipeline.data_dir(args.profile) / "crops"
    if not (crops / "train").is_dir():
        raise SystemExit(f"needs {crops}/train and val: run notebook 01 of profile {args.profile} first")
    errors: list[str] = []
    train_faces = tr.FaceSet(ds.read_dataset(crops / "train", "300w", errors), errors)
    val_samples = ds.read_dataset(crops / "val", "300w", errors)
    val_faces = tr.FaceSet(val_samples, errors)
    domain_val = read_domain_splits(args.profile, "val_", errors)  # e.g. the 5 validation caricatures
    for e in errors:
        print("skipped:", e)
    torch.set_num_threads(detector["train"].get("threads") or torch.get_num_threads())
    dlib = pr.Dlib("landmarks")
    speed_samples = val_samples[:args.speed_faces]
    print(f"{len(train_faces)} training faces, {len(val_faces)} validation faces", flush=True)

    rows = []
    for item in args.folders:
        name, _, folder = item.partition("=")
        if not folder or not (Path(folder) / "config.json").is_file():
            raise SystemExit(f"--folders {item!r}: expected NAME=PATH to a detector folder (with config.json)")
        model = det.load_detector(folder)[0]
        row = {"variant": name, "arch": model.cfg.arch, "input": model.cfg.input_size, "grid": model.cfg.heatmap_size,
               "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "folder": folder}
        row.update(score(name, Path(folder), val_samples, domain_val, dlib, speed_samples))
        rows.append(row)
        print(json.dumps(row), flush=True)

    runs = [(name, VARIANTS[name]) for name in args.variants]
    runs += [(f"{name} + detector boxes", {**VARIANTS[name], **DETECTOR_BOXES}) for name in args.detector_boxes]
    for name, settings in runs:
        d = with_settings(detector, settings, "detector", params)
        mcfg = NetworkConfig(**d["model"])
        work = Path(args.work) / name.replace(" ", "_").replace("/", "").replace("(", "").replace(")", "")
        shutil.rmtree(work, ignore_errors=True)
        if args.steps:
            steps = args.steps
        else:
            per_step = seconds_per_step(mcfg, d["train"], train_faces, work)
            steps = int(args.minutes * 60 / per_step / 1.05)  # ~5% for validation and checkpoints
        train = copy.deepcopy(d["train"])
        train.update(steps=steps, warmup=min(train["warmup"], steps // 10), val_every=max(1, steps // 8),
                     checkpoint_every=max(1, steps // 4))
        t0 = time.time()
        result = tr.train(train_faces, val_faces, mcfg, tr.TrainConfig.from_dict(train), work / "detector",
                          progress=False)
        minutes = (time.time() - t0) / 60
        row = {"variant": name, "arch": mcfg.arch, "input": mcfg.input_size, "grid": mcfg.heatmap_size,
               "params_M": round(sum(p.numel() for p in det.load_detector(work / "detector")[0].parameters()) / 1e6, 2),
               "steps": steps, "minutes": round(minutes, 1),
               "val_nme_selection": round(float(result.history["val_nme"].min()), 2)}
        row.update(score(name, work / "detector", val_samples, domain_val, dlib, speed_samples))
        rows.append(row)
        print(json.dumps(row), flush=True)

    table = pd.DataFrame(rows)
    budget = f"equal steps ({args.steps} each" if args.steps else f"equal CPU time ({args.minutes:g} min of training each"
    head = (f"Real-only detector designs at {budget}, "
            f"{args.profile} profile, {torch.get_num_threads()} threads). NME (inter-ocular, %) on the "
            f"{len(val_faces)} real validation faces (domain_val_nme: on the {len(domain_val)} domain validation "
            f"faces, val_* splits, landmark box); speed at batch 1, crop included, against dlib's 68-point "
            f"predictor timed in alternating rounds beside each variant (x_dlib: the median of the rounds' "
            f"ratios), both on one thread; the detectors as predictors run them (``network.for_inference``); "
            f"_flip: with test-time flipping (``Detector(flip=True)``); _refine: with a second pass on the upright "
            f"crop the first pass's landmarks frame (``Detector(refine=True)``).")
    write_table(table, head, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
