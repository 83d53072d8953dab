"""Evaluation: run a predictor over annotated faces, score it, and the
command-line tool modelled on the ``test`` / ``test_image`` modes of the
paper's released ``test.py``.

    python -m lib.evaluation --images DIR --predictor dlib --out OUT
        DIR holds images with landmark files (any supported layout):
        writes OUT/metrics.json and OUT/per_image.csv and prints NME/FR/AUC.
        Faces that fail the data-prep check (``datasets.check_face``: image at
        least 32 px a side, 68 finite points inside the image, eye corners
        apart) are skipped and listed with the reason.
    python -m lib.evaluation --images DIR --predictor dlib --out OUT --mode predict
        DIR holds images only: writes a .pts file and a drawing per image.

Predict mode's outputs mirror each image's path relative to DIR: DIR/a/face.jpg
gives OUT/a/face.pts and OUT/a/face_landmarks.jpg. Where two images of one
folder share a stem (face.jpg, face.png) both keep their suffix in the name:
OUT/face.jpg.pts, OUT/face.jpg_landmarks.jpg, OUT/face.png.pts, ...

Nothing that is not the command's own is ever replaced. Every file it writes in
OUT is listed in OUT/written_by_lib_evaluation.txt (``RECORD``); only those may be
replaced, and only with ``--overwrite``. A file in the way that the record does not
list (an input image, a ground-truth .pts, a user's own face_landmarks.jpg or
metrics.json) is an error, with or without ``--overwrite``. An OUT that is DIR or
inside it needs ``--overwrite`` too; the images the record lists (earlier drawings)
and, where OUT lies inside DIR, the images under OUT are not read as inputs. Each
file is written to a temporary name and renamed into place (``datasets.write_atomic``),
so a failed write (a full disk) leaves no truncated file and names the file. The
summary counts the images written and skipped (with reasons).

Exit codes: 0 done; 1 predict mode wrote nothing (every image skipped); 2 an
error before or instead of the work (missing or empty folder, unusable
detector folder or --mean-from folder, --out an existing file or not writable,
outputs that exist, a failed write).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..core.progress import track
from ..core import crop as cr
from ..data import datasets as ds
from ..core import metrics
from ..core.naming import slug
from ..core.predictor import Predictor
from . import predictors as pr
from . import statistics as st

TABLE_COLUMNS = ["method", "test_set", "n", "nme", "fr_10", "auc_10", "box", "nme_ci_low", "nme_ci_high", "seeds",
                 "nme_seed_sd"]
PAIRED_COLUMNS = ["method", "baseline", "test_set", "n", "nme", "baseline_nme", "delta", "ci_low", "ci_high", "p_value",
                  "seeds"]


@dataclass
class Evaluation:
    """Per-face errors (one row per face: image, id, box protocol, NME under each
    normalisation) and the predicted landmarks in the same order."""
    per_image: pd.DataFrame
    predictions: np.ndarray  # (N, 68, 2)


def evaluate(predictor: Predictor, samples: list[ds.Sample], desc: str = "evaluate",
             errors: list | None = None) -> Evaluation:
    """Score `predictor` on `samples` (original images). The predictor receives
    the tight landmark box and frames it with its own crop margin.

    Unreadable images and faces that fail ``datasets.check_face`` (the check of
    data prep) are reported in `errors` and skipped; without `errors` they raise
    BadInput."""
    rows, preds = [], []
    for s in track(samples, desc=desc):
        try:
            img = ds.load_image(s.image_path)
            ds.check_face(s.landmarks, img.shape, s.image_path)
        except ds.BadInput as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        p = predictor.predict(img, cr.box_from_landmarks(s.landmarks, 0.0))
        row = {"image": str(s.image_path), "id": s.meta.get("id", s.name), "box": p.box}
        for norm in metrics.NORMALISERS:
            row[f"nme_{norm}"] = float(metrics.nme_per_image(p.landmarks, s.landmarks, norm))
        rows.append(row)
        preds.append(p.landmarks)
    return Evaluation(pd.DataFrame(rows), np.array(preds).reshape(-1, 68, 2))


def seed_runs(folder: str | Path) -> dict[int, Path]:
    """The runs of a detector folder: ``{seed: folder}`` for a fine-tune trained with several
    seeds (subfolders ``seed<k>/``), else ``{0: folder}``."""
    folder = Path(folder)
    runs = {int(p.name[4:]): p for p in folder.glob("seed*") if p.is_dir() and p.name[4:].isdigit()}
    return dict(sorted(runs.items())) or {0: folder}


def build_methods(cfg: dict, profile: str, train_shapes: np.ndarray) -> dict[str, dict[int, Predictor]]:
    """The predictors of an ``evaluate`` params section, each as ``{seed: predictor}``:
    peers by name (``predictors``, one run each) and trained detector folders
    (``detectors``: name, path with ``{profile}``, box protocol; one predictor per
    ``seed<k>/`` run where the folder holds several)."""
    from ..detector.model import Detector
    methods = {name: {0: pr.build(name, train_shapes)} for name in cfg["predictors"]}
    for d in cfg.get("detectors", []):
        runs = seed_runs(d["path"].format(profile=profile))
        methods[d["name"]] = {k: Detector(f, d.get("box", "landmarks"), d["name"]) for k, f in runs.items()}
    return methods


def evaluate_runs(runs: dict[int, Predictor], samples: list[ds.Sample], desc: str = "evaluate",
                  errors: list | None = None) -> Evaluation:
    """``evaluate`` for each seed of a method; per-face rows of all seeds, with a ``seed``
    column, and the predictions of the first seed."""
    results = {k: evaluate(p, samples, f"{desc} (seed {k})" if len(runs) > 1 else desc, errors)
               for k, p in runs.items()}
    first = next(iter(results.values()))
    per_image = pd.concat([r.per_image.assign(seed=k) for k, r in results.items()], ignore_index=True)
    return Evaluation(per_image, first.predictions)


def _interval(name: str, values: np.ndarray) -> dict:
    """``{name}_ci_low`` / ``{name}_ci_high``: the 95% bootstrap interval of the mean of `values` (NaN if none)."""
    low, high = st.bootstrap_ci(values) if len(values) else (float("nan"), float("nan"))
    return {f"{name}_ci_low": low, f"{name}_ci_high": high}


def alignment(detector: Predictor, classifier, sets: dict[str, Path], controls: dict[str, Path] | None = None) -> pd.DataFrame:
    """Per generator and style: NME between the landmarks a face was drawn from and what
    `detector` finds on it (landmark alignment), and how often `classifier` recognises the
    requested style (prompt adherence; empty for styles it was not trained on).

    `controls`: per generator, a set drawn from the same plan without the landmark edits;
    its faces give ``alignment_nme_unedited`` (and the edited faces of the same items
    ``alignment_nme_edited_matched``), so the edits' cost in alignment is read on the same
    source faces, prompts and seeds.

    Each alignment NME and style accuracy comes with its 95% bootstrap interval over the
    faces (``*_ci_low``, ``*_ci_high``; ``statistics.bootstrap_ci``), so a target such as
    "50% of styles" can be read against what the number of faces resolves."""
    rows = []
    for gen, folder in sets.items():
        samples = ds.read_dataset(folder, "synthetic")
        per = evaluate(detector, samples, desc=f"alignment {gen}").per_image
        per["style"] = [s.meta["style"] for s in samples]
        per["item"] = [s.meta["image"] for s in samples]
        per["predicted_style"] = classifier.predict([ds.load_image(s.image_path) for s in samples])
        control = None
        if controls and gen in controls:
            c_samples = ds.read_dataset(controls[gen], "synthetic")
            control = evaluate(detector, c_samples, desc=f"alignment {gen} (unedited)").per_image
            control["style"] = [s.meta["style"] for s in c_samples]
            control["item"] = [s.meta["image"] for s in c_samples]
        for style, g in [(st, per[per["style"] == st]) for st in dict.fromkeys(per["style"])] + [("all", per)]:
            known = g[g["style"].isin(classifier.classes)]
            hits = (known["predicted_style"] == known["style"]).to_numpy(np.float64) * 100
            row = {"generator": gen, "style": style, "n": len(g),
                   "alignment_nme": float(g["nme_inter_ocular"].mean() * 100),
                   "style_accuracy": float(hits.mean()) if len(known) else float("nan")}
            row.update(_interval("alignment_nme", g["nme_inter_ocular"].to_numpy() * 100))
            row.update(_interval("style_accuracy", hits))
            if control is not None:
                c = control if style == "all" else control[control["style"] == style]
                matched = g[g["item"].isin(set(c["item"]))]
                row.update({"n_unedited": len(c), "alignment_nme_unedited": float(c["nme_inter_ocular"].mean() * 100)
                            if len(c) else float("nan"),
                            "alignment_nme_edited_matched": float(matched["nme_inter_ocular"].mean() * 100)
                            if len(matched) else float("nan")})
            rows.append(row)
    return pd.DataFrame(rows)


def style_confusion(classifier, images, requested) -> pd.DataFrame:
    """What `classifier` makes of faces drawn for the `requested` styles: per requested
    style it knows (rows, in the classifier's order), the share (%) of faces judged as
    each of its styles (columns). The diagonal is the per-style accuracy of ``alignment``;
    a column that fills up shows a style drawn whatever is asked."""
    known = [(im, st) for im, st in zip(images, requested) if st in classifier.classes]
    if not known:
        raise ValueError(f"no face of a style the classifier knows ({', '.join(classifier.classes)})")
    wanted = pd.Series([st for _, st in known], name="requested")
    judged = pd.Series(classifier.predict([im for im, _ in known]), name="judged")
    table = pd.crosstab(wanted, judged, normalize="index") * 100
    return table.reindex(index=[c for c in classifier.classes if c in set(wanted)], columns=classifier.classes,
                         fill_value=0.0)


def box_protocol(per_image: pd.DataFrame) -> str:
    """How the face boxes were found, e.g. 'detector (553), landmarks (fallback) (1)'."""
    counts = per_image["box"].value_counts()
    if len(counts) == 1:
        return counts.index[0]
    return ", ".join(f"{k} ({v})" for k, v in counts.items())


def table_row(method: str, test_set: str, per_image: pd.DataFrame, thresholds=(0.10, 0.08),
              resamples: int = st.RESAMPLES, seed: int = st.SEED) -> dict:
    """One row of the results table. With several seeds (a ``seed`` column) every metric
    is the mean over seeds, ``nme_seed_sd`` their spread, and the NME interval a
    bootstrap over faces of the per-face NME averaged over seeds."""
    groups = [g for _, g in per_image.groupby("seed")] if "seed" in per_image else [per_image]
    rows = []
    for g in groups:
        s = metrics.summarise(g["nme_inter_ocular"].to_numpy(), thresholds)
        rows.append({**s, **{f"nme_{k}": float(g[f"nme_{k}"].mean() * 100) for k in ("inter_pupil", "box_diagonal")}})
    mean = pd.DataFrame(rows).mean().to_dict()
    low, high = st.bootstrap_ci(st.seed_average(per_image).to_numpy() * 100, resamples, seed)
    return {"method": method, "test_set": test_set, **mean, "n": int(rows[0]["n"]), "box": box_protocol(per_image),
            "nme_ci_low": low, "nme_ci_high": high, "seeds": len(groups),
            "nme_seed_sd": st.seed_spread(per_image) * 100}


def paired_table(per_image: dict[tuple[str, str], pd.DataFrame], comparisons: dict[str, list[str]],
                 resamples: int = st.RESAMPLES, seed: int = st.SEED) -> pd.DataFrame:
    """Paired comparisons on the same faces: for each test set and each ``method`` in
    ``comparisons[baseline]``, ``statistics.paired`` of the seed-averaged per-face NME (%)
    of the method against that of the baseline. ``per_image`` maps (test set, method)
    to the per-face rows of ``evaluate_runs``."""
    rows = []
    for test_set in dict.fromkeys(t for t, _ in per_image):
        for baseline, methods in comparisons.items():
            if (test_set, baseline) not in per_image:
                raise KeyError(f"paired comparisons: no results for the baseline {baseline!r} on {test_set}")
            b = st.seed_average(per_image[test_set, baseline]) * 100
            for method in methods:
                if method == baseline:
                    continue
                if (test_set, method) not in per_image:
                    raise KeyError(f"paired comparisons: no results for {method!r} on {test_set}")
                frame = per_image[test_set, method]
                m = st.seed_average(frame) * 100
                if set(m.index) != set(b.index):
                    raise ValueError(f"paired comparisons on {test_set}: {method!r} and {baseline!r} scored different faces")
                r = st.paired(m.to_numpy(), b.reindex(m.index).to_numpy(), resamples, seed)
                seeds = frame["seed"].nunique() if "seed" in frame else 1
                rows.append({"method": method, "baseline": baseline, "test_set": test_set, **r, "seeds": seeds})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def resolution(per_image: dict[tuple[str, str], pd.DataFrame], comparisons: dict[str, list[str]]) -> pd.DataFrame:
    """Per test set, the smallest NME difference (percentage points) the paired protocol
    resolves (80% power, 5% two-sided), from the spread of the observed per-face
    differences: the median over the comparisons, and their range."""
    rows = []
    for test_set in dict.fromkeys(t for t, _ in per_image):
        mdd = []
        for baseline, methods in comparisons.items():
            b = st.seed_average(per_image[test_set, baseline]) * 100
            for method in (m for m in methods if m != baseline):
                m = st.seed_average(per_image[test_set, method]) * 100
                mdd.append(st.min_detectable_difference(m.to_numpy() - b.reindex(m.index).to_numpy()))
        if mdd:
            rows.append({"test_set": test_set, "n": len(b), "min_detectable_difference": float(np.median(mdd)),
                         "smallest": float(min(mdd)), "largest": float(max(mdd))})
    return pd.DataFrame(rows)


def nme_cell(row) -> str:
    """'11.45 [10.20, 12.81]', with '± sd (3 seeds)' where several seeds were trained."""
    cell = f"{row.nme:.2f}"
    if "nme_ci_low" in row and pd.notna(row.nme_ci_low):
        cell += f" [{row.nme_ci_low:.2f}, {row.nme_ci_high:.2f}]"
    if "seeds" in row and row.seeds > 1:
        cell += f" ± {row.nme_seed_sd:.2f} ({int(row.seeds)} seeds)"
    return cell


def markdown_table(table: pd.DataFrame) -> str:
    """Wide table for people: one row per method, NME with its 95% interval (and the
    seed-to-seed sd where several seeds were trained) / FR@10% / AUC@10% per test set."""
    sets = list(dict.fromkeys(table["test_set"]))
    head = "| method | " + " | ".join(f"{t} NME [95% CI] | {t} FR@10% | {t} AUC@10%" for t in sets) + " | box |"
    lines = [head, "|" + "---|" * (1 + 3 * len(sets) + 1)]
    for method, g in table.groupby("method", sort=False):
        cells = []
        for t in sets:
            r = g[g["test_set"] == t]
            cells += (["-"] * 3 if r.empty else
                      [nme_cell(r.iloc[0]), f"{r.fr_10.iloc[0]:.2f}", f"{r.auc_10.iloc[0]:.4f}"])
        boxes = (g["box"].iloc[0] if g["box"].nunique() == 1
                 else "; ".join(f"{t}: {b}" for t, b in zip(g["test_set"], g["box"])))
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {boxes} |")
    return "\n".join(lines) + "\n"


def paired_markdown(paired: pd.DataFrame, resolved: pd.DataFrame | None = None) -> str:
    """The paired comparisons for people: delta with its interval, p-value, and whether
    the interval excludes zero."""
    lines = ["| method | baseline | test set | n | NME | baseline NME | delta [95% CI] | Wilcoxon p | resolved |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in paired.itertuples():
        verdict = ("better" if r.ci_high < 0 else "worse") if (r.ci_high < 0 or r.ci_low > 0) else "no"
        lines.append(f"| {r.method} | {r.baseline} | {r.test_set} | {r.n} | {r.nme:.2f} | {r.baseline_nme:.2f} | "
                     f"{r.delta:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] | {r.p_value:.3g} | {verdict} |")
    text = "\n".join(lines) + "\n"
    if resolved is not None and len(resolved):
        text += "\nSmallest difference the protocol resolves (80% power, 5% two-sided, from the observed spread):\n"
        text += "".join(f"- {r.test_set} ({r.n} faces): {r.min_detectable_difference:.2f} NME points "
                        f"(range over comparisons {r.smallest:.2f}-{r.largest:.2f})\n" for r in resolved.itertuples())
    return text


# ------------------------------------------------------------------ command line

def draw_landmarks(image: np.ndarray, points: np.ndarray, colour=(0, 255, 0)) -> np.ndarray:
    out = image.copy()
    r = max(1, int(round(max(image.shape[:2]) / 250)))
    for x, y in points:
        cv2.circle(out, (int(round(x)), int(round(y))), r, colour, -1, cv2.LINE_AA)
    return out


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    images = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in ds.IMAGE_SUFFIXES]
    if not images:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(ds.IMAGE_SUFFIXES)})")
    return images


def _load_predictor(name: str, mean_from: str | None, box: str, flip: bool = False, refine: bool = False) -> Predictor:
    if Path(name).is_dir():  # a trained detector folder
        from ..detector.model import Detector
        return Detector(name, box, flip=flip, refine=refine)
    if flip or refine:
        raise ValueError(f"--flip and --refine are options of a trained detector folder, not of --predictor {name}")
    shapes = None
    if name == "mean_shape":
        if not mean_from:
            raise ValueError("--predictor mean_shape needs --mean-from DIR (annotated training faces)")
        errors: list[str] = []
        samples = ds.read_dataset(mean_from, "auto", errors)
        if not samples:
            raise ValueError(f"--mean-from {mean_from}: no usable annotated face to take the mean shape of"
                             + _first_problems(errors))
        if errors:
            print(f"--mean-from {mean_from}: the mean of {len(samples)} faces; {len(errors)} files skipped, "
                  f"e.g. {errors[0]}", file=sys.stderr)
        shapes = np.array([s.landmarks for s in samples])
    return pr.build(name, shapes)


def _first_problems(errors: list[str]) -> str:
    return ("; first problems:\n  " + "\n  ".join(errors[:5])) if errors else ""


def check_out(out: Path) -> None:
    """Refuse an output folder that cannot be one, before any work: an existing
    file, or a place below a file or a folder we cannot write to."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: an existing file, expected a folder")
    place = out.absolute()
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise ValueError(f"--out {out}: {place} is a file, so no folder can be made there")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {place} is not writable")


