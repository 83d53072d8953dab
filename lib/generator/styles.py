"""Artistic re-rendering of face photos, and geometry-aware style transfer.

Two uses in the study:

1. The stage-2 fine-tune of the landmark-guided diffusion model needs a small
   multi-domain set. The paper made it with a style-transfer GAN; here real
   photos are re-rendered by non-photorealistic OpenCV filters (``STYLES``).
   The filters do not move pixels, so the photo's landmarks stay valid.
2. The "geometry-aware style transfer" baseline in the manner of the Face of
   Art (Yaniv et al. 2019): the same filters plus a caricature exaggeration of
   the face geometry (``exaggerate``) applied to the image by a thin-plate
   spline (``tps_warp``), so the landmarks move with the picture
   (``geometric_style_transfer``).

Every style takes an RGB uint8 image of any size (32-512 px) and a numpy
Generator for small variations (palette, stroke strength and direction, paper
texture) and returns an RGB uint8 image of the same shape; it is deterministic
given the generator state. Spatial parameters scale with the image size so
64 px and 256 px faces look alike. Each style takes about 4-9 ms on one core at
256 px (more on a loaded machine).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ..core import landmarks as lm

StyleFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# ------------------------------------------------------------------ helpers

def _unit(img: np.ndarray) -> float:
    """Size factor: 1 at 256 px, so pixel parameters tuned there scale with the image."""
    return min(img.shape[:2]) / 256.0


def _odd(x: float, lo: int = 3) -> int:
    """Odd kernel size >= lo (OpenCV median/adaptive filters need odd sizes)."""
    k = max(lo, int(round(x)))
    return k if k % 2 else k + 1


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    # sigma below ~0.3 px is a no-op anyway; skipping avoids a degenerate kernel
    return cv2.GaussianBlur(x, (0, 0), sigma) if sigma > 0.3 else x


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _grey_rgb(value: np.ndarray, tint) -> np.ndarray:
    """Monochrome (0-255) picture on a tinted paper, as RGB float."""
    return value[..., None] * np.asarray(tint, np.float32)


def _dodge(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Colour-dodge of the gray image with its blurred negative: the classic pencil line
    image, white where flat and dark only at edges; returns values in [0, 1]."""
    inv_blur = _blur(255.0 - gray, sigma)
    return np.clip(gray / np.maximum(255.0 - inv_blur, 1.0), 0.0, 1.0)


