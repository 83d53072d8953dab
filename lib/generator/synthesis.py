"""Synthetic landmark data: training landmarks, two random edits each
(``lib/edits.py``), one of the style prompts, and a face drawn to match by a
landmark-guided generator (``lib/generator/sampling.py``: DDIM + classifier-free
guidance). Also the small multi-domain set of stage 2 and the
geometry-aware style-transfer baseline set, which are written the same way.

Every set is written in the study's ``synthetic`` layout, readable by
``lib.datasets.read_dataset`` and by any 300-W tool: ``<style>/<id>.jpg`` +
``<id>.pts`` (300-W, 1-based) and ``manifest.csv`` (image, style, prompt,
edits, seed, source, mode). Two modes: ``noise`` (the paper's: every face drawn from
noise) and ``warp`` (warp-first: the source training face is thin-plate-spline
warped onto its edited landmarks, then restyled by the generator image-to-image
from a strength `s`, so the geometry comes from the warp and the labels stay exact
up to the warp's own error). Synthesis is deterministic by seed (item i has seed
``seed * 1_000_000 + i``), resumes by skipping items already written, and
shards items across processes when launched with ``accelerate launch``.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..data import datasets as ds
from . import edits as ed
from ..core.progress import progress as progress_bar, track
from ..core.training import fingerprint
from ..core.naming import slug
from . import styles as st

MANIFEST_FIELDS = ["image", "style", "prompt", "edits", "seed", "source", "mode"]
MODES = ("noise", "warp")


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
         k_edits: int = 2, edits: list[str] | None = None, exaggeration: tuple[float, float] = (1.3, 2.0)) -> list[dict]:
    """One item per image to draw: landmarks (a training face, edited twice, fitted
    into the image), style, prompt, seed. A pure function of its arguments.

    `edits`: the names to draw from (default: the paper's seven); ``exaggeration``
    scales each face's deviation from the training landmarks' mean by a factor in
    `exaggeration`."""
    if len(train_points) == 0:
        raise ValueError("no training landmarks to sample from")
    edit_fns = ed.edit_set(edits, np.asarray(train_points, np.float64).mean(0), exaggeration)
    items = []
    for s_i, style in enumerate(styles):
        for j in range(per_style):
            i = s_i * per_style + j
            rng = np.random.default_rng([seed, i])
            src = int(rng.integers(len(train_points)))
            pts, names = ed.random_edits(train_points[src], rng, resolution, k_edits, edits=edit_fns)
            items.append({"image": f"{slug(style)}/{i:06d}.jpg", "style": style, "prompt": st.style_prompt(style),
                          "edits": "+".join(names), "seed": seed * 1_000_000 + i, "source": src, "points": pts})
    return items


def warped_sources(items: list[dict], train_images: np.ndarray, train_points: np.ndarray) -> np.ndarray:
    """Warp-first synthesis' init images: per item, its source training face warped
    (``styles.tps_warp``) from its own landmarks onto the item's edited ones."""
    return np.array([st.tps_warp(train_images[int(it["source"])], train_points[int(it["source"])], it["points"])
                     for it in items], np.uint8).reshape(-1, *train_images.shape[1:])


def mode_name(mode: str, strength: float) -> str:
    """The manifest's record of how a set was drawn: ``noise`` or ``warp@<strength>``."""
    if mode not in MODES:
        raise ValueError(f"synthesis mode {mode!r}; known: {', '.join(MODES)}")
    return "noise" if mode == "noise" else f"warp@{strength:g}"


def synthesise(pipe, items: list[dict], out: str | Path, resolution: int, steps: int, guidance: float,
               batch_size: int = 32, progress: bool = True, mode: str = "noise",
               sources: tuple[np.ndarray, np.ndarray] | None = None, strength: float = 1.0,
               mixed_precision: str = "no") -> list[dict]:
    """Draw every item not yet on disk and write the set; returns the manifest rows.

    ``mode="warp"`` needs `sources`, the (images, landmarks) of the training faces the
    items' ``source`` indices point to, at `resolution`, and restyles each warped face
    from `strength`. `mixed_precision`: the sampler's autocast (``sampling.generate``)."""
    from accelerate import PartialState

    from .sampling import generate
    tag = mode_name(mode, strength)
    if mode == "warp" and sources is None:
        raise ValueError("warp-first synthesis needs the source training faces (images, landmarks)")
    out, state = Path(out), PartialState()
    record = set_fingerprint(pipe, items, resolution, steps, guidance, tag, mixed_precision)
    if state.is_main_process:
        _set_aside_if_stale(out, record)
        out.mkdir(parents=True, exist_ok=True)  # recorded before drawing, so an interrupted set resumes
        (out / "synthesis.json").write_text(json.dumps({"fingerprint": record, "mode": tag}, indent=2))
    state.wait_for_everyone()
    mine = items[state.process_index::state.num_processes]
    todo = [it for it in mine if not _done(out, it["image"])]
    bar = progress_bar(len(mine), len(mine) - len(todo), f"synthesise {out.name}", progress and state.is_main_process)
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        init = warped_sources(chunk, *sources) if mode == "warp" else None
        images = generate(pipe, np.array([it["points"] for it in chunk]), [it["prompt"] for it in chunk],
                          [it["seed"] for it in chunk], resolution, steps, guidance, batch_size,
                          init_images=init, strength=strength if mode == "warp" else 1.0,
                          mixed_precision=mixed_precision)
        for it, img in zip(chunk, images):
            path = out / it["image"]
            ds.save_image(path, img)
            ds.write_pts(path.with_suffix(".pts"), it["points"])
        bar.update(len(chunk))
    bar.close()
    state.wait_for_everyone()
    rows = [{**it, "mode": tag} for it in items if _done(out, it["image"])]
    if state.is_main_process:
        write_manifest(out, rows)
        (out / "synthesis.json").write_text(json.dumps({"fingerprint": record, "mode": tag, "images": len(rows)}, indent=2))
    return rows


def set_fingerprint(pipe, items: list[dict], resolution: int, steps: int, guidance: float, mode: str,
                    mixed_precision: str = "no") -> str:
    """What a synthetic set is drawn from: the generator's weights, the plan (names,
    prompts, seeds, landmarks) and the sampler settings (its precision only where it is not float32,
    so sets drawn before the setting existed keep their fingerprint)."""
    nets = [getattr(pipe, name, None) for name in ("unet", "controlnet", "vae")]
    weights = [v.detach().cpu().float().numpy() for net in nets if net is not None for v in net.state_dict().values()]
    plan = [(it["image"], it["prompt"], int(it["seed"]), np.asarray(it["points"], np.float64)) for it in items]
    sampler = [resolution, steps, float(guidance), mode] + ([mixed_precision] if mixed_precision != "no" else [])
    return fingerprint(weights, plan, *sampler)


def _set_aside_if_stale(out: Path, record: str) -> None:
    """Images on disk drawn by another generator or plan are not resumed: the old set is
    moved aside to ``<out>.stale-<time>`` (never deleted) and the set is drawn anew."""
    meta = out / "synthesis.json"
    has_images = out.exists() and any(out.rglob("*.jpg"))
    if not has_images or (meta.exists() and json.loads(meta.read_text()).get("fingerprint") == record):
        return
    aside = out.with_name(f"{out.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"{out}: drawn by another generator, plan or sampler setting; moved aside to {aside.name}, drawing anew")
    out.rename(aside)


def sweep_items(points: np.ndarray, styles: list[str], n: int, resolution: int, seed: int = 0, k_edits: int = 2,
                edits: list[str] | None = None, exaggeration: tuple[float, float] = (1.3, 2.0)) -> list[dict]:
    """`n` items for choosing the guidance and the warp strength on **validation** faces: face ``k % len(points)``
    edited as `plan` edits, styles cycling through `styles` (those the style judge knows)."""
    edit_fns = ed.edit_set(edits, np.asarray(points, np.float64).mean(0), exaggeration)
    items = []
    for k in range(n):
        rng = np.random.default_rng([seed, 7, k])
        src = k % len(points)
        pts, names = ed.random_edits(points[src], rng, resolution, k_edits, edits=edit_fns)
        style = styles[k % len(styles)]
        items.append({"style": style, "prompt": st.style_prompt(style), "edits": "+".join(names),
                      "seed": seed * 1_000_000 + k, "source": src, "points": pts})
    return items


def strength_sweep(pipe, items: list[dict], images: np.ndarray, points: np.ndarray, strengths: list[float],
                   judge, classifier, resolution: int, steps: int, guidance: float,
                   mixed_precision: str = "no") -> tuple[pd.DataFrame, dict]:
    """Warp-first synthesis of `items` (from `sweep_items`, sources `images`/`points`) at each
    strength, scored as the study scores generators: the `judge`'s NME (landmark box,
    inter-ocular, %) against the edited landmarks, and the share of faces the style
    `classifier` assigns to the requested style (%). Strength 0 is the warped faces
    themselves (no restyling). Returns the table and the faces drawn per strength."""
    from .sampling import generate
    warped = warped_sources(items, images, points)
    pts = np.array([it["points"] for it in items])
    wanted = np.array([it["style"] for it in items])
    rows, faces = [], {}
    for s in [0.0, *strengths]:
        drawn = warped if s == 0 else generate(pipe, pts, [it["prompt"] for it in items], [it["seed"] for it in items],
                                               resolution, steps, guidance, init_images=warped, strength=s,
                                               mixed_precision=mixed_precision)
        rows.append({"strength": s, **score_faces(drawn, pts, wanted, judge, classifier)})
        faces[s] = drawn
    return pd.DataFrame(rows), faces


def guidance_sweep(pipe, items: list[dict], guidances: list[float], judge, classifier, resolution: int,
                   steps: int, mixed_precision: str = "no") -> tuple[pd.DataFrame, dict]:
    """Synthesis from noise of `items` (from `sweep_items`, on validation landmarks) at each
    classifier-free guidance scale, scored as `strength_sweep` scores: the `judge`'s NME
    against the (edited) landmarks and the style `classifier`'s accuracy on the requested
    style (%). Same seeds at every scale, so rows differ only by the guidance. Returns the
    table and the faces drawn per scale."""
    from .sampling import generate
    pts = np.array([it["points"] for it in items])
    wanted = np.array([it["style"] for it in items])
    rows, faces = [], {}
    for g in guidances:
        t0 = time.perf_counter()
        drawn = generate(pipe, pts, [it["prompt"] for it in items], [it["seed"] for it in items], resolution, steps,
                         float(g), mixed_precision=mixed_precision)
        rows.append({"guidance": float(g), **score_faces(drawn, pts, wanted, judge, classifier),
                     "seconds": round(time.perf_counter() - t0, 1)})
        faces[float(g)] = drawn
    return pd.DataFrame(rows), faces


def choose_guidance(table: pd.DataFrame, reference_nme: float, max_ratio: float) -> float:
    """The guidance scale with the highest style accuracy among those whose alignment NME is
    at most `max_ratio` x `reference_nme` (the judge on real validation faces, as for the
    warp-first strength): as much style as the labels allow. Ties go to the smaller scale
    (cheaper and closer to the conditional model); if no scale qualifies, the best-aligned one."""
    ok = table[table["alignment_nme"] <= max_ratio * reference_nme]
    if not len(ok):
        ok = table[table["alignment_nme"] == table["alignment_nme"].min()]
    best = ok[ok["style_accuracy"] == ok["style_accuracy"].max()]
    return float(best["guidance"].min())


def score_faces(drawn: np.ndarray, points: np.ndarray, wanted: np.ndarray, judge, classifier) -> dict:
    """A sweep row's scores of generated faces: their count, the `judge`'s mean NME against
    `points` (%) and the share the style `classifier` assigns to the `wanted` styles (%)."""
    return {"faces": len(drawn), "alignment_nme": float(judge_nme(judge, drawn, points).mean()),
            "style_accuracy": float(np.mean(np.array(classifier.predict(list(drawn))) == np.asarray(wanted))) * 100}


def judge_nme(judge, images, points: np.ndarray) -> np.ndarray:
    """Per face: a judge's landmarks (in the landmark box) against `points`, inter-ocular NME in %."""
    from ..core import crop as cr
    from ..core import metrics
    return np.array([metrics.nme_per_image(judge.predict(img, cr.box_from_landmarks(p, 0.0)).landmarks, p,
                                           "inter_ocular") * 100 for img, p in zip(images, points)], np.float64)


def edit_control(judge, images: np.ndarray, points: np.ndarray, edited_points: np.ndarray | None = None,
                 k: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The judge's own cost of the landmark edits: its NME (%) per face on real `images`
    ((N, R, R, 3)) against `points`, and on the same faces warped by the thin-plate spline
    of warp-first synthesis onto `edited_points` (default: `k` random edits of each face's
    landmarks, the paper's seven as synthesis draws them, seeded by (`seed`, face index)),
    whose labels then hold by construction. A generator's faces cannot be read better on
    edited landmarks than real faces of that shape: its edited / unedited alignment ratio
    is its own only beyond the ratio of these two."""
    if edited_points is None:
        edited_points = np.array([ed.random_edits(p, np.random.default_rng([seed, i]), images.shape[2], k)[0]
                                  for i, p in enumerate(points)]).reshape(-1, *np.shape(points)[1:])
    if not len(images) == len(points) == len(edited_points):
        raise ValueError(f"{len(images)} images, {len(points)} landmark sets, {len(edited_points)} edited sets")
    warped = np.stack([st.tps_warp(im, p, e) for im, p, e in zip(images, points, edited_points)])
    return judge_nme(judge, images, points), judge_nme(judge, warped, edited_points)


def choose_strength(table: pd.DataFrame, reference_nme: float, max_ratio: float) -> float:
    """The largest swept strength (> 0) whose alignment NME is at most `max_ratio` x
    `reference_nme` (the judge on real validation faces): as much restyling as the labels
    allow. If none qualifies, the smallest strength."""
    swept = table[table["strength"] > 0]
    ok = swept[swept["alignment_nme"] <= max_ratio * reference_nme]
    return float(ok["strength"].max() if len(ok) else swept["strength"].min())


# ------------------------------------------------------------------ re-rendered real faces

def restyle(samples: list[ds.Sample], styles: list[str], per_style: int, out: str | Path, seed: int = 0,
            mean_shape: np.ndarray | None = None, strength: tuple[float, float] = (0.3, 0.8),
            errors: list | None = None, domain_shapes: np.ndarray | None = None) -> list[dict]:
    """Real faces re-rendered in each style by ``lib/styles.py`` (distinct faces per style,
    chosen by seed). With `mean_shape`, the face geometry is also exaggerated by a
    thin-plate spline first (the Face of Art baseline) and the landmarks move with it.
    With `domain_shapes` instead (e.g. the landmarks of the few real caricatures), the face is
    warped toward one of those shapes (``styles.shape_transfer``, weight drawn from `strength`)."""
    if mean_shape is not None and domain_shapes is not None:
        raise ValueError("restyle: give mean_shape (exaggeration) or domain_shapes (shape transfer), not both")
    out = Path(out)
    tag = "tps_exaggeration" if mean_shape is not None else "tps_shape_transfer" if domain_shapes is not None else ""
    rows = []
    order = np.random.default_rng(seed).permutation(len(samples))
    for s_i, style in enumerate(styles):
        for j in track(range(per_style), desc=f"restyle {style}"):
            i = s_i * per_style + j
            s = samples[order[i % len(samples)]]
            row = {"image": f"{slug(style)}/{i:06d}.jpg", "style": style, "prompt": st.style_prompt(style),
                   "edits": tag, "seed": seed * 1_000_000 + i,
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
                elif domain_shapes is not None:
                    pts = st.shape_transfer(s.landmarks, domain_shapes, rng, strength)
                    img = st.stylise(st.tps_warp(img, s.landmarks, pts), style, rng)
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
    from .sampling import sample_grid
    return sample_grid(np.array(tiles), per_row=per_row)