RECORD = "written_by_lib_evaluation.txt"
_RECORD_HEADER = ("# The files python -m lib.evaluation wrote in this folder, one a line. It replaces only these "
                  "(with --overwrite); every other file here is never replaced.")


class OutputRecord:
    """The files this command wrote in an output folder before: ``RECORD`` there, one path
    a line relative to the folder. Only they may be replaced (with ``--overwrite``)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / RECORD
        self.files: set[Path] = set()  # resolved paths
        if self.path.is_file():
            try:
                lines = self.path.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{self.path}: unreadable record of this command's outputs ({exc})") from None
            if not lines or lines[0] != _RECORD_HEADER:
                raise ValueError(f"{self.path}: not a record written by this command; move it or choose another --out")
            self.files = {(self.out / line).resolve() for line in lines[1:] if line.strip()}
        elif self.path.exists():
            raise ValueError(f"{self.path}: not a file; move it or choose another --out")

    def owns(self, path: Path) -> bool:
        return Path(path).resolve() in self.files

    def save(self, files) -> None:
        """Record ``files`` (resolved paths under the folder) as this command's, atomically."""
        self.files = set(files)
        root = self.out.resolve()
        lines = sorted(f.relative_to(root).as_posix() for f in self.files)
        ds.write_atomic(self.path, "\n".join([_RECORD_HEADER, *lines, ""]).encode())

    def keep_existing(self) -> None:
        """Drop the files that are not there (a write that failed or never happened). Where the record
        cannot be written (a full disk), it keeps listing them: files this command meant to write."""
        try:
            self.save({f for f in self.files if f.exists()})
        except OSError:
            pass