def _strokes(rng: np.random.Generator, shape: tuple[int, int], length: float, angle: float,
             width: float = 0.0) -> np.ndarray:
    """Directional stroke texture: white noise (blurred to about `width` px) smeared along
    `angle` (degrees) over `length` px, normalised to zero mean and unit spread."""
    noise = _blur(rng.standard_normal(shape, dtype=np.float32), width)
    k = _odd(length)
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(angle), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(float(kernel.sum()), 1e-6)
    out = cv2.filter2D(noise, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return out / max(float(out.std()), 1e-6)


def _low_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth blotchy noise with features of about `cell` px (pigment granulation,
    uneven wash); made at low resolution and upsampled because that is cheap."""
    h, w = shape
    gh, gw = max(2, int(np.ceil(h / cell)) + 1), max(2, int(np.ceil(w / cell)) + 1)
    small = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _grain(rng: np.random.Generator, shape: tuple[int, int], sigma: float = 0.6) -> np.ndarray:
    """Fine paper tooth, unit spread."""
    g = _blur(rng.standard_normal(shape, dtype=np.float32), sigma)
    return g / max(float(g.std()), 1e-6)


def _dog_lines(gray: np.ndarray, sigma: float, threshold: float, width: float = 4.0) -> np.ndarray:
    """Ink-line strength in [0, 1] from a difference of Gaussians: positive on the dark
    side of every edge, so contours of eyes, nose, mouth and jaw are drawn."""
    g1 = _blur(gray, sigma)
    g2 = _blur(gray, 1.6 * sigma)
    return np.clip((g2 - g1 - threshold) / width, 0.0, 1.0)


def _saturate(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale colour away from each pixel's gray value (float32 in, float32 out)."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]  # much faster than a numpy mean
    return gray + (img - gray) * np.float32(factor)


def _flatten(img: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    """Edge-preserving smoothing into flat colour regions (float32 out). Above 128 px it
    runs at half resolution: regions are large anyway and it halves the cost."""
    h, w = img.shape[:2]
    if min(h, w) >= 128:
        half = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        half = cv2.edgePreservingFilter(half, flags=cv2.RECURS_FILTER, sigma_s=sigma_s / 2, sigma_r=sigma_r)
        return cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return cv2.edgePreservingFilter(img, flags=cv2.RECURS_FILTER, sigma_s=sigma_s,
                                    sigma_r=sigma_r).astype(np.float32)


def _ink_on_paper(ink: np.ndarray, ink_colour, paper) -> np.ndarray:
    """Composite an ink coverage map in [0, 1] over paper; paper may be a colour or an image."""
    ink = ink[..., None]
    return np.asarray(paper, np.float32) * (1.0 - ink) + np.asarray(ink_colour, np.float32) * ink


# ------------------------------------------------------------------ styles

def _pencil_sketch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Graphite on white paper: dodge lines, soft tonal shading, diagonal hatching in shadows."""
    s = _unit(img)
    g = _gray(img)
    lines = _dodge(g, s * rng.uniform(3.0, 6.0)) ** rng.uniform(1.8, 2.8)
    tone = _blur(g, 2.0 * s) / 255.0
    dark = np.clip(1.0 - tone / 0.65, 0.0, 1.0)
    hatch = np.clip(0.5 + 0.5 * _strokes(rng, g.shape, max(5.0, 9 * s), rng.uniform(35, 60)), 0.0, 1.0)
    # graphite keeps some of the photo's tones, unlike the binary ink styles
    value = lines * (0.78 + 0.22 * tone) * (1.0 - rng.uniform(0.45, 0.7) * dark * hatch)
    paper = 0.96 - 0.015 * np.abs(_grain(rng, g.shape))
    tint = np.array([1.0, 1.0, rng.uniform(0.96, 1.0)], np.float32)
    return _to_u8(_grey_rgb(255.0 * value * paper, tint))


def _colour_pencil(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coloured pencil: light, saturated pigment laid in visible strokes over pencil lines."""
    s = _unit(img)
    g = _gray(img)
    lines = _dodge(g, s * rng.uniform(2.0, 4.0)) ** rng.uniform(1.2, 1.7)
    col = _saturate(img.astype(np.float32), rng.uniform(1.3, 1.7))
    strokes = _strokes(rng, g.shape, max(5.0, 11 * s), rng.uniform(25, 65))
    density = rng.uniform(0.5, 0.7) * np.clip(0.8 + 0.3 * strokes, 0.2, 1.3)
    pigment = np.clip(255.0 - col, 0, 255) * density[..., None]
    paper = 252.0 - 3.0 * np.abs(_grain(rng, g.shape))[..., None]
    return _to_u8((paper - pigment) * lines[..., None])


def _cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cel cartoon: edge-preserving smoothing, posterised saturated colour, bold black outlines."""
    s = _unit(img)
    d = _odd(5 * s)
    smooth = img
    for _ in range(2):  # two cheap small bilaterals flatten more than one big one
        smooth = cv2.bilateralFilter(smooth, d, rng.uniform(50, 80), 3.0 * s + 1.0)
    n = int(rng.integers(4, 7))
    step = 256.0 / n
    flat = (np.floor(smooth.astype(np.float32) / step) + 0.5) * step
    flat = _saturate(flat, rng.uniform(1.3, 1.6)) * rng.uniform(1.0, 1.12)
    med = cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), _odd(5 * s))
    edges = cv2.adaptiveThreshold(med, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY,
                                  _odd(9 * s), float(rng.uniform(3.0, 5.0)))
    if s >= 0.75:
        edges = cv2.erode(edges, np.ones((2, 2), np.uint8))  # bolder outlines at larger sizes
    return _to_u8(flat * (edges[..., None] / 255.0))


