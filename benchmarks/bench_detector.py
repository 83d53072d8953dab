"""Detector speed at batch 1 on this machine's CPU: crop to the landmark box,
predict, map back (no face detection), next to dlib's 68-point predictor on
the same faces and boxes. Prints figures; asserts nothing.

    ./study run python -m benchmarks.bench_detector --profile cpu [--threads 1]

One thread by default: dlib's predictor runs on one, and at batch 1 a second torch
thread mostly adds synchronisation (and collapses when another process holds a core).

Uses the profile's trained detector (models/<profile>/detector_real) if it
exists, else the profile's network with random weights (same speed)."""
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    folder = pipeline.ROOT / "models" / a.profile / "detector_real"
    if not (folder / "model.safetensors").exists():
        cfg = NetworkConfig(**pipeline.load_params(a.profile)["detector"]["model"])
        folder = Path(tempfile.mkdtemp()) / "untrained"
        det.save_detector(folder, build_network(cfg).eval(), 0.25)
        print("(no trained detector for this profile: timing its network with random weights)")
    detector = det.Detector(folder)
    data, source = faces(a.profile, a.n)
    c = detector.model.cfg
    params = sum(p.numel() for p in detector.model.parameters()) / 1e6
    print(f"faces: {len(data)} from {source}; threads: {torch.get_num_threads()}")
    speeds = []
    for name, p in ((f"detector ({c.stacks} stack, {c.channels} ch, {c.input_size} px, {params:.2f} M params)",
                     detector), ("dlib 68-point shape predictor", pr.Dlib("landmarks"))):
        fps = faces_per_second(p, data)
        print(f"{name}: {fps:.1f} faces/s ({1000 / fps:.2f} ms/face, batch 1)")
        speeds.append(fps)
    t0 = time.perf_counter()
    for img, pts in data:  # the crop alone, as the detector makes it
        cr.crop(img, cr.grow(cr.box_from_landmarks(pts, 0.0), detector.margin), c.input_size)
    crop_ms = (time.perf_counter() - t0) / len(data) * 1000
    print(f"of which the crop: {crop_ms:.2f} ms/face ({crop_ms * speeds[0] / 10:.0f}% of the detector's time)")
    print(f"detector / dlib speed: {speeds[0] / speeds[1]:.2f}x")


if __name__ == "__main__":
    main()