def _examples(paths: list[Path], n: int = 3) -> str:
    return ", ".join(map(str, paths[:n])) + (", ..." if len(paths) > n else "")


def check_targets(out: Path, targets: list[Path], record: OutputRecord, overwrite: bool) -> None:
    """Refuse, before any work, outputs that would replace a file this command did not write
    (never allowed) or one it wrote before (allowed with ``overwrite``)."""
    present = [q for q in targets if q.exists() or q.is_symlink()]
    foreign = [q for q in present if not record.owns(q)]
    if foreign:
        kinds = sorted({"landmark files" if q.suffix == ".pts" else "images" if q.suffix.lower() in ds.IMAGE_SUFFIXES
                        else "other files" for q in foreign})
        raise FileExistsError(
            f"--out {out}: {len(foreign)} files there ({' and '.join(kinds)}) would be replaced but were not "
            f"written by this command ({_examples(foreign)}); they are never replaced, not even with --overwrite "
            f"(inputs, ground truth and your own files are kept; this command's outputs are listed in {RECORD}): "
            "choose another --out")
    if present and not overwrite:
        raise FileExistsError(f"--out {out}: {len(present)} output files exist already ({_examples(present)}); "
                              "pass --overwrite to replace them")


TEST_OUTPUTS = ("per_image.csv", "metrics.json")