def _oil_painting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Oil on canvas: flattened colour patches, warm varnish, brush strokes with impasto relief."""
    s = _unit(img)
    base = _flatten(cv2.medianBlur(img, _odd(5 * s)), float(rng.uniform(20, 35) * s), float(rng.uniform(0.25, 0.35)))
    # paint back the fine drawing of eyes and mouth that the flattening softened
    g = _gray(img)
    base += (0.6 * (g - _blur(g, 1.5 * s + 0.5)))[..., None]
    base = _saturate(base, rng.uniform(1.3, 1.6))
    base *= np.array([1.06, 1.0, rng.uniform(0.8, 0.88)], np.float32)  # warm yellowed varnish
    # bristle marks: noise widened to a few px, then dragged along one brush direction
    height = _strokes(rng, img.shape[:2], 17 * s, rng.uniform(0, 180), width=1.3 * s)
    light = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
    relief = rng.uniform(6, 9) * light / max(float(light.std()), 1e-6)
    out = base * (1.0 + rng.uniform(0.035, 0.055) * height[..., None]) + relief[..., None]
    return _to_u8(out)


def _watercolour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Watercolour: transparent light washes, pigment pooled at region edges, granulation."""
    s = _unit(img)
    base = _flatten(img, float(rng.uniform(40, 70) * s), float(rng.uniform(0.35, 0.5)))
    pigment = np.clip(255.0 - _saturate(base, rng.uniform(1.1, 1.4)), 0, 255) * rng.uniform(0.65, 0.82)
    # pigment collects at the borders of each wash: darken where colour changes
    edge = np.abs(base - _blur(base, 1.5 * s + 0.5)).mean(axis=2)
    pool = np.clip(edge * rng.uniform(2.5, 4.0) / 255.0, 0.0, 0.6)
    gran = 1.0 + 0.08 * _low_noise(rng, img.shape[:2], 14 * s + 2) + 0.05 * _grain(rng, img.shape[:2])
    pigment = pigment * gran[..., None] + 255.0 * pool[..., None] * (pigment / 255.0 + 0.25)
    pigment = _blur(pigment, 0.6 * s)  # wet edges bleed a little
    # "line and wash": a light pen underdrawing keeps eyes, nose, mouth and jaw legible
    pen = _dog_lines(_gray(img), max(0.6, 1.0 * s), 2.0, 5.0) * rng.uniform(0.55, 0.75)
    paper = np.array([253.0, 251.0, rng.uniform(240, 248)], np.float32)
    return _to_u8(_ink_on_paper(pen, (70, 58, 52), paper - pigment))


def _ink_drawing(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pen and ink: crisp contour lines, solid spotted blacks in the deepest shadows, stippled mid-darks."""
    s = _unit(img)
    g = _gray(img)
    lines = _dog_lines(g, max(0.6, rng.uniform(0.8, 1.2) * s), rng.uniform(1.5, 3.0), 3.0)
    gb = _blur(g, 0.8 * s)
    lo, mid = np.percentile(gb, [rng.uniform(10, 18), rng.uniform(35, 45)])
    fill = np.clip((lo - gb) / 4.0 + 0.5, 0.0, 1.0)
    stipple_p = 0.45 * np.clip((mid - gb) / max(mid - lo, 1.0), 0.0, 1.0) ** 1.5
    stipple = (rng.random(g.shape, dtype=np.float32) < stipple_p).astype(np.float32)
    ink = np.maximum(np.maximum(lines, fill), stipple)
    inks = [(14, 14, 18), (62, 36, 20), (20, 26, 62)]  # black, sepia, indigo
    paper = (255, 253, 246) if rng.random() < 0.5 else (250, 244, 228)
    return _to_u8(_ink_on_paper(ink, inks[int(rng.integers(len(inks)))], paper))


_POP_PALETTES = np.array([
    [(20, 18, 60), (232, 30, 120), (255, 212, 0), (255, 250, 235)],
    [(10, 10, 10), (0, 160, 222), (255, 92, 58), (255, 236, 80)],
    [(46, 0, 74), (255, 58, 58), (60, 222, 120), (255, 255, 200)],
    [(0, 0, 0), (250, 110, 0), (80, 200, 255), (255, 228, 242)],
    [(30, 30, 90), (150, 60, 220), (255, 150, 200), (250, 255, 120)],
], np.float32)


def _pop_art(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Warhol / Lichtenstein pop art: four flat tones from a loud palette, Ben-Day dots, black outlines."""
    s = _unit(img)
    smooth = cv2.bilateralFilter(img, _odd(5 * s), 60, 3.0 * s + 1.0)
    g = _gray(smooth)
    # thresholds at quantiles so every picture uses all four tones whatever its exposure
    qs = np.array([0.2, 0.45, 0.72]) + rng.uniform(-0.05, 0.05, 3)
    level = np.digitize(g, np.quantile(g, qs))
    pal = _POP_PALETTES[int(rng.integers(len(_POP_PALETTES)))].copy()
    if rng.random() < 0.5:
        pal[[1, 2]] = pal[[2, 1]]
    out = pal[level]
    period = max(3.0, 6.0 * s * rng.uniform(0.9, 1.1))
    h, w = g.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx + yy) / np.sqrt(2), (xx - yy) / np.sqrt(2)  # 45-degree dot screen
    du = (u % period) - period / 2
    dv = (v % period) - period / 2
    dots = (du * du + dv * dv) < (0.33 * period) ** 2
    out[(level == 2) & dots] = pal[1]
    outline = cv2.adaptiveThreshold(cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), _odd(5 * s)), 255,
                                    cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, _odd(9 * s), 4.0)
    out[outline == 0] = pal[0] * 0.3
    return _to_u8(out)


