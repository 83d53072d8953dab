"""Throughput of data preparation (images/s) and of the evaluation command
(faces/s per predictor). Prints figures; asserts nothing.

    ./study run python -m benchmarks.bench_data_eval            # procedural faces
    ./study run python -m benchmarks.bench_data_eval --real ../shared/data
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lib.data import data_prep
from lib.data import datasets as ds
from lib.evaluation import evaluate as ev
from lib.evaluation import predictors as pr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", help="data root; benchmarks on 300w/lfpw/testset instead of procedural faces")
    ap.add_argument("--n", type=int, default=120, help="procedural faces to draw")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.real:
            cfg = {"root": a.real, "crop_size": 256, "margin": 0.25, "val_fraction": 0.1,
                   "sources": [{"path": "300w/lfpw/testset", "format": "300w", "split": "test"}]}
        else:
            t0 = time.perf_counter()
            data_prep.render_procedural({"size": 256, "seed": 7, "train": a.n, "test": 0, "fewshot": 0,
                                         "domains": []}, tmp / "raw")
            dt = time.perf_counter() - t0
            print(f"procedural rendering: {a.n} faces in {dt:.1f} s = {a.n / dt:.1f} faces/s (256 px)")
            cfg = {"root": str(tmp / "raw"), "crop_size": 256, "margin": 0.25, "val_fraction": 0.0,
                   "sources": [{"path": "photo/train", "format": "300w", "split": "test"}]}
        t0 = time.perf_counter()
        summary = data_prep.prepare(cfg, tmp / "out", show_progress=False)
        dt = time.perf_counter() - t0
        n = summary["splits"]["test"]
        print(f"data prep (read, validate, crop to 256, write): {n} images in {dt:.1f} s = {n / dt:.1f} images/s")
        samples = data_prep.load_split(tmp / "out", "test")
        shapes = np.array([s.landmarks for s in samples])
        for name in ("mean_shape", "dlib_box", "dlib"):
            p = pr.build(name, shapes)
            t0 = time.perf_counter()
            df = ev.evaluate(p, samples)
            dt = time.perf_counter() - t0
            print(f"evaluation, {p.name:22s}: {len(df)} faces in {dt:.1f} s = {len(df) / dt:.1f} faces/s "
                  f"(NME {df['nme_inter_ocular'].mean() * 100:.2f}%)")


if __name__ == "__main__":
    main()