def check_test_outputs(out: Path, overwrite: bool = False) -> OutputRecord:
    """Test mode's check before any work: metrics.json and per_image.csv may replace only this
    command's own earlier outputs, and only with `overwrite`. Returns the output record."""
    check_out(out)
    record = OutputRecord(out)
    check_targets(out, [out / n for n in TEST_OUTPUTS], record, overwrite)
    return record


def run_test(images_dir: Path, predictor: Predictor, out: Path, fmt: str, overwrite: bool = False) -> dict:
    record = check_test_outputs(out, overwrite)
    images = _images(images_dir)
    errors: list[str] = []
    samples = ds.read_dataset(images_dir, fmt, errors)
    annotated = {s.image_path.resolve() for s in samples}
    drawings = OutputRecord(images_dir) if (images_dir / RECORD).is_file() else None  # predict mode's, not inputs
    unmatched = [p for p in images if p.resolve() not in annotated and not (drawings and drawings.owns(p))]
    if not samples:
        raise ValueError(f"{images_dir}: {len(images)} images but none has a usable landmark file "
                         f"(format {fmt})" + (_first_problems(errors) or "; no landmark files of that layout found"))
    per_image = evaluate(predictor, samples, desc=predictor.name, errors=errors).per_image
    if per_image.empty:
        raise ValueError(f"{images_dir}: no face could be scored" + _first_problems(errors))
    explained = {_error_path(e) for e in errors}
    result = {"predictor": predictor.name, "folder": str(images_dir),
              **table_row(predictor.name, images_dir.name, per_image),
              "skipped": errors + [f"{p}: not listed in the annotations" for p in unmatched
                                   if not _explained(p, explained)]}
    targets = [(out / n).resolve() for n in TEST_OUTPUTS]
    out.mkdir(parents=True, exist_ok=True)
    record.save(record.files | set(targets))  # recorded before they are written: a later run may replace them
    try:
        ds.write_atomic(out / "per_image.csv", per_image.to_csv(index=False).encode())
        ds.write_atomic(out / "metrics.json", json.dumps(result, indent=2).encode())
    finally:
        record.keep_existing()
    return result


