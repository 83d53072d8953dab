"""Readers for the published landmark dataset layouts, behind one function.

Every reader yields `Sample`s with 0-based pixel-centre coordinates (x, y) in
the 68-point order. Formats:

- ``300w``: ``<name>.jpg|png`` with ``<name>.pts`` beside it (1-based, iBUG header).
  ArtFace (Face of Art) is published in this layout too (``artface`` alias).
- ``caricature``: the Alive Caricature set, ``N.jpg`` with ``N.txt`` (68 rows ``x y``, 0-based).
- ``cariface``: ``test.txt``/``train.txt`` listing ids, ``images/<id>.jpg``,
  ``landmarks_gt/<id>.jpg.npy`` (float (68, 2)).
- ``wflw``: ``list_98pt_rect_attr_*.txt`` (196 coordinates, box, 6 attributes,
  image path) with an images folder; mapped to 68 points.
- ``synthetic``: the study's own exported sets: 300-W layout plus ``manifest.csv``.
"""
from __future__ import annotations

import csv
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..core import landmarks as lm

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FORMATS = ("300w", "artface", "caricature", "cariface", "wflw", "synthetic")


@dataclass
class Sample:
    image_path: Path
    landmarks: np.ndarray  # (68, 2), 0-based pixel centres
    dataset: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.image_path.stem


class BadInput(ValueError):
    """A file the study cannot use; the message names the file and the reason."""


# ---------------------------------------------------------------- images

# EXIF orientation (tag 0x0112) -> how the stored pixels are turned upright (as PIL's ImageOps.exif_transpose)
_ORIENTATION = {
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # stored turned 90 degrees counter-clockwise: turn it clockwise
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transversed
    8: lambda a: a.swapaxes(0, 1)[::-1],  # stored turned 90 degrees clockwise: turn it counter-clockwise
}


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of an encoded image, 1 where there is none (or no readable EXIF)."""
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # a file PIL cannot parse (OpenCV may still decode it): no orientation to honour
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as 8-bit RGB (H, W, 3), upright.

    Upright: an EXIF orientation tag (phone photos are often stored turned, with the tag
    saying how to show them) is honoured, so landmarks refer to the picture as it is seen.
    Grayscale is expanded, alpha is composited on white, 16-bit is scaled to
    8 bits; unreadable files raise BadInput naming the file. This is the one place the
    project reads image files."""
    path = Path(path)
    raw = path.read_bytes() if path.is_file() else b""
    if not raw:
        raise BadInput(f"{path}: missing or empty image file")
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)  # pixels as stored: no turning
    if img is None:
        raise BadInput(f"{path}: not a readable image")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise BadInput(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
        img = (rgb * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    else:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    turn = _ORIENTATION.get(exif_orientation(raw))
    return np.ascontiguousarray(turn(img)) if turn else img


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that it is either complete or absent: through a temporary
    file beside it (``.<name>.<pid>.tmp``), renamed into place. A failed write (disk full,
    quota, permissions) removes the temporary file, leaves whatever was at `path` untouched,
    and raises OSError naming `path`. Every file the evaluation command and data prep
    write goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise OSError(exc.errno, f"could not write ({exc.strerror or exc})", str(path)) from None


def save_image(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    path = Path(path)
    suffix = path.suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"{path}: could not encode image")
    write_atomic(path, buf.tobytes())


# ---------------------------------------------------------------- landmark files

def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG .pts file (1-based) as 0-based (N, 2) points."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: unreadable landmark file ({exc})") from None
    if "{" not in text or "}" not in text:
        raise BadInput(f"{path}: no '{{ ... }}' block of points")
    body = text[text.index("{") + 1:text.index("}")]
    try:
        pts = np.array([[float(v) for v in line.split()] for line in body.splitlines() if line.strip()])
    except ValueError:
        raise BadInput(f"{path}: non-numeric coordinates") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise BadInput(f"{path}: expected two numbers per line")
    return pts - 1.0


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write 0-based points as an iBUG .pts file (1-based)."""
    rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in np.asarray(points, dtype=np.float64))
    write_atomic(path, f"version: 1\nn_points:  {len(points)}\n{{\n{rows}\n}}\n".encode())


def read_txt_points(path: str | Path) -> np.ndarray:
    """Read rows of `x y` (0-based), as in the Alive Caricature set."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pts = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: unreadable landmark file ({exc})") from None
    return pts