def _engraving(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copperplate engraving: parallel lines that swell with darkness and bend with the form,
    cross-hatched in the shadows, contour lines, brown-black ink on cream."""
    s = _unit(img)
    g = _gray(img)
    gb = _blur(g, 0.7 * s + 0.3) / 255.0
    dark = np.clip(1.0 - gb, 0.0, 1.0) ** rng.uniform(1.0, 1.4)
    period = max(3.0, 5.0 * s * rng.uniform(0.9, 1.15))
    a = np.deg2rad(rng.uniform(20, 70))
    h, w = g.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bend = rng.uniform(0.8, 1.5) * period * gb  # lines bend with the shading, like a burin following form

    def layer(angle: float, cover: np.ndarray) -> np.ndarray:
        u = xx * np.cos(angle) + yy * np.sin(angle) + bend
        wave = 0.5 + 0.5 * np.cos(2 * np.pi * u / period)
        return np.clip((cover - wave) * period / 2.0, 0.0, 1.0)

    ink = np.maximum(layer(a, dark), layer(a + np.pi / 2, np.clip(2.0 * dark - 1.0, 0.0, 1.0)))
    ink = np.maximum(ink, _dog_lines(g, max(0.6, 0.9 * s), 2.0, 3.0))
    ink_colour = (40, 28, 22) if rng.random() < 0.5 else (18, 18, 24)
    paper = np.array([246, 236, 208], np.float32) + rng.uniform(-6, 6, 3).astype(np.float32)
    return _to_u8(_ink_on_paper(ink, ink_colour, paper))


def _charcoal(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Charcoal and white chalk on toned paper: smudged darks catching on the paper tooth."""
    s = _unit(img)
    g = _gray(img)
    gb = _blur(g, 1.2 * s + 0.3)
    lo, hi = np.percentile(gb, [5, 92])
    t = np.clip((gb - lo) / max(hi - lo, 1.0), 0.0, 1.0)
    tooth = _grain(rng, g.shape, 0.7)
    dens = np.clip((1.0 - t) * rng.uniform(1.1, 1.35) - 0.12 * tooth - 0.05, 0.0, 1.0)
    dens = 0.6 * dens + 0.4 * _blur(dens, 2.5 * s + 0.5)  # finger smudging
    dens = np.maximum(dens, _dog_lines(g, max(0.7, 1.2 * s), 2.0, 4.0))
    chalk = np.clip((t - 0.8) * 5.0 - 0.15 * tooth, 0.0, 1.0)
    paper = np.array([rng.uniform(150, 175)] * 3, np.float32) * np.array([1.0, 0.98, 0.93], np.float32)
    out = _ink_on_paper(dens, (28, 26, 26), paper)
    out = out * (1.0 - chalk[..., None]) + 242.0 * chalk[..., None]
    return _to_u8(out)


STYLES: dict[str, StyleFn] = {
    "pencil sketch": _pencil_sketch,
    "colour pencil": _colour_pencil,
    "cartoon": _cartoon,
    "oil painting": _oil_painting,
    "watercolour": _watercolour,
    "ink drawing": _ink_drawing,
    "pop art": _pop_art,
    "engraving": _engraving,
    "charcoal": _charcoal,
}


PHOTO = "photo"  # the image as it is: real photos keep a prompt of their own in the stage-2 set


def stylise(image: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """Re-render an RGB uint8 image in `style` (or return it as it is for ``"photo"``);
    landmarks of the input stay valid."""
    if style != PHOTO and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known styles: {PHOTO}, {', '.join(STYLES)}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    if style == PHOTO:
        return np.array(image, dtype=np.uint8)
    # filters assume 8-bit ranges (dodge, thresholds, OpenCV photo module)
    return STYLES[style](np.ascontiguousarray(image, dtype=np.uint8), rng)


def style_prompt(style: str) -> str:
    """Text prompt for the diffusion model, in the paper's format."""
    return f"a portrait of {style} style"


# ------------------------------------------------------------------ geometry

_TPS_REG = 1e-6  # regulariser (normalised units): keeps coincident control points solvable


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared distances (per coordinate: a sum over a length-2 axis is slow)."""
    dx = a[:, None, 0] - b[None, :, 0]
    dy = a[:, None, 1] - b[None, :, 1]
    return dx * dx + dy * dy


def _tps_kernel(d2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2; the clamp only matters at r = 0, where 0 * log(tiny) gives U(0) = 0."""
    return d2 * np.log(np.maximum(d2, 1e-30))


def _tps_solve(centres: np.ndarray, values: np.ndarray, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Solve for the TPS weights (n, 2) and affine part (3, 2) interpolating centres -> values."""
    n = len(centres)
    d2 = _sq_dist(centres, centres)
    P = np.hstack([np.ones((n, 1)), centres])
    A = np.zeros((n + 3, n + 3))
    A[:n, :n] = _tps_kernel(d2) + reg * np.eye(n)
    A[:n, n:] = P
    A[n:, :n] = P.T
    b = np.zeros((n + 3, 2))
    b[:n] = values
    try:
        sol = np.linalg.solve(A, b)
    except np.linalg.LinAlgError:  # e.g. all control points collinear
        sol = np.linalg.lstsq(A, b, rcond=None)[0]
    return sol[:n], sol[n:]


def _tps_eval(points: np.ndarray, centres: np.ndarray, weights: np.ndarray, affine: np.ndarray) -> np.ndarray:
    d2 = _sq_dist(points, centres)
    return _tps_kernel(d2) @ weights + affine[0] + points @ affine[1:]


def _border_anchors(h: int, w: int) -> np.ndarray:
    """Corners and edge midpoints: fixed control points that keep the background in place."""
    xs, ys = (0.0, (w - 1) / 2, w - 1.0), (0.0, (h - 1) / 2, h - 1.0)
    return np.array([(x, y) for y in ys for x in xs if not (x == xs[1] and y == ys[1])])


def tps_warp(image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray,
             grid_step: float = 4.0) -> np.ndarray:
    """Warp `image` so that the content at `src_points` moves to `dst_points` (pixel
    coordinates, x then y), by a thin-plate spline. The image border is pinned.

    The inverse map (output pixel -> source pixel) is a TPS fitted from dst to src,
    evaluated on a coarse grid every `grid_step` px and its displacement upsampled
    bilinearly, which is exact at the grid samples and smooth in between.
    """
    h, w = image.shape[:2]
    src = np.asarray(src_points, np.float64).reshape(-1, 2)
    dst = np.asarray(dst_points, np.float64).reshape(-1, 2)
    if src.shape != dst.shape:
        raise ValueError(f"src_points {src.shape} and dst_points {dst.shape} differ in shape")
    anchors = _border_anchors(h, w)
    scale = float(max(h, w))  # normalised coordinates make the regulariser size-independent
    centres = np.vstack([dst, anchors]) / scale
    values = np.vstack([src, anchors]) / scale
    weights, affine = _tps_solve(centres, values, _TPS_REG)
    gh, gw = min(h, max(8, int(np.ceil(h / grid_step)))), min(w, max(8, int(np.ceil(w / grid_step))))
    # sample where cv2.resize(INTER_LINEAR) puts its source pixels, so upsampling interpolates exactly
    gx = (np.arange(gw) + 0.5) * w / gw - 0.5
    gy = (np.arange(gh) + 0.5) * h / gh - 0.5
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    disp = _tps_eval(grid / scale, centres, weights, affine) * scale - grid
    disp = disp.reshape(gh, gw, 2).astype(np.float32)
    if (gh, gw) != (h, w):
        disp = cv2.resize(disp, (w, h), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(image, xx + disp[..., 0], yy + disp[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _align_similarity(shape: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation; no reflection) of
    `shape` onto `target`; with 2D points as complex numbers it is one division."""
    zs = shape[:, 0] + 1j * shape[:, 1]
    zt = target[:, 0] + 1j * target[:, 1]
    cs, ct = zs.mean(), zt.mean()
    denom = np.sum(np.abs(zs - cs) ** 2)
    a = np.sum(np.conj(zs - cs) * (zt - ct)) / denom if denom > 0 else 1.0
    z = a * (zs - cs) + ct
    return np.stack([z.real, z.imag], -1)


def _box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Box centre and size (geometric mean of width and height, the usual face-size measure)."""
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, float(np.sqrt(max((hi - lo).prod(), 1e-12)))


def exaggerate(points: np.ndarray, mean_shape: np.ndarray, rng: np.random.Generator,
               strength: tuple[float, float] = (0.3, 0.8), per_part: bool = False) -> np.ndarray:
    """Caricature the face geometry: push each landmark away from the similarity-aligned
    mean shape by k ~ U(strength), p + k (p - aligned_mean) (one k for the face, or with
    `per_part` one per facial part), then rescale isotropically about the box centre so
    the box keeps its original centre and size (the face stays where it was in the picture)."""
    p = np.asarray(points, np.float64)
    m = np.asarray(mean_shape, np.float64)
    if p.shape != m.shape:
        raise ValueError(f"points {p.shape} and mean_shape {m.shape} differ in shape")
    aligned = _align_similarity(m, p)
    if per_part:
        k = np.zeros((len(p), 1))
        for idx in lm.GROUPS.values():
            k[idx] = rng.uniform(*strength)
    else:
        k = rng.uniform(*strength)
    return _keep_box(p, p + k * (p - aligned))


def _keep_box(reference: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """`moved` rescaled isotropically about its box centre onto the centre and size of `reference`'s box."""
    (c0, size0), (c1, size1) = _box(reference), _box(moved)
    return (moved - c1) * (size0 / size1) + c0


def shape_transfer(points: np.ndarray, shapes: np.ndarray, rng: np.random.Generator,
                   weight: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """Give a face another face's geometry: one of `shapes` (K, 68, 2), e.g. the few real
    faces of a domain, drawn at random, aligned onto `points` by a similarity transform, and
    each landmark moved toward it, p + w (aligned - p), w ~ U(weight) (1: that face's shape;
    above 1: beyond it); then rescaled as ``exaggerate`` does, so the box keeps its centre and size."""
    p = np.asarray(points, np.float64)
    shapes = np.asarray(shapes, np.float64)
    if shapes.ndim != 3 or shapes.shape[1:] != p.shape or not len(shapes):
        raise ValueError(f"shapes {shapes.shape}: expected (K, {len(p)}, 2) landmark sets like points {p.shape}")
    aligned = _align_similarity(shapes[rng.integers(len(shapes))], p)
    return _keep_box(p, p + rng.uniform(*weight) * (aligned - p))


def sample_shapes(shapes: np.ndarray, n: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """`n` new shapes from a shape model of `shapes` (K, 68, 2), e.g. the few real faces of a domain:
    the shapes aligned by generalised Procrustes (similarity, onto their mean), and new ones drawn
    from the Gaussian of their deviations from that mean, in the span of the K shapes, with its
    spread times `scale` (1: the few shapes' own spread; 0: their mean shape). They differ from
    every one of the K shapes while keeping what they share (``shape_transfer`` takes them).
    Returned in the frame of the aligned mean (n, 68, 2)."""
    shapes = np.asarray(shapes, np.float64)
    if shapes.ndim != 3 or shapes.shape[2] != 2 or len(shapes) < 2:
        raise ValueError(f"shapes {shapes.shape}: expected (K, N, 2) landmark sets, K >= 2")
    mean = shapes[0]
    for _ in range(5):  # generalised Procrustes: align every shape onto the running mean
        aligned = np.stack([_align_similarity(s, mean) for s in shapes])
        mean = _align_similarity(aligned.mean(0), shapes[0])
    deviations = (aligned - aligned.mean(0)).reshape(len(shapes), -1) / np.sqrt(len(shapes) - 1)
    z = rng.standard_normal((n, len(shapes)))
    return (aligned.mean(0).reshape(-1) + scale * z @ deviations).reshape(n, *shapes.shape[1:])


def geometric_style_transfer(image: np.ndarray, points: np.ndarray, mean_shape: np.ndarray, style: str,
                             rng: np.random.Generator, strength: tuple[float, float] = (0.3, 0.8)
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Face-of-Art-style baseline: exaggerate the landmarks, TPS-warp the image to
    follow them, then stylise. Returns (stylised image, new landmarks)."""
    if style not in STYLES:  # fail before the warp, with the same message as stylise
        stylise(image, style, rng)
    new_points = exaggerate(points, mean_shape, rng, strength)
    warped = tps_warp(image, points, new_points)
    return stylise(warped, style, rng), new_points