def _error_path(error: str) -> Path:
    """The file a reader's error names (its text up to the first ': ')."""
    return Path(error.split(": ", 1)[0])


def _explained(image: Path, named: set[Path]) -> bool:
    """Whether a reader's error already names `image`: the image itself, its landmark file beside it
    (x.pts, x.txt) or elsewhere (CariFace's landmarks_gt/x.jpg.npy)."""
    if image in named or any(image.with_suffix(s) in named for s in (".pts", ".txt")):
        return True
    return any(p.name == f"{image.name}.npy" for p in named)


def output_names(images: list[Path], root: Path) -> dict[Path, Path]:
    """Each image's output name, without suffix, relative to the output folder:
    its path relative to `root` less the suffix, or with the suffix where two
    images of a folder would get the same name (face.jpg + face.png)."""
    names = {p: p.relative_to(root).with_suffix("") for p in images}
    while True:
        seen: dict[Path, list[Path]] = {}
        for p, n in names.items():
            seen.setdefault(n, []).append(p)
        clashes = [p for group in seen.values() if len(group) > 1 for p in group]
        if not clashes:
            return names
        for p in clashes:  # full relative paths are unique, so this ends
            names[p] = p.relative_to(root)


def predict_plan(images_dir: Path, out: Path, overwrite: bool = False) -> tuple[list, list[str], OutputRecord]:
    """(inputs, skipped, record): each image with its .pts and drawing paths, the images
    not read (this command's outputs), and the record of its outputs in `out`. Raises
    before any work where outputs would land in the input folder (unless `overwrite`),
    replace a file this command did not write (never), or replace its own earlier
    outputs (unless `overwrite`)."""
    check_out(out)
    images = _images(images_dir)
    src, dst = images_dir.resolve(), out.resolve()
    if (dst == src or src in dst.parents) and not overwrite:
        raise ValueError(f"--out {out} is the --images folder or inside it: outputs would land among the "
                         "inputs; choose another folder or pass --overwrite")
    record = OutputRecord(out)
    below_out = src in dst.parents  # --out a subfolder of --images: what lies under it is output, not input
    skipped, inputs = [], []
    for p in images:
        if record.owns(p):
            skipped.append(f"{p}: an output of this command (listed in {record.path}), not read")
        elif below_out and dst in p.resolve().parents:
            skipped.append(f"{p}: under --out, an output of this command, not read")
        else:
            inputs.append(p)
    plan = [(p, out / f"{n}.pts", out / f"{n}_landmarks.jpg") for p, n in output_names(inputs, images_dir).items()]
    check_targets(out, [q for _, pts, drawing in plan for q in (pts, drawing)], record, overwrite)
    return plan, skipped, record