def read_npy_points(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        pts = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: unreadable landmark array ({exc})") from None
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2) if pts.size % 2 == 0 else pts


MIN_IMAGE_SIDE = 32  # pixels; smaller images hold no usable face
MIN_INTER_OCULAR = 1.0  # pixels between the outer eye corners; below, every NME is meaningless
# the outer eye corners at least this fraction of the face's size (the diagonal of its robust landmark box) apart:
# 0.28 at least over the cpu profile's 2,601 real faces (0.23 over edited synthetic ones), so 0.1 only catches a
# corrupted corner, whose distance would divide every error of the face (NME) and inflate it
MIN_EYE_RATIO = 0.1
POINT_TOLERANCE = 0.1  # points may stick out of the image by this fraction of the face's (robust) box diagonal


def check_face(points: np.ndarray, image_shape: tuple, source: str | Path) -> np.ndarray:
    """The one check a face passes before it is cropped (data prep) or scored (evaluation):
    the image is at least MIN_IMAGE_SIDE on each side, the points are (68, 2), finite and
    inside the image (POINT_TOLERANCE slack, of the face's size without outlying points),
    no point lies further than ``landmarks.SPREAD_LIMIT`` median distances from the others
    (``landmarks.spread``), and the outer eye corners are at least MIN_EYE_RATIO of the
    face's size (and MIN_INTER_OCULAR px) apart. Returns the points as float64 or raises
    BadInput naming `source`."""
    h, w = image_shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise BadInput(f"{source}: image {w}x{h} is smaller than {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    try:
        pts = lm.validate(points, str(source), (h, w), POINT_TOLERANCE)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    spread = lm.spread(pts)
    worst = int(np.argmax(spread))
    if spread[worst] > lm.SPREAD_LIMIT:
        raise BadInput(f"{source}: point {worst} lies {spread[worst]:.1f} median distances from the face's centre "
                       f"(a face's points lie within {lm.SPREAD_LIMIT:g}): a misplaced point")
    iod = float(lm.inter_ocular(pts))
    size = lm.robust_diagonal(pts)
    need = max(MIN_INTER_OCULAR, MIN_EYE_RATIO * size)
    if iod < need:
        raise BadInput(f"{source}: inter-ocular distance {iod:.2f} px (outer eye corners 36 and 45) in a face of "
                       f"{size:.0f} px (landmark box diagonal); at least {need:.1f} px ({MIN_EYE_RATIO:g} of it, "
                       f"{MIN_INTER_OCULAR:g} px at the least) needed")
    return pts


def _checked(pts: np.ndarray, source: Path) -> np.ndarray:
    try:
        return lm.validate(pts, str(source))
    except ValueError as exc:
        raise BadInput(str(exc)) from None


# ---------------------------------------------------------------- layouts

def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_beside(folder: Path, suffix: str, reader, dataset: str, errors: list) -> list[Sample]:
    samples = []
    images = _images_in(folder)
    for img in images:
        ann = img.with_suffix(suffix)
        try:
            if not ann.exists():
                raise BadInput(f"{img}: no landmark file {ann.name} beside it")
            samples.append(Sample(img, _checked(reader(ann), ann), dataset))
        except BadInput as exc:
            errors.append(str(exc))
    if suffix == ".pts":  # landmark files no image goes with (a .txt may be anything, e.g. a README)
        annotated = {img.with_suffix(suffix) for img in images}
        errors.extend(f"{ann}: landmark file without an image beside it ({', '.join(IMAGE_SUFFIXES)})"
                      for ann in sorted(folder.rglob(f"*{suffix}")) if ann not in annotated)
    return samples


def _read_cariface(folder: Path, errors: list) -> list[Sample]:
    lists = [p for p in (folder / "test.txt", folder / "train.txt") if p.exists()]
    if not lists:
        errors.append(f"{folder}: no test.txt or train.txt, which list the ids of the CariFace layout "
                      "(images/<id>.jpg, landmarks_gt/<id>.jpg.npy)")
    samples = []
    for lst in lists:
        for ident in (s.strip() for s in lst.read_text().splitlines()):
            if not ident:
                continue
            img = folder / "images" / f"{ident}.jpg"
            ann = folder / "landmarks_gt" / f"{ident}.jpg.npy"
            try:
                if not img.exists():
                    raise BadInput(f"{img}: listed in {lst.name} but missing")
                if not ann.exists():
                    raise BadInput(f"{ann}: listed in {lst.name} but missing")
                samples.append(Sample(img, _checked(read_npy_points(ann), ann), "cariface",
                                      {"split": lst.stem}))
            except BadInput as exc:
                errors.append(str(exc))
    return samples


def _read_wflw(folder: Path, errors: list) -> list[Sample]:
    lists = sorted(folder.rglob("list_98pt_rect_attr_*.txt"))
    if not lists:
        errors.append(f"{folder}: no list_98pt_rect_attr_*.txt, the annotation lists of the WFLW layout")
    image_root = next((p for p in (folder / "WFLW_images", folder / "images", folder) if p.is_dir()))
    samples = []
    for lst in lists:
        for n, line in enumerate(lst.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            where = f"{lst}:{n}"
            try:
                if len(parts) != 196 + 4 + 6 + 1:
                    raise BadInput(f"{where}: {len(parts)} fields, expected 207")
                pts98 = np.array(parts[:196], dtype=np.float64).reshape(98, 2)
                img = image_root / parts[-1]
                if not img.exists():
                    raise BadInput(f"{where}: image {img} missing")
                attrs = dict(zip(("pose", "expression", "illumination", "makeup", "occlusion", "blur"),
                                 map(int, parts[200:206])))
                samples.append(Sample(img, _checked(pts98[lm.WFLW_TO_68], img), "wflw",
                                      {"split": lst.stem.split("_")[-1], **attrs}))
            except (BadInput, ValueError) as exc:
                errors.append(str(exc))
    return samples


def _read_synthetic(folder: Path, errors: list) -> list[Sample]:
    meta = {}
    with open(folder / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            meta[row["image"]] = row
    samples = _read_beside(folder, ".pts", read_pts, "synthetic", errors)
    for s in samples:
        s.meta = dict(meta.get(s.image_path.relative_to(folder).as_posix(), {}))
    return samples


def detect_format(folder: str | Path) -> str:
    """Guess a folder's layout from the files it holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if (folder / "manifest.csv").exists():
        return "synthetic"
    if (folder / "landmarks_gt").is_dir():
        return "cariface"
    if next(folder.rglob("list_98pt_rect_attr_*.txt"), None):
        return "wflw"
    if next(folder.rglob("*.pts"), None):
        return "300w"
    if next(folder.glob("*.txt"), None):
        return "caricature"
    raise BadInput(f"{folder}: no landmark files in any supported layout ({', '.join(FORMATS)})")


def read_dataset(folder: str | Path, fmt: str = "auto", errors: list | None = None) -> list[Sample]:
    """Read every annotated face under `folder`.

    Files that cannot be used are skipped and their reasons appended to
    `errors` (a warning is issued when no list is given)."""
    folder = Path(folder)
    fmt = detect_format(folder) if fmt == "auto" else fmt
    errs: list = [] if errors is None else errors
    n_before = len(errs)
    if fmt in ("300w", "artface"):
        samples = _read_beside(folder, ".pts", read_pts, fmt, errs)
    elif fmt == "caricature":
        samples = _read_beside(folder, ".txt", read_txt_points, fmt, errs)
    elif fmt == "cariface":
        samples = _read_cariface(folder, errs)
    elif fmt == "wflw":
        samples = _read_wflw(folder, errs)
    elif fmt == "synthetic":
        samples = _read_synthetic(folder, errs)
    else:
        raise ValueError(f"unknown landmark format {fmt!r}; known: {', '.join(FORMATS)}")
    if errors is None and len(errs) > n_before:
        warnings.warn(f"{folder}: skipped {len(errs) - n_before} files:\n" + "\n".join(errs[n_before:]))
    return samples
