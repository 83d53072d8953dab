"""Detector speed at batch 1 on this machine's CPU: crop to the landmark box,
predict, map back (no face detection), next to dlib's 68-point predictor on
the same faces and boxes. Prints figures; asserts nothing.

    ./study run python -m benchmarks.bench_detector --profile cpu [--threads 1] [--rounds 5]

One thread by default: dlib's predictor runs on one, and at batch 1 a second torch
thread mostly adds synchronisation (and collapses when another process holds a core).

Machines here change speed from one minute to the next, so the predictors are timed
in alternating rounds (each round: every predictor once over all faces) and the
ratio to dlib is taken within each round; the summary gives the median and the range
over rounds. Beside the predictor as the evaluation runs it (batch norms folded,
channels-last: ``lib.detector.network.for_inference``; network and decoding as one traced
graph: ``lib.detector.model.LandmarkGraph``) it times the same folded copy run eagerly
(``eager``) and the weights as trained (``unfolded``), to show what each step buys.

Uses the profile's trained detector (models/<profile>/detector_real) if it
exists, else the profile's network with random weights (same speed). ``--compare FOLDER...``
times other detector folders (e.g. an earlier profile's detector) in the same rounds, so
their ratios to dlib and to the profile's detector come from one run."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lib.core import crop as cr
from lib.data import data_prep
from lib.data import datasets as ds
from lib.detector import model as det
from lib import pipeline
from lib.evaluation import predictors as pr
from lib.detector.network import NetworkConfig, build_network
from lib.data.procedural import render_face


def faces(profile: str, n: int):
    d = pipeline.data_dir(profile)
    if (d / "manifests").is_dir():
        split = [s for s in data_prep.splits(d) if s.startswith("test")][0]
        samples = data_prep.load_split(d, split)[:n]
        return [(ds.load_image(s.image_path), s.landmarks) for s in samples], split
    return [(f.image, f.landmarks) for f in (render_face(i, "photo", 256) for i in range(n))], "procedural"


def faces_per_second(predictor, data) -> float:
    """Faces per second at batch 1 on (image, landmarks) pairs, each given its tight landmark
    box (the predictor crops, predicts and maps back), after 5 warm-up faces."""
    for img, pts in data[:5]:
        predictor.predict(img, cr.box_from_landmarks(pts, 0.0))
    t0 = time.perf_counter()
    for img, pts in data:
        predictor.predict(img, cr.box_from_landmarks(pts, 0.0))
    return len(data) / (time.perf_counter() - t0)


def rounds_of(predictors: dict, data, rounds: int) -> dict[str, np.ndarray]:
    """Faces per second of each predictor in each round, in alternating order."""
    names = list(predictors)
    fps = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fps[name].append(faces_per_second(predictors[name], data))
    return {name: np.array(v) for name, v in fps.items()}


def describe(c) -> str:
    """A network's design in a few words, e.g. "hourglass, 1 stack, 96 ch, 64 px"."""
    if c.arch == "hourglass":
        return f"hourglass, {c.stacks} stack, {c.channels} ch, {c.input_size} px"
    return f"{c.arch}, {c.input_size} px / {c.heatmap_size} grid"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compare", nargs="*", default=[], help="other detector folders timed in the same rounds")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    folder = pipeline.models_dir(a.profile) / "detector_real"
    if not (folder / "model.safetensors").exists():
        cfg = NetworkConfig(**pipeline.load_params(a.profile)["detector"]["model"])
        folder = Path(tempfile.mkdtemp()) / "untrained"
        det.save_detector(folder, build_network(cfg).eval(), 0.25)
        print("(no trained detector for this profile: timing its network with random weights)")
    detector = det.Detector(folder)
    eager = det.Detector(folder)
    eager.graph = eager.model  # the folded copy, layer by layer
    unfolded = det.Detector(folder)
    unfolded.graph, _ = det.load_detector(folder)
    unfolded.channels_last = False
    data, source = faces(a.profile, a.n)
    c = detector.model.cfg
    params = sum(p.numel() for p in unfolded.graph.parameters()) / 1e6
    name = f"detector ({describe(c)}, {params:.2f} M params)"
    print(f"faces: {len(data)} from {source}; threads: {torch.get_num_threads()}; {a.rounds} alternating rounds")
    others = {}
    for path in a.compare:
        other = det.Detector(path)
        others[f"{path} ({describe(other.model.cfg)})"] = other
    fps = rounds_of({name: detector, f"{name}, eager": eager, f"{name}, unfolded": unfolded, **others,
                     "dlib 68-point shape predictor": pr.Dlib("landmarks")}, data, a.rounds)
    dlib = fps["dlib 68-point shape predictor"]
    for key, v in fps.items():
        print(f"{key}: {np.median(v):.1f} faces/s median ({1000 / np.median(v):.2f} ms/face, batch 1; "
              f"rounds {v.min():.0f}-{v.max():.0f})")
    t0 = time.perf_counter()
    for img, pts in data:  # the crop alone, as the detector makes it
        cr.crop(img, cr.grow(cr.box_from_landmarks(pts, 0.0), detector.margin), c.input_size)
    crop_ms = (time.perf_counter() - t0) / len(data) * 1000
    print(f"of which the crop: {crop_ms:.2f} ms/face ({crop_ms * np.median(fps[name]) / 10:.0f}% of the detector's time)")
    for key in (name, f"{name}, eager", f"{name}, unfolded", *others):
        ratio = fps[key] / dlib
        print(f"{key} / dlib speed: {np.median(ratio):.2f}x median of the rounds' ratios "
              f"(range {ratio.min():.2f}-{ratio.max():.2f})")
    for key in others:
        ratio = fps[name] / fps[key]
        print(f"{name} / {key}: {np.median(ratio):.2f}x (range {ratio.min():.2f}-{ratio.max():.2f})")
    for label, a_key, b_key in (("graph / eager", name, f"{name}, eager"),
                                ("eager folded / unfolded", f"{name}, eager", f"{name}, unfolded")):
        gain = fps[a_key] / fps[b_key]
        print(f"{label}: {np.median(gain):.2f}x (range {gain.min():.2f}-{gain.max():.2f})")


if __name__ == "__main__":
    main()