def run_predict(images_dir: Path, predictor: Predictor, out: Path, overwrite: bool = False) -> dict:
    """Image-only mode: find the face (the face finder; dlib in detector mode finds its own),
    predict, write .pts and a drawn image (names: ``predict_plan``). Returns
    {"written": [images], "skipped": ["image: reason"]}."""
    from ..core.faces import FaceFinder
    plan, skipped, record = predict_plan(images_dir, out, overwrite)
    own_finder = getattr(predictor, "box_mode", None) == "detector"
    finder = None if own_finder else FaceFinder()
    written = []
    if plan:
        out.mkdir(parents=True, exist_ok=True)
        # recorded before they are written, so that a later run may replace them whatever happens to this one
        record.save(record.files | {q.resolve() for _, pts, drawing in plan for q in (pts, drawing)})
    try:
        for path, pts_path, drawing_path in track(plan, desc="predict", lines=True):
            try:
                img = ds.load_image(path)
                if own_finder:
                    try:
                        pred = predictor.predict(img).landmarks
                    except LookupError as exc:
                        if "no face found" not in str(exc):
                            raise
                        raise LookupError("no face found") from None  # predict mode has no landmark box to fall back on
                else:
                    box = finder.find(img)
                    if box is None:
                        raise LookupError("no face found")
                    pred = predictor.predict(img, box).landmarks
                if not np.isfinite(pred).all():
                    raise LookupError("the predictor returned NaN or infinite points")
            except (ds.BadInput, LookupError) as exc:
                skipped.append(f"{path}: {exc}")
                continue
            ds.write_pts(pts_path, pred)
            ds.save_image(drawing_path, draw_landmarks(img, pred))
            written.append(str(path))
    finally:
        if plan:
            record.keep_existing()
    return {"written": written, "skipped": skipped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.evaluation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, type=Path, help="folder of images (and landmark files)")
    ap.add_argument("--predictor", default="dlib",
                    help="dlib | dlib_box | mean_shape | a trained detector folder (models/<profile>/detector_real)")
    ap.add_argument("--box", choices=["landmarks", "detector"], default="landmarks",
                    help="face box for a trained detector in test mode: the landmark box or dlib's detector")
    ap.add_argument("--flip", action="store_true",
                    help="a trained detector: test-time flipping (the crop and its mirror image, averaged)")
    ap.add_argument("--refine", action="store_true",
                    help="a trained detector: a second pass on the upright crop the first pass's landmarks frame "
                         "(steadier with a face detector's box; half the speed)")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--mode", choices=["test", "predict"], default="test")
    ap.add_argument("--format", default="auto", help="landmark layout: " + ", ".join(("auto",) + ds.FORMATS))
    ap.add_argument("--mean-from", help="annotated faces whose mean shape the mean_shape predictor uses")
    ap.add_argument("--overwrite", action="store_true",
                    help=f"replace this command's own earlier outputs (those {RECORD} in --out lists; never another "
                         "file), allow --out inside --images in predict mode")
    a = ap.parse_args(argv)
    try:
        check_out(a.out)
        if a.mode == "predict":
            predict_plan(a.images, a.out, a.overwrite)  # refuse before loading anything
        else:
            check_test_outputs(a.out, a.overwrite)
            _images(a.images)
        predictor = _load_predictor(a.predictor, a.mean_from, a.box, a.flip, a.refine)
        if a.mode == "test":
            r = run_test(a.images, predictor, a.out, a.format, a.overwrite)
            print(f"{r['predictor']} on {r['folder']}: n={r['n']}  NME={r['nme']:.2f}%  "
                  f"FR@10%={r['fr_10']:.2f}%  AUC@10%={r['auc_10']:.4f}  "
                  f"(FR@8%={r['fr_8']:.2f}%, AUC@8%={r['auc_8']:.4f}; box: {r['box']})")
            for msg in r["skipped"]:
                print(f"skipped: {msg}", file=sys.stderr)
        else:
            r = run_predict(a.images, predictor, a.out, a.overwrite)
            for msg in r["skipped"]:
                print(f"skipped: {msg}", file=sys.stderr)
            print(f"wrote landmarks of {len(r['written'])} images to {a.out}; skipped {len(r['skipped'])}")
            if not r["written"]:
                return 1
    except (OSError, ValueError) as exc:  # BadInput and BadDetectorFolder are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
