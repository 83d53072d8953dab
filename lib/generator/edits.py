"""Landmark edits for synthesising exaggerated faces (the paper's Sec. 2.3).

Landmarks sampled from the training set are edited before they condition the
landmark-guided diffusion model, so it draws faces with the exaggerated
geometry of caricatures (chubby cheeks, wide-open eyes, raised brows, flared
nostrils, shifted features) that plain photo landmarks never show. Each edit
is a pure function of a (68, 2) landmark array and a numpy Generator:

- ``chubby``: the lower jaw/cheeks bulge outwards, tapering to zero at 0 and 16;
- ``linear_transform``: a small random affine (rotation, anisotropic scale, shear);
- ``open_eyes``: upper lids up, lower lids down (closed eyes open too);
- ``raised_eyebrow``: one or both brows raised, more in the middle (an arch);
- ``stretched_nostrils``: the nostrils 31-35 widened about the nose centre;
- ``eye_shift``: eyes with their brows move apart/together and slightly up/down;
- ``nose_mouth_shift``: nose bottom and mouth move together up or down;
- ``exaggeration`` (not among the paper's seven; ``edit_set`` builds it from a
  mean shape): what differs from the average face is scaled up, as
  caricaturists do (``exaggerate``).

Edits work in the face's own frame (origin between the outer eye corners,
x along the eye line, y perpendicular towards the chin), so rotated faces are
edited as upright ones are, and their magnitudes are fractions of the
inter-ocular distance. ``random_edits`` applies two random edits, as the paper
does, and fits the result back inside the image.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..core import landmarks as lm
from .styles import exaggerate

Edit = Callable[[np.ndarray, np.random.Generator], np.ndarray]

JAW = np.array(lm.GROUPS["jaw"])
NOSTRILS = np.array(lm.GROUPS["nostrils"])
MOUTH = np.array(lm.GROUPS["outer_lips"] + lm.GROUPS["inner_lips"])
EYES = np.array(lm.GROUPS["right_eye"] + lm.GROUPS["left_eye"])
CHIN = 8
# (upper lid, lower lid) points of each eye: 37 sits above 41, 38 above 40, ...
EYE_LIDS = {"right": ((37, 38), (41, 40)), "left": ((43, 44), (47, 46))}
SIDES = {  # eye and brow of each side, and the jaw-top point next to them
    "right": (lm.GROUPS["right_eye"], lm.GROUPS["right_brow"], 0),
    "left": (lm.GROUPS["left_eye"], lm.GROUPS["left_brow"], 16),
}


# ------------------------------------------------------------------ face frame

def _checked(points: np.ndarray, source: str) -> np.ndarray:
    """A float64 copy of valid (68, 2) landmarks, so edits never touch their input."""
    return lm.validate(points, source).copy()


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face's origin (mid-point of the outer eye corners) and a 2x2 orthonormal
    matrix whose rows are its horizontal axis (subject's right to left outer eye
    corner) and vertical axis (perpendicular, pointing towards the chin)."""
    a, b = lm.OUTER_EYE_CORNERS
    origin = (points[a] + points[b]) / 2
    eye_line = points[b] - points[a]
    iod = float(np.linalg.norm(eye_line))
    if not iod > 1e-9 * max(1.0, float(np.abs(points).max())):
        raise ValueError("degenerate face: the outer eye corners 36 and 45 coincide")
    u = eye_line / iod
    v = np.array([-u[1], u[0]])
    if (points[CHIN] - origin) @ v < 0:  # mirrored input: keep y pointing at the chin
        v = -v
    return origin, np.stack([u, v])


