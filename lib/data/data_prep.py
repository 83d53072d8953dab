"""Data preparation: read every source of a profile, split it, crop each face
to the model's input size, and write manifests and a summary.

Output, under ``data/<profile>/``:
- ``manifests/<split>.csv``: one row per face (image path, original landmarks);
- ``crops/<split>/<id>.jpg`` + ``.pts``: face crops in the 300-W layout;
  ids are unique (see ``_assign``; a file whose id is taken is reported and skipped);
- ``summary.json``: counts per split and every skipped file with its reason.

Split rules (fixed, documented in the README):
- training sources: a face goes to ``val`` when the MD5 of its id, as an
  integer, modulo 1000 is below ``val_fraction * 1000``; otherwise ``train``;
- few-shot sources (``fewshot: K`` of n faces): faces in natural order of
  their file names; rank r (0-based) goes to ``fewshot_<domain>`` when
  floor((r+1)K/n) > floor(rK/n), i.e. K evenly spaced faces (every second
  one when K = n/2), the rest to the source's test split;
- validation faces of a domain (``val: V``): the same rule applied to the faces
  that few-shot left (in the same order) sends V evenly spaced ones to
  ``val_<domain>``, for choices made on that domain (never on its test faces).
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..core.progress import track
from ..core import crop as cr
from . import datasets as ds
from . import procedural

MANIFEST_FIELDS = ["id", "image", "split", "source", "domain", "width", "height", "landmarks"]


def natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def is_validation(sample_id: str, fraction: float) -> bool:
    h = int(hashlib.md5(sample_id.encode()).hexdigest(), 16)
    return h % 1000 < round(fraction * 1000)


def holdout(samples: list[ds.Sample], fraction: float, seed: int = 0) -> tuple[list[ds.Sample], list[ds.Sample]]:
    """(kept, held out): the validation rule above applied to each sample's image name,
    for sets that come without a validation split (synthetic and baseline sets).

    ``seed`` 0 hashes the name alone; another seed hashes ``"<seed>/<name>"``, which draws
    another held-out part of about the same size (repeated fine-tunes vary their split)."""
    kept, held = [], []
    for s in samples:
        name = Path(s.image_path).name
        (held if is_validation(name if seed == 0 else f"{seed}/{name}", fraction) else kept).append(s)
    return kept, held


def render_procedural(cfg: dict, out: Path) -> list[dict]:
    """Draw the procedural data set in the 300-W layout and return its sources.

    Photo-like faces stand in for real faces (train/val/test); every other
    style is a domain with few-shot and test faces. Disjoint seed ranges
    keep splits apart. Existing files are kept (rendering is deterministic)."""
    size, seed = cfg["size"], cfg["seed"]
    plan = [("photo", "train", cfg["train"]), ("photo", "test", cfg["test"])]
    val = cfg.get("val", 0)  # validation faces per domain (val_<domain>)
    plan += [(d, "domain", cfg["fewshot"] * 2 + cfg["test"] + val) for d in cfg["domains"]]
    sources, offset = [], seed * 1_000_000
    for style, part, n in plan:
        rel = f"{style}/{part}"
        procedural.write_set(out / rel, n, offset, style, size, prefix=f"{style}_{part}")
        offset += n
        if part == "train":
            sources.append({"path": rel, "format": "300w", "split": "train", "domain": "photo"})
        elif part == "test":
            sources.append({"path": rel, "format": "300w", "split": "test_photo", "domain": "photo"})
        else:
            sources.append({"path": rel, "format": "300w", "split": f"test_{style}", "domain": style,
                            "fewshot": cfg["fewshot"], "val": val})
    return sources


def _assign(samples: list[ds.Sample], src: dict, val_fraction: float):
    """Yield (sample, split, id) following the documented split rules; ids come
    from the path relative to the data root, so splits do not depend on where
    the data lives: ``<source path>_<file stem>``, or ``<source path>_<file name>``
    (suffix kept) for files whose stem another file of the source shares
    (``x.jpg`` and ``x.png``)."""
    prefix = Path(src["path"]).as_posix().replace("/", "_").strip("._")
    samples = sorted(samples, key=lambda s: natural_key(s.image_path))
    k, v, n = src.get("fewshot", 0), src.get("val", 0), len(samples)
    if k + v > n:
        raise ValueError(f"source {src['path']}: fewshot {k} + val {v} faces asked of {n}")
    stems = Counter(s.name for s in samples)
    left = 0  # faces few-shot has not taken so far (the val rule's rank)
    for rank, s in enumerate(samples):
        sid = f"{prefix}_{s.name if stems[s.name] == 1 else s.image_path.name}"
        split = src["split"]
        if split == "train" and is_validation(sid, val_fraction):
            split = "val"
        elif k and (rank + 1) * k // n > rank * k // n:
            split = f"fewshot_{src['domain']}"
        elif v:
            if (left + 1) * v // (n - k) > left * v // (n - k):
                split = f"val_{src['domain']}"
            left += 1
        yield s, split, sid


def prepare(cfg: dict, out: str | Path, show_progress: bool = True) -> dict:
    """Prepare a profile's data (the ``data`` section of its params) into `out`."""
    out = Path(out)
    root = Path(cfg["root"]) if cfg.get("root") else None
    if cfg.get("procedural"):
        root = out / "raw"
        sources = render_procedural(cfg["procedural"], root)
    else:
        if root is None or not root.is_dir():
            raise FileNotFoundError(
                f"data root {root} not found: set data.root in the profile's params to your copy "
                "of the datasets (see the README's Data section)")
        sources = cfg["sources"]

    errors: list[str] = []
    rows: dict[str, list[dict]] = {}
    counts: dict[str, dict] = {}
    used: dict[str, Path] = {}  # id -> image: ids are unique across the profile
    for src in sources:
        folder = root / src["path"]
        if not folder.is_dir():
            errors.append(f"{folder}: source folder missing")
            continue
        samples = ds.read_dataset(folder, src["format"], errors)
        items = list(_assign(samples, src, cfg["val_fraction"]))
        for s, split, sid in track(items, desc=f"crop {folder.name}", enabled=show_progress):
            if sid in used:  # same file name in two subfolders of a source
                errors.append(f"{s.image_path}: id {sid} already used by {used[sid]}; skipped")
                continue
            try:
                img = ds.load_image(s.image_path)
                pts = ds.check_face(s.landmarks, img.shape, s.image_path)
            except ds.BadInput as exc:
                errors.append(str(exc))
                continue
            box = cr.box_from_landmarks(pts, cfg["margin"])
            crop_img, _, crop_pts = cr.crop(img, box, cfg["crop_size"], pts)
            dst = out / "crops" / split / f"{sid}.jpg"
            ds.save_image(dst, crop_img)
            ds.write_pts(dst.with_suffix(".pts"), crop_pts)
            used[sid] = s.image_path
            rows.setdefault(split, []).append({
                "id": sid, "image": str(s.image_path), "split": split, "source": str(folder),
                "domain": src.get("domain", "photo"), "width": img.shape[1], "height": img.shape[0],
                "landmarks": " ".join(f"{v:.3f}" for v in pts.ravel()),
            })
        counts[str(folder)] = {"read": len(samples)}

    (out / "manifests").mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        with open(out / "manifests" / f"{split}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, MANIFEST_FIELDS)
            w.writeheader()
            w.writerows(split_rows)
    summary = {
        "splits": {k: len(v) for k, v in sorted(rows.items())},
        "domains": {k: sorted({r["domain"] for r in v}) for k, v in sorted(rows.items())},
        "skipped": len(errors),
        "errors": errors,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_split(data_dir: str | Path, split: str) -> list[ds.Sample]:
    """Faces of one split from its manifest (original images, original landmarks)."""
    path = Path(data_dir) / "manifests" / f"{split}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no manifest; run notebook 01 (data prep) for this profile first")
    with open(path, newline="") as fh:
        return [ds.Sample(Path(r["image"]), np.array(r["landmarks"].split(), np.float64).reshape(68, 2),
                          r["source"], {"id": r["id"], "domain": r["domain"], "split": r["split"]})
                for r in csv.DictReader(fh)]


def splits(data_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(data_dir) / "manifests").glob("*.csv"))
