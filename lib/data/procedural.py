"""Procedural faces with exact 68-point landmarks: the study's embedded data.

A face is a small 3D model built from identity and expression parameters
(face shape, eye/nose/mouth size and placement, smile, open mouth, raised
brows, gaze), rotated by a random pose and projected orthographically. The
68 landmarks are points of that model, so they are exact by construction;
dense contours between them (Catmull-Rom splines) drive the drawing.
The same geometry is drawn in several domain styles:

- ``photo``: shaded skin, soft lighting, hair, sensor noise;
- ``cartoon``: flat colours, cel shading and ink outlines;
- ``sketch``: pencil on paper, graphite strokes and hatching;
- ``painting``: old-master palette, brushwork and canvas texture;
- ``caricature``: exaggerated geometry drawn in ink and wash.

Deterministic by seed: ``render_face(seed, style)`` always gives the same picture.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..core import landmarks as lm
from ..core.progress import track
from . import datasets as ds

STYLES = ("photo", "cartoon", "sketch", "painting", "caricature")
_SS = 2  # supersampling factor for anti-aliased drawing

SKIN_TONES = np.array([[241, 206, 180], [226, 185, 152], [198, 146, 110], [160, 108, 74],
                       [120, 78, 52], [236, 196, 164], [212, 160, 120]], np.float64)
HAIR_COLOURS = np.array([[40, 28, 20], [80, 52, 30], [130, 90, 50], [200, 160, 100],
                         [20, 20, 22], [150, 60, 30], [170, 170, 170]], np.float64)
IRIS_COLOURS = np.array([[70, 45, 25], [60, 100, 140], [80, 110, 70], [110, 80, 40]], np.float64)


@dataclass
class Face:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    landmarks: np.ndarray  # (68, 2) 0-based pixel centres
    style: str
    seed: int
    curves: dict = field(default_factory=dict)  # dense contours, same coordinates
    params: dict = field(default_factory=dict)


# ------------------------------------------------------------------ geometry

def _sample_params(rng: np.random.Generator, style: str) -> dict:
    u = rng.uniform
    p = dict(
        jaw_w=u(0.92, 1.1), jaw_h=u(1.15, 1.4), chin=u(0.25, 0.6), forehead=u(0.95, 1.15),
        eye_dx=u(0.38, 0.46), eye_w=u(0.14, 0.19), eye_h=u(0.055, 0.08), eye_tilt=u(-0.02, 0.04),
        brow_y=u(-0.3, -0.22), brow_arch=u(0.02, 0.08), brow_w=u(0.9, 1.15),
        nose_len=u(0.42, 0.56), nose_w=u(0.13, 0.2), mouth_y=u(0.78, 0.9), mouth_w=u(0.26, 0.38),
        lip_up=u(0.04, 0.07), lip_low=u(0.05, 0.09),
        # expression
        smile=u(-0.2, 1.0), mouth_open=max(0.0, u(-0.12, 0.2)), brow_raise=u(0.0, 0.06),
        eye_open=u(0.6, 1.15), gaze=(u(-0.3, 0.3), u(-0.2, 0.2)),
        # pose (degrees) and framing
        yaw=u(-28, 28), pitch=u(-14, 14), roll=u(-18, 18),
        scale=u(0.22, 0.31), shift=(u(-0.06, 0.06), u(-0.04, 0.04)),
        # appearance
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))] * u(0.93, 1.05, 3),
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * u(0.9, 1.1),
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))],
        hair_style=int(rng.integers(4)),  # 0 short, 1 long, 2 bun, 3 shaved
        background=rng.uniform(40, 230, 3), clothes=rng.uniform(20, 220, 3),
        light=(u(-0.8, 0.8), u(-0.9, -0.2)),
    )
    if style == "caricature":
        # Exaggerate two or three features, as caricaturists do.
        for key, lo, hi in [("jaw_h", 1.45, 1.8), ("chin", 0.05, 0.25), ("nose_len", 0.58, 0.72),
                            ("nose_w", 0.22, 0.3), ("mouth_w", 0.4, 0.52), ("eye_w", 0.2, 0.24),
                            ("forehead", 1.25, 1.5), ("jaw_w", 1.15, 1.3), ("eye_dx", 0.3, 0.34)]:
            if rng.random() < 0.35:
                p[key] = u(lo, hi)
        p["smile"] = u(0.4, 1.3)
    if style == "cartoon":
        p["eye_w"] *= 1.2
        p["eye_h"] *= 1.5
    return p


def _face_model(p: dict) -> tuple[np.ndarray, dict]:
    """Frontal 3D model: the 68 landmarks and extra drawing points, in face
    units (x right, y down, z towards the viewer; eye line at y = 0)."""
    P = np.zeros((68, 3))
    # Jaw: from beside the outer eye corner, round the chin, to the other side.
    a = np.linspace(-0.08, np.pi + 0.08, 17)
    width = p["jaw_w"] * (1 - (1 - p["chin"]) * 0.55 * np.sin(a) ** 4)
    drop = p["mouth_open"] * 0.6 * np.clip(np.sin(a), 0, None) ** 2
    P[0:17, 0] = -width * np.cos(a)
    P[0:17, 1] = 0.05 + (p["jaw_h"] + 0.05) * np.sin(a) + drop
    P[0:17, 2] = 0.75 * np.clip(np.sin(a), 0, None) ** 1.5 - 0.05
    # Brows, outer to inner on the image-left side.
    t = np.linspace(0, 1, 5)
    bx = -(p["eye_dx"] + p["eye_w"] * 1.25 * p["brow_w"]) + t * (p["eye_w"] * 2.0 * p["brow_w"])
    by = p["brow_y"] - p["brow_raise"] - p["brow_arch"] * np.sin(np.pi * (0.25 + 0.75 * t)) + 0.02 * t
    P[17:22, 0], P[17:22, 1] = bx, by
    P[22:27, 0], P[22:27, 1] = -bx[::-1], by[::-1]
    P[17:27, 2] = 0.5
    # Nose bridge down to the tip, then the nostril base.
    P[27:31, 1] = np.linspace(-0.05, p["nose_len"], 4)
    P[27:31, 2] = np.linspace(0.5, 0.85, 4)
    nw = p["nose_w"]
    P[31:36, 0] = [-nw, -nw / 2, 0, nw / 2, nw]
    P[31:36, 1] = p["nose_len"] + np.array([0.04, 0.08, 0.1, 0.08, 0.04])
    P[31:36, 2] = [0.55, 0.65, 0.72, 0.65, 0.55]
    # Eyes: corner, two upper, corner, two lower (300-W order).
    for start, side in ((36, -1), (42, 1)):
        cx, ew, eh = side * p["eye_dx"], p["eye_w"], p["eye_h"] * p["eye_open"]
        xs = np.array([-1, -0.4, 0.4, 1, 0.4, -0.4]) * ew
        ys = np.array([0, -1.0, -1.0, 0, 0.75, 0.75]) * eh
        if side == 1:
            xs = -xs[[3, 2, 1, 0, 5, 4]]
            ys = ys[[3, 2, 1, 0, 5, 4]]
        tilt = -p["eye_tilt"] * np.abs(xs) / ew * np.sign(xs * side)  # outer corner up
        P[start:start + 6, 0] = cx + xs
        P[start:start + 6, 1] = ys + tilt
        P[start:start + 6, 2] = 0.42
    # Mouth: outer lips 48-59, inner 60-67; smile lifts and widens the corners.
    my, mw, s, gap = p["mouth_y"], p["mouth_w"] * (1 + 0.12 * p["smile"]), p["smile"], p["mouth_open"]
    lift = 0.05 * s
    ox = np.array([-1, -0.6, -0.22, 0, 0.22, 0.6, 1, 0.6, 0.3, 0, -0.3, -0.6]) * mw
    oy = np.array([-lift, -0.8 * p["lip_up"] - lift * 0.3, -1.05 * p["lip_up"], -0.9 * p["lip_up"],
                   -1.05 * p["lip_up"], -0.8 * p["lip_up"] - lift * 0.3, -lift,
                   0.8 * p["lip_low"] + gap * 0.8, p["lip_low"] + gap, 1.05 * p["lip_low"] + gap,
                   p["lip_low"] + gap, 0.8 * p["lip_low"] + gap * 0.8])
    P[48:60, 0], P[48:60, 1] = ox, my + oy
    ix = np.array([-0.85, -0.35, 0, 0.35, 0.85, 0.35, 0, -0.35]) * mw
    iy = np.array([-lift * 0.9, -0.15 * p["lip_up"], -0.12 * p["lip_up"], -0.15 * p["lip_up"], -lift * 0.9,
                   gap * 0.95 + 0.1 * p["lip_low"], gap + 0.12 * p["lip_low"], gap * 0.95 + 0.1 * p["lip_low"]])
    P[60:68, 0], P[60:68, 1] = ix, my + iy
    P[48:68, 2] = 0.62 - 0.2 * np.abs(P[48:68, 0])
    # Extra points for drawing: skull top, ears, neck, pupils, cheeks.
    b = np.linspace(0, np.pi, 25)
    extra = {
        "skull": np.stack([-p["jaw_w"] * 1.02 * np.cos(b), 0.05 - p["forehead"] * np.sin(b) ** 0.9 - 0.0,
                           0.3 * np.sin(b)], 1),
        "ears": np.array([[-p["jaw_w"] * 0.98, 0.2, -0.2], [p["jaw_w"] * 0.98, 0.2, -0.2]]),
        "neck": np.array([[-0.48, 1.0, -0.3], [0.48, 1.0, -0.3], [0.55, 2.6, -0.3], [-0.55, 2.6, -0.3]]),
        "pupils": np.array([[-p["eye_dx"] + p["gaze"][0] * p["eye_w"] * 0.5, p["gaze"][1] * 0.02, 0.45],
                            [p["eye_dx"] + p["gaze"][0] * p["eye_w"] * 0.5, p["gaze"][1] * 0.02, 0.45]]),
        "cheeks": np.array([[-0.55, 0.5, 0.5], [0.55, 0.5, 0.5]]),
    }
    return P, extra


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, x, z = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _project(p: dict, size: int):
    """Rotate the model and map it to pixel coordinates of the supersampled canvas."""
    P, extra = _face_model(p)
    R = _rotation(p["yaw"], p["pitch"], p["roll"])
    centre = np.array([0.0, 0.45, 0.0])
    unit = p["scale"] * size * _SS
    origin = np.array([0.5 + p["shift"][0], 0.53 + p["shift"][1]]) * size * _SS

    def proj(Q):
        Q = (Q - centre) @ R.T
        return Q[:, :2] * unit + origin, Q[:, 2]

    pts, depth = proj(P)
    ex = {k: proj(v)[0] for k, v in extra.items()}
    ex["facing"] = R[2, 2]  # how frontal
    ex["yaw_sign"] = np.sign(R[0, 2])
    ex["unit"] = unit
    return pts, ex


def dense_curves(points: np.ndarray) -> dict:
    """Smooth curve per landmark group; each passes exactly through its landmarks."""
    return {g: lm.catmull_rom(points[idx], g in lm.CLOSED) for g, idx in lm.GROUPS.items()}


# ------------------------------------------------------------------ drawing helpers

def _poly(img, pts, colour, closed=True, thickness=-1):
    pts = np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)  # 4 fractional bits
    colour = tuple(float(c) for c in np.broadcast_to(colour, (img.shape[2],)))
    if thickness < 0:
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, shift=4)
    else:
        cv2.polylines(img, [pts], closed, colour, max(1, int(round(thickness))), cv2.LINE_AA, shift=4)


def _ellipse(img, centre, axes, angle, colour, thickness=-1):
    c = tuple(int(round(v * 16)) for v in centre)
    ax = tuple(max(1, int(round(v * 16))) for v in axes)
    colour = tuple(float(v) for v in np.broadcast_to(colour, (img.shape[2],)))
    cv2.ellipse(img, c, ax, angle, 0, 360, colour, thickness if thickness < 0 else max(1, int(thickness)),
                cv2.LINE_AA, shift=4)


def _mask(shape, pts) -> np.ndarray:
    m = np.zeros(shape[:2] + (1,), np.float32)
    _poly(m, pts, 1.0)
    return m[:, :, 0]


def _head_outline(pts, ex) -> np.ndarray:
    jaw = lm.catmull_rom(pts[0:17])
    skull = lm.catmull_rom(ex["skull"])
    # skull runs left->right over the top; the jaw runs left->right under the chin
    return np.vstack([jaw, skull[::-1]])


def _noise(rng, shape, sigma):
    n = rng.standard_normal(shape[:2]).astype(np.float32)
    return cv2.GaussianBlur(n, (0, 0), sigma) * sigma


def _draw_base(canvas, rng, pts, ex, p, flat: bool):
    """Hair, neck, clothes, ears and skin; returns the face mask."""
    u = ex["unit"]
    curves = dense_curves(pts)
    head = _head_outline(pts, ex)
    skin, hair = p["skin"], p["hair"]
    centre = head.mean(0)
    # shoulders and clothes
    neck = ex["neck"]
    _ellipse(canvas, (neck[2:].mean(0)[0], neck[2:].mean(0)[1] + 0.2 * u), (1.5 * u, 0.9 * u), 0, p["clothes"])
    if p["hair_style"] == 1:  # long hair falls behind the shoulders
        back = np.vstack([head[len(head) // 2:], [head[-1] + [0.15 * u, 1.9 * u], head[len(head) // 2] + [-0.15 * u, 1.9 * u]]])
        _poly(canvas, (back - centre) * 1.12 + centre, hair * 0.85)
    _poly(canvas, neck, skin * 0.82)
    for e in ex["ears"]:
        _ellipse(canvas, e, (0.14 * u, 0.24 * u), 0, skin * 0.9)
    if p["hair_style"] == 2:
        top = head[len(head) * 3 // 4]
        _ellipse(canvas, top + [0, -0.3 * u], (0.4 * u, 0.32 * u), 0, hair * 0.9)
    if p["hair_style"] != 3:
        _poly(canvas, (head[len(head) // 2 - 4:] - centre) * [1.1, 1.12] + centre, hair)
    _poly(canvas, head, skin)
    mask = _mask(canvas.shape, head)
    # hairline fringe above the brows (never covers the landmarks)
    if p["hair_style"] != 3:
        skull = lm.catmull_rom(ex["skull"])
        brow_top = min(pts[17:27, 1].min(), pts[27, 1])
        hairline = np.vstack([skull[::-1], (skull - centre) * [0.96, 0.45] + [centre[0], centre[1] - 0.02 * u]])
        hairline[:, 1] = np.minimum(hairline[:, 1], brow_top - 0.25 * u)
        _poly(canvas, hairline, hair)
    return mask, curves, head


def _draw_features(canvas, pts, ex, p, curves, ink=None, line=1.0):
    """Eyes, brows, nose and mouth. `ink` (a colour) also outlines them."""
    u = ex["unit"]
    skin = p["skin"]
    for g, pupil in (("right_eye", ex["pupils"][0]), ("left_eye", ex["pupils"][1])):
        eye = curves[g]
        m = np.zeros_like(canvas)
        _poly(m, eye, (255, 255, 255))
        sclera = np.zeros_like(canvas)
        sclera[:] = (245, 242, 235)
        ew = np.linalg.norm(eye.max(0) - eye.min(0)) / 2
        _ellipse(sclera, pupil, (0.42 * ew, 0.42 * ew), 0, p["iris"])
        _ellipse(sclera, pupil, (0.2 * ew, 0.2 * ew), 0, (15, 12, 12))
        _ellipse(sclera, pupil - [0.12 * ew, 0.12 * ew], (0.07 * ew, 0.07 * ew), 0, (255, 255, 255))
        a = m.astype(np.float32) / 255
        canvas[:] = (canvas * (1 - a) + sclera * a).astype(canvas.dtype)
        upper = eye[: len(eye) // 2 + 1]
        _poly(canvas, upper, (30, 22, 20) if ink is None else ink, closed=False, thickness=0.035 * u * line)
        _poly(canvas, eye, (skin * 0.55) if ink is None else ink, closed=True, thickness=0.012 * u * line)
    for g in ("right_brow", "left_brow"):
        brow = curves[g]
        thick = np.linspace(0.05, 0.028, len(brow)) if g == "right_brow" else np.linspace(0.028, 0.05, len(brow))
        for i in range(len(brow) - 1):
            _poly(canvas, brow[i:i + 2], p["hair"] * 0.8 if ink is None else ink, closed=False,
                  thickness=thick[i] * u)
    # nose: bridge shadow, nostrils
    nose = curves["nostrils"]
    _poly(canvas, nose, skin * 0.6 if ink is None else ink, closed=False, thickness=0.02 * u * line)
    for i in (32, 34):
        _ellipse(canvas, pts[i] + [0, -0.015 * u], (0.03 * u, 0.018 * u), 0, (60, 35, 30))
    bridge = curves["nose_bridge"]
    side = 1 if p["light"][0] > 0 else -1
    _poly(canvas, bridge[len(bridge) // 3:] + [side * 0.05 * u, 0], skin * 0.82 if ink is None else ink,
          closed=False, thickness=0.015 * u * line)
    # mouth: interior, lips
    lips = np.clip(skin * [0.85, 0.5, 0.5] + [40, 0, 10], 0, 255)
    _poly(canvas, curves["outer_lips"], lips)
    inner = curves["inner_lips"]
    if p["mouth_open"] > 0.02:
        _poly(canvas, inner, (60, 20, 25))
        teeth = inner.copy()
        teeth[:, 1] = np.minimum(teeth[:, 1], inner[:, 1].min() + 0.35 * (inner[:, 1].max() - inner[:, 1].min()))
        _poly(canvas, teeth, (240, 238, 228))
    _poly(canvas, inner, (90, 30, 35) if ink is None else ink, closed=True, thickness=0.02 * u * line)
    if ink is not None:
        _poly(canvas, curves["outer_lips"], ink, closed=True, thickness=0.012 * u * line)


def _shade(rng, mask, pts, ex, p, levels=None):
    """Lambert shading of a dome the shape of the face mask, with eye-socket,
    nose and under-lip shadows. Returns a (H, W) float multiplier."""
    u = ex["unit"]
    d = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    h = np.sqrt(d / (d.max() + 1e-6))
    gy, gx = np.gradient(cv2.GaussianBlur(h, (0, 0), 0.05 * u))
    lx, ly = p["light"]
    nz = 1.0 / (u * 0.02)
    n = np.stack([-gx, -gy, np.full_like(gx, 1.0 / nz)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    L = np.array([lx, ly, 1.0])
    L /= np.linalg.norm(L)
    s = np.clip(n @ L, 0, 1) * 0.55 + 0.5
    shadow = np.zeros(mask.shape + (1,), np.float32)
    for g in ("right_eye", "left_eye"):
        c = pts[lm.GROUPS[g]].mean(0) + [0, -0.04 * u]
        _ellipse(shadow, c, (0.2 * u, 0.13 * u), 0, 0.22)
    _ellipse(shadow, pts[33] + [0, 0.05 * u], (0.16 * u, 0.04 * u), 0, 0.3)
    _ellipse(shadow, pts[57] + [0, 0.06 * u], (0.14 * u, 0.04 * u), 0, 0.2)
    s = s * (1 - cv2.GaussianBlur(shadow[:, :, 0], (0, 0), 0.05 * u))
    if levels:
        s = np.where(s > 0.8, 1.0, 0.78)
    return s.astype(np.float32)


# ------------------------------------------------------------------ styles

def _background(rng, shape, colour, style):
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = (1.0 - 0.35 * (yy / h)) if style != "painting" else (0.55 - 0.3 * np.hypot(xx / w - 0.35, yy / h - 0.3))
    bg = colour[None, None, :] * grad[..., None]
    if style == "painting":
        bg = np.array([70, 55, 35])[None, None, :] * (0.6 + grad[..., None])
    bg = bg + _noise(rng, shape, 0.08 * w)[..., None] * 1.5
    return np.clip(bg, 0, 255).astype(np.float32)


def _photo(rng, canvas, mask, pts, ex, p, curves):
    shade = _shade(rng, mask, pts, ex, p)
    skin_mask = cv2.GaussianBlur(mask, (0, 0), 1.0)[..., None]
    out = canvas * (1 - skin_mask) + canvas * shade[..., None] * skin_mask
    blush = np.zeros(mask.shape + (1,), np.float32)
    for c in ex["cheeks"]:
        _ellipse(blush, c, (0.22 * ex["unit"], 0.14 * ex["unit"]), 0, 0.12)
    blush = cv2.GaussianBlur(blush[:, :, 0], (0, 0), 0.1 * ex["unit"])[..., None] * skin_mask
    out = out * (1 - blush) + np.array([200, 70, 70]) * blush
    out = cv2.GaussianBlur(out.astype(np.float32), (0, 0), 1.2)
    out = out + rng.normal(0, 3.0, out.shape).astype(np.float32)
    return out


def _cartoon(rng, canvas, mask, pts, ex, p, curves):
    shade = _shade(rng, mask, pts, ex, p, levels=True)
    m = mask[..., None]
    out = canvas * (1 - m) + canvas * shade[..., None] * m
    return out


def _sketch(rng, photo):
    g = cv2.cvtColor(np.clip(photo, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = cv2.GaussianBlur(255 - g, (0, 0), 6)
    dodge = np.clip(g * 255 / np.maximum(255 - blur, 1), 0, 255)
    # hatching where the photo is dark
    h, w = g.shape
    yy, xx = np.mgrid[0:h, 0:w]
    hatch = ((xx + yy) % 7 < 1).astype(np.float32)
    dark = np.clip((140 - cv2.GaussianBlur(g, (0, 0), 3)) / 140, 0, 1)
    out = dodge * (1 - 0.5 * hatch * dark) * 0.97
    paper = 240 + _noise(rng, g.shape, 1.0) * 4
    out = np.minimum(out, paper)
    tint = np.array([1.0, 0.98, 0.93], np.float32)
    return out[..., None] * tint


def _painting(rng, photo):
    img = np.clip(photo, 0, 255).astype(np.uint8)
    warm = img.astype(np.float32) * np.array([1.05, 0.95, 0.78]) + np.array([12, 6, 0])
    img = np.clip(warm, 0, 255).astype(np.uint8)
    img = cv2.stylization(img, sigma_s=30, sigma_r=0.35)
    img = img.astype(np.float32)
    h, w = img.shape[:2]
    strokes = rng.standard_normal((h, w)).astype(np.float32)
    k = np.zeros((9, 9), np.float32)
    k[4, :] = 1 / 9
    k = cv2.warpAffine(k, cv2.getRotationMatrix2D((4, 4), float(rng.uniform(20, 70)), 1.0), (9, 9))
    strokes = cv2.filter2D(strokes, -1, k)
    canvas_tex = ((np.mgrid[0:h, 0:w][0] % 3 == 0) ^ (np.mgrid[0:h, 0:w][1] % 3 == 0)).astype(np.float32)
    img = img * (1 + 0.06 * strokes[..., None]) * (1 - 0.04 * canvas_tex[..., None])
    return img


def _caricature(rng, canvas, mask, pts, ex, p, curves, head):
    flat = canvas.astype(np.float32)
    shade = _shade(rng, mask, pts, ex, p)
    wash = cv2.GaussianBlur(shade, (0, 0), 0.06 * ex["unit"])
    m = mask[..., None]
    out = flat * (1 - m) + flat * (0.75 + 0.25 * wash[..., None]) * m
    paper = np.full_like(out, 245.0)
    bgm = cv2.GaussianBlur(1 - m[..., 0], (0, 0), 2)[..., None]
    out = out * (1 - 0.6 * bgm) + paper * 0.6 * bgm
    return out


def render_face(seed: int, style: str = "photo", size: int = 256, overrides: dict | None = None) -> Face:
    """Draw one face in `style`; landmarks are exact for the returned image. `overrides`
    replace sampled parameters (pose ``yaw``/``pitch``/``roll``, expression ``mouth_open``,
    ``smile``, ``eye_open``, ...) and keep the rest of the face: the same seed with other
    overrides is the same person turning, talking or blinking."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    rng = np.random.default_rng([seed, STYLES.index(style)])
    p = _sample_params(rng, style)
    unknown = sorted(set(overrides or {}) - set(p))
    if unknown:
        raise ValueError(f"unknown face parameters {unknown}; known: {', '.join(sorted(p))}")
    p.update(overrides or {})
    if style == "sketch":
        p["hair"] = p["hair"] * 0.6
    pts, ex = _project(p, size)
    S = size * _SS
    canvas = _background(rng, (S, S), p["background"], style)
    flat = style in ("cartoon", "caricature")
    mask, curves, head = _draw_base(canvas, rng, pts, ex, p, flat)
    ink = (25, 20, 20) if flat else None
    if style == "cartoon":
        canvas = _cartoon(rng, canvas, mask, pts, ex, p, curves)
        _poly(canvas, head, ink, closed=True, thickness=0.04 * ex["unit"])
        _draw_features(canvas, pts, ex, p, curves, ink=ink, line=1.4)
    elif style == "caricature":
        _draw_features(canvas, pts, ex, p, curves, ink=ink, line=1.0)
        canvas = _caricature(rng, canvas, mask, pts, ex, p, curves, head)
        _poly(canvas, head, ink, closed=True, thickness=0.025 * ex["unit"])
    else:
        _draw_features(canvas, pts, ex, p, curves)
        canvas = _photo(rng, canvas, mask, pts, ex, p, curves)
        if style == "sketch":
            canvas = _sketch(rng, canvas)
            for g, c in curves.items():
                _poly(canvas, c + rng.normal(0, 0.6, c.shape), (70, 68, 66), closed=g in lm.CLOSED,
                      thickness=0.008 * ex["unit"])
        elif style == "painting":
            canvas = _painting(rng, canvas)
    img = cv2.resize(np.clip(canvas, 0, 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    # supersampled pixel centres -> output pixel centres
    to_out = lambda q: (np.asarray(q) + 0.5) / _SS - 0.5  # noqa: E731
    landmarks = to_out(pts)
    return Face(img, landmarks, style, seed, {g: to_out(c) for g, c in curves.items()},
                {k: v for k, v in p.items() if np.isscalar(v)})


def _write_one(job: tuple) -> None:
    path, seed, style, size = job
    face = render_face(seed, style, size)
    ds.save_image(path, face.image)
    ds.write_pts(path.with_suffix(".pts"), face.landmarks)


def write_set(folder: str | Path, n: int, first_seed: int, style: str = "photo", size: int = 256,
              prefix: str | None = None, processes: int = 1, progress: bool = True,
              lines: bool = False) -> list[Path]:
    """Render faces of seeds ``first_seed .. first_seed + n - 1`` into `folder` in the
    300-W layout (``<prefix>_<i>.jpg`` + ``.pts``, i = 0 .. n - 1) and return the image
    paths. Faces already on disk are kept (rendering is deterministic), so an
    interrupted set resumes; `processes` > 1 renders in parallel. `lines`: progress as
    plain lines in a headless notebook (``lib.core.progress``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = prefix or style
    paths = [folder / f"{prefix}_{i:05d}.jpg" for i in range(n)]
    jobs = [(p, first_seed + i, style, size) for i, p in enumerate(paths)
            if not (p.exists() and p.with_suffix(".pts").exists())]
    desc = f"render {folder.name} ({style})"
    if processes > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(processes) as pool:
            for _ in track(pool.map(_write_one, jobs, chunksize=32), desc, progress, lines, total=len(jobs)):
                pass
    else:
        for job in track(jobs, desc, progress, lines):
            _write_one(job)
    return paths


def talking_head(seed: int, frames: int, width: int = 640, height: int = 480, style: str = "photo"):
    """Frames of one rendered person turning their head (yaw +-25 degrees, a little pitch
    and roll), talking (the mouth opening and closing) and blinking, centred in a
    `width` x `height` picture: yields (RGB frame, its exact (68, 2) landmarks)."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    for t in range(frames):
        phase = 2 * np.pi * t / max(frames, 1)
        face = render_face(seed, style, side, {
            "yaw": 25 * np.sin(phase), "pitch": 6 * np.sin(2 * phase), "roll": 5 * np.sin(phase + 1),
            "mouth_open": max(0.0, 0.18 * np.sin(2 * np.pi * t / 12)),
            "eye_open": 0.15 if t % 45 in (0, 1) else 1.0})
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = face.image[:, :1].mean(axis=0).astype(np.uint8)  # the render's edge colour
        frame[y0:y0 + side, x0:x0 + side] = face.image
        yield frame, face.landmarks + [x0, y0]