def to_face_frame(points: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Points in face-frame coordinates, and the function mapping edited face-frame
    points back to the image; points left as they were come back bit for bit."""
    origin, axes = face_frame(points)
    local = (points - origin) @ axes.T

    def back(edited: np.ndarray) -> np.ndarray:
        out = np.array(points, dtype=np.float64)
        changed = (edited != local).any(axis=1)  # the round trip would add rounding noise
        out[changed] = edited[changed] @ axes + origin  # axes is orthonormal: inverse = transpose
        return out

    return local.copy(), back


def _jaw_line_below(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Face-frame height of the lowest jaw crossing at each horizontal position x
    (-inf where the jaw does not reach x, which leaves no room to move down)."""
    x0, x1 = q[JAW[:-1], 0], q[JAW[1:], 0]
    y0, y1 = q[JAW[:-1], 1], q[JAW[1:], 1]
    xs = x[:, None]
    spans = (np.minimum(x0, x1) <= xs) & (xs <= np.maximum(x0, x1))
    t = np.clip((xs - x0) / np.where(x1 == x0, 1.0, x1 - x0), 0.0, 1.0)
    crossing = np.where(spans, y0 + t * (y1 - y0), -np.inf)
    return crossing.max(axis=1)


# ------------------------------------------------------------------ edits

def chubby(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Widen the lower jaw and cheeks by 8-25% of half the face width."""
    q, back = to_face_frame(_checked(points, "chubby"))
    x = q[JAW, 0]
    midline = (x[0] + x[-1]) / 2
    half_width = abs(x[-1] - x[0]) / 2
    amount = rng.uniform(0.08, 0.25) * half_width
    taper = np.sin(np.pi * np.arange(17) / 16)  # zero at the jaw tops 0 and 16, full at the chin
    # points near the midline move in proportion to their offset, so the chin never splits
    side = np.clip((x - midline) / (0.5 * half_width), -1.0, 1.0)
    q[JAW, 0] = x + amount * taper * side
    return back(q)


def linear_transform(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random small affine map about the face centre: rotation up to +-15 degrees,
    anisotropic scale 0.85-1.2 and shear up to +-0.15."""
    q, back = to_face_frame(_checked(points, "linear_transform"))
    angle = np.radians(rng.uniform(-15.0, 15.0))
    sx, sy = rng.uniform(0.85, 1.2, size=2)
    shear = rng.uniform(-0.15, 0.15)
    c, s = np.cos(angle), np.sin(angle)
    # all factors have positive determinant, so the face is never mirrored
    affine = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    centre = q.mean(axis=0)
    return back(centre + (q - centre) @ affine.T)


def open_eyes(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move the upper lids up and the lower lids down by 20-60% of the eye's height,
    or of a third of its width when that is larger, so closed eyes open too."""
    q, back = to_face_frame(_checked(points, "open_eyes"))
    fraction = rng.uniform(0.2, 0.6)  # one expression: both eyes open alike
    for side, (upper, lower) in EYE_LIDS.items():
        eye, brow, _ = SIDES[side]
        width = abs(q[eye[3], 0] - q[eye[0], 0])
        height = q[list(lower), 1].mean() - q[list(upper), 1].mean()
        amount = fraction * max(height, width / 3)
        # the upper lid must stay below the brow: use at most half the gap to it
        gap = q[list(upper), 1].min() - q[brow, 1].max()
        q[list(upper), 1] -= min(amount, max(0.5 * gap, 0.0))
        q[list(lower), 1] += amount
    return back(q)


def raised_eyebrow(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Raise one or both brows by 5-20% of the inter-ocular distance, the middle
    of the brow more than its ends (an arch)."""
    pts = _checked(points, "raised_eyebrow")
    q, back = to_face_frame(pts)
    which = [("right",), ("left",), ("right", "left")][rng.integers(3)]
    lift = rng.uniform(0.05, 0.2) * float(lm.inter_ocular(pts))
    arch = 0.6 + 0.4 * np.sin(np.pi * np.arange(5) / 4)  # ends 0.6, middle 1.0
    for side in which:
        q[SIDES[side][1], 1] -= lift * arch
    return back(q)


def stretched_nostrils(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Widen the nostril points 31-35 about the nose centre by 15-50%."""
    q, back = to_face_frame(_checked(points, "stretched_nostrils"))
    factor = 1.0 + rng.uniform(0.15, 0.5)
    centre = q[NOSTRILS, 0].mean()
    q[NOSTRILS, 0] = centre + factor * (q[NOSTRILS, 0] - centre)
    return back(q)


def eye_shift(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move both eyes with their brows apart or together by 5-15% of the
    inter-ocular distance each, symmetric about the midline, and slightly up or
    down (at most half as much), both by the same amount."""
    pts = _checked(points, "eye_shift")
    q, back = to_face_frame(pts)
    iod = float(lm.inter_ocular(pts))
    outwards = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.15) * iod
    vertical = rng.uniform(-0.5, 0.5) * abs(outwards)
    if outwards > 0:
        # eye corners and brow ends stay inside the jaw: use at most 60% of the room there
        room = []
        for side, sign in (("right", -1.0), ("left", 1.0)):
            eye, brow, jaw_top = SIDES[side]
            room.append(sign * q[jaw_top, 0] - (sign * q[eye + brow, 0]).max())
        outwards = min(outwards, max(0.6 * min(room), 0.0))
    else:
        # the inner eye corners and brow heads must not cross: keep 40% of the gap
        inner_gap = min(q[42, 0] - q[39, 0], q[22, 0] - q[21, 0])
        outwards = max(outwards, -0.3 * max(inner_gap, 0.0))
    for side, sign in (("right", -1.0), ("left", 1.0)):
        eye, brow, _ = SIDES[side]
        q[eye + brow] += [sign * outwards, vertical]
    return back(q)


def nose_mouth_shift(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move the nose bottom (tip 30 and nostrils) and the mouth together up or down
    the face by 5-15% of the inter-ocular distance; the nose bridge stretches to
    follow, and both stay between the eyes and the chin."""
    pts = _checked(points, "nose_mouth_shift")
    q, back = to_face_frame(pts)
    shift = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.15) * float(lm.inter_ocular(pts))
    # use at most 60% of the room above the nostrils (to the lower lids) and below the
    # mouth (to the jaw line under each mouth point, which narrows towards the chin)
    room_up = q[NOSTRILS, 1].min() - q[EYES, 1].max()
    room_down = float((_jaw_line_below(q, q[MOUTH, 0]) - q[MOUTH, 1]).min())
    shift = float(np.clip(shift, -0.6 * max(room_up, 0.0), 0.6 * max(room_down, 0.0)))
    q[NOSTRILS, 1] += shift
    q[MOUTH, 1] += shift
    q[[28, 29, 30], 1] += shift * np.array([1, 2, 3]) / 3  # the bridge from 27 to the tip stretches
    return back(q)


EDITS: dict[str, Edit] = {
    "chubby": chubby,
    "linear_transform": linear_transform,
    "open_eyes": open_eyes,
    "raised_eyebrow": raised_eyebrow,
    "stretched_nostrils": stretched_nostrils,
    "eye_shift": eye_shift,
    "nose_mouth_shift": nose_mouth_shift,
}


# ------------------------------------------------------------------ exaggeration (caricature)

def exaggeration(mean_shape: np.ndarray, factor: tuple[float, float] = (1.3, 2.0), per_part: bool = False) -> Edit:
    """The caricature edit: the face aligned to `mean_shape` (similarity), its deviation from
    it scaled by a factor ~ U(`factor`) (whole face, or per part), mapped back with the
    face's box kept (``exaggerate``); ``random_edits`` then keeps it inside the image."""
    mean_shape = lm.validate(mean_shape, "exaggeration mean shape").copy()
    lo, hi = factor
    if not 1.0 <= lo <= hi:
        raise ValueError(f"exaggeration: factor range {factor}, expected 1 <= low <= high")

    def edit(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return exaggerate(_checked(points, "exaggeration"), mean_shape, rng, (lo - 1.0, hi - 1.0), per_part)
    return edit


def edit_set(names: list[str] | None = None, mean_shape: np.ndarray | None = None,
             factor: tuple[float, float] = (1.3, 2.0)) -> dict[str, Edit]:
    """The edits to draw from, by name (default: the paper's seven, ``EDITS``);
    ``exaggeration`` needs the `mean_shape` it exaggerates from."""
    names = list(EDITS) if names is None else list(names)
    out = {}
    for name in names:
        if name == "exaggeration":
            if mean_shape is None:
                raise ValueError("edit exaggeration needs a mean shape (the training landmarks' mean)")
            out[name] = exaggeration(mean_shape, tuple(factor))
        elif name in EDITS:
            out[name] = EDITS[name]
        else:
            raise ValueError(f"unknown edit {name!r}; known: {', '.join([*EDITS, 'exaggeration'])}")
    return out


# ------------------------------------------------------------------ sampling

def fit_in_image(points: np.ndarray, size: int, margin: float = 0.05) -> np.ndarray:
    """If the points leave [margin*size, size - margin*size] on either axis, scale
    them about their box centre (only as much as needed) and shift them inside."""
    lo, hi = margin * size, size - margin * size
    out = points.copy()
    box_lo, box_hi = out.min(axis=0), out.max(axis=0)
    if (box_lo >= lo).all() and (box_hi <= hi).all():
        return out
    extent = float((box_hi - box_lo).max())
    scale = min(1.0, (hi - lo) / extent) if extent > 0 else 1.0  # keep the face as large as possible
    centre = (box_lo + box_hi) / 2
    out = centre + scale * (out - centre)
    box_lo, box_hi = out.min(axis=0), out.max(axis=0)
    out += np.maximum(lo - box_lo, 0.0) + np.minimum(hi - box_hi, 0.0)
    return np.clip(out, lo, hi)  # only rounding error is clipped here


def random_edits(points: np.ndarray, rng: np.random.Generator, size: int, k: int = 2,
                 margin: float = 0.05, edits: dict[str, Edit] | None = None) -> tuple[np.ndarray, list[str]]:
    """Apply k distinct edits picked uniformly at random from `edits` (default: the
    paper's seven; the paper applies two), in the order picked, and fit the result into
    the size x size image with `margin`. Returns the edited points and the names of the
    edits applied."""
    pts = _checked(points, "random_edits")
    edits = EDITS if edits is None else edits
    if not 0 <= k <= len(edits):
        raise ValueError(f"random_edits: k={k}, but there are {len(edits)} edits "
                         f"({', '.join(edits)}); k must be in 0..{len(edits)}")
    if not size > 0:
        raise ValueError(f"random_edits: image size {size}, expected a positive number of pixels")
    if not 0 <= margin < 0.5:
        raise ValueError(f"random_edits: margin {margin}, expected a fraction in [0, 0.5)")
    names = list(edits)
    chosen = [names[i] for i in rng.choice(len(names), size=k, replace=False)]
    for name in chosen:
        pts = edits[name](pts, rng)
    return fit_in_image(pts, size, margin), chosen
