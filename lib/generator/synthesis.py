"""Synthetic landmark data: training landmarks, two random edits each
(``lib/edits.py``), one of the style prompts, and a face drawn to match by a
landmark-guided generator (``lib/diffusion.py``: DDIM + classifier-free
guidance). Also the small multi-domain set of stage 2 and the
geometry-aware style-transfer baseline set, which are written the same way.

Every set is written in the study's ``synthetic`` layout, readable by
``lib.datasets.read_dataset`` and by any 300-W tool: ``<style>/<id>.jpg`` +
``<id>.pts`` (300-W, 1-based) and ``manifest.csv`` (image, style, prompt,
edits, seed, source). Synthesis is deterministic by seed (item i has seed
``seed * 1_000_000 + i``), resumes by skipping items already written, and
shards items across processes when launched with ``accelerate launch``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from ..data import datasets as ds
from . import edits as ed
from ..core.progress import progress as progress_bar, track
from ..core.naming import slug
from . import styles as st

MANIFEST_FIELDS = ["image", "style", "prompt", "edits", "seed", "source"]


def write_manifest(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, MANIFEST_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _done(folder: Path, image: str) -> bool:
    p = folder / image
    return p.exists() and p.with_suffix(".pts").exists()


# ------------------------------------------------------------------ synthesis

def plan(train_points: np.ndarray, styles: list[str], per_style: int, resolution: int, seed: int = 0,
         k_edits: int = 2) -> list[dict]:
    """One item per image to draw: landmarks (a training face, edited twice, fitted
    into the image), style, prompt, seed. A pure function of its arguments."""
    if len(train_points) == 0:
        raise ValueError("no training landmarks to sample from")
    items = []
    for s_i, style in enumerate(styles):
        for j in range(per_style):
            i = s_i * per_style + j
            rng = np.random.default_rng([seed, i])
            src = int(rng.integers(len(train_points)))
            pts, names = ed.random_edits(train_points[src], rng, resolution, k_edits)
            items.append({"image": f"{slug(style)}/{i:06d}.jpg", "style": style, "prompt": st.style_prompt(style),
                          "edits": "+".join(names), "seed": seed * 1_000_000 + i, "source": src, "points": pts})
    return items


def synthesise(pipe, items: list[dict], out: str | Path, resolution: int, steps: int, guidance: float,
               batch_size: int = 32, progress: bool = True) -> list[dict]:
    """Draw every item not yet on disk and write the set; returns the manifest rows."""
    from accelerate import PartialState

    from .diffusion import generate
    out, state = Path(out), PartialState()
    mine = items[state.process_index::state.num_processes]
    todo = [it for it in mine if not _done(out, it["image"])]
    bar = progress_bar(len(mine), len(mine) - len(todo), f"synthesise {out.name}", progress and state.is_main_process)
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        images = generate(pipe, np.array([it["points"] for it in chunk]), [it["prompt"] for it in chunk],
                          [it["seed"] for it in chunk], resolution, steps, guidance, batch_size)
        for it, img in zip(chunk, images):
            path = out / it["image"]
            ds.save_image(path, img)
            ds.write_pts(path.with_suffix(".pts"), it["points"])
        bar.update(len(chunk))
    bar.close()
    state.wait_for_everyone()
    rows = [it for it in items if _done(out, it["image"])]
    if state.is_main_process:
        write_manifest(out, rows)
    return rows


# ------------------------------------------------------------------ re-rendered real faces

def restyle(samples: list[ds.Sample], styles: list[str], per_style: int, out: str | Path, seed: int = 0,
            mean_shape: np.ndarray | None = None, strength: tuple[float, float] = (0.3, 0.8),
            errors: list | None = None) -> list[dict]:
    """Real faces re-rendered in each style by ``lib/styles.py`` (distinct faces per style,
    chosen by seed). With `mean_shape`, the face geometry is also exaggerated by a
    thin-plate spline first (the Face of Art baseline) and the landmarks move with it."""
    out = Path(out)
    rows = []
    order = np.random.default_rng(seed).permutation(len(samples))
    for s_i, style in enumerate(styles):
        for j in track(range(per_style), desc=f"restyle {style}"):
            i = s_i * per_style + j
            s = samples[order[i % len(samples)]]
            row = {"image": f"{slug(style)}/{i:06d}.jpg", "style": style, "prompt": st.style_prompt(style),
                   "edits": "tps_exaggeration" if mean_shape is not None else "", "seed": seed * 1_000_000 + i,
                   "source": s.meta.get("id", s.name)}
            if not _done(out, row["image"]):
                try:
                    img = ds.load_image(s.image_path)
                except ds.BadInput as exc:
                    if errors is None:
                        raise
                    errors.append(str(exc))
                    continue
                rng = np.random.default_rng([seed, i])
                if mean_shape is not None:
                    img, pts = st.geometric_style_transfer(img, s.landmarks, mean_shape, style, rng, strength)
                else:
                    img, pts = st.stylise(img, style, rng), s.landmarks
                ds.save_image(out / row["image"], img)
                ds.write_pts((out / row["image"]).with_suffix(".pts"), pts)
            rows.append(row)
    write_manifest(out, rows)
    return rows


def add_real(samples: list[ds.Sample], style: str, out: str | Path, tag: str = "real") -> list[dict]:
    """Copy real domain faces (e.g. the few-shot caricatures) into a set with their style prompt."""
    out = Path(out)
    rows = []
    for s in samples:
        row = {"image": f"{slug(style)}/{tag}_{s.name}.jpg", "style": style, "prompt": st.style_prompt(style),
               "edits": "", "seed": "", "source": s.meta.get("id", s.name)}
        if not _done(out, row["image"]):
            ds.save_image(out / row["image"], ds.load_image(s.image_path))
            ds.write_pts((out / row["image"]).with_suffix(".pts"), s.landmarks)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ figures

def draw_points(image: np.ndarray, points: np.ndarray, scale: int = 2, colour=(0, 255, 0)) -> np.ndarray:
    """Upscale a small image and draw its landmarks as dots."""
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for x, y in (points + 0.5) * scale - 0.5:
        cv2.circle(big, (int(round(x)), int(round(y))), max(1, scale // 2), colour, -1, cv2.LINE_AA)
    return big


def style_grid(folder: str | Path, rows: list[dict], per_row: int = 8, n: int = 16, points: bool = True) -> np.ndarray:
    """A tiled grid of the first `n` images of `rows` (one style), landmarks drawn."""
    folder = Path(folder)
    tiles = []
    for r in rows[:n]:
        img = ds.load_image(folder / r["image"])
        tiles.append(draw_points(img, ds.read_pts((folder / r["image"]).with_suffix(".pts"))) if points
                     else cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    if not tiles:
        raise ValueError(f"{folder}: no images for this grid")
    from .diffusion import sample_grid
    return sample_grid(np.array(tiles), per_row=per_row)
