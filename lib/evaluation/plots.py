"""Figures shared by the notebooks: face grids with landmarks, CED curves,
hardest faces. Where a data set's licence forbids redistribution
(``pixels=False``), faces are drawn as landmarks on a blank canvas so that
committed figures and notebooks hold no licensed pixels."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..core import crop as cr
from ..data import datasets as ds
from ..core import landmarks as lm
from ..core import metrics


def _show_face(ax, sample: ds.Sample, pixels: bool, margin: float = 0.25, size: int = 160,
               pred: np.ndarray | None = None, title: str = ""):
    box = cr.box_from_landmarks(sample.landmarks, margin)
    m = cr.crop_matrix(box, size)
    gt = cr.apply(m, sample.landmarks)
    if pixels:
        ax.imshow(cr.crop(ds.load_image(sample.image_path), box, size)[0])
    else:
        ax.imshow(np.full((size, size, 3), 235, np.uint8))
    for g, idx in lm.GROUPS.items():
        loop = idx + [idx[0]] if g in lm.CLOSED else idx
        ax.plot(gt[loop, 0], gt[loop, 1], "-", color="lime", lw=0.8)
    ax.scatter(gt[:, 0], gt[:, 1], s=3, c="lime")
    if pred is not None:
        p = cr.apply(m, pred)
        ax.scatter(p[:, 0], p[:, 1], s=3, c="red")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def face_grid(groups: dict[str, list[ds.Sample]], per_row: int = 6, pixels: bool = True):
    """One row per group (domain or split) of faces with their landmarks drawn."""
    fig, axes = plt.subplots(len(groups), per_row, figsize=(1.6 * per_row, 1.7 * len(groups)), squeeze=False)
    for r, (name, samples) in enumerate(groups.items()):
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(samples):
                _show_face(ax, samples[c], pixels, title=name if c == 0 else "")
    fig.tight_layout()
    return fig


def ced_plot(errors: dict[str, np.ndarray], title: str, threshold: float = 0.10):
    """Cumulative error distribution per method, up to `threshold`."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for name, e in errors.items():
        x, y = metrics.ced(e, threshold)
        ax.plot(x * 100, y, label=f"{name} (AUC {metrics.auc(e, threshold):.3f})")
    ax.set_xlabel("NME, inter-ocular (%)")
    ax.set_ylabel("fraction of faces")
    ax.set_xlim(0, threshold * 100)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def ced_table(errors: dict[str, np.ndarray], threshold: float = 0.10) -> "pd.DataFrame":
    """The CED curves in long form (method, nme in %, fraction of faces), for `dvc plots`."""
    import pandas as pd
    parts = []
    for name, e in errors.items():
        x, y = metrics.ced(e, threshold, steps=200)
        parts.append(pd.DataFrame({"method": name, "nme": np.round(x * 100, 4), "fraction": np.round(y, 4)}))
    return pd.concat(parts, ignore_index=True)


def hardest_faces(samples: list[ds.Sample], preds: np.ndarray, errors: np.ndarray, k: int = 6,
                  pixels: bool = True, title: str = ""):
    """The k faces with the largest error: ground truth green, prediction red."""
    order = np.argsort(errors)[::-1][:k]
    fig, axes = plt.subplots(1, k, figsize=(1.8 * k, 2.1), squeeze=False)
    for ax, i in zip(axes[0], order):
        _show_face(ax, samples[i], pixels, pred=preds[i], title=f"NME {errors[i] * 100:.1f}%")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def training_time(history) -> str:
    """'2,000 steps, 22.7 min of training' from a history with the scaffold's cumulative `seconds`."""
    last = history.iloc[-1]
    minutes = f", {last['seconds'] / 60:.1f} min of training" if "seconds" in history else ""
    return f"{int(last['step']):,} steps{minutes}"


def training_curves(history, title: str, window: int = 50):
    """Training loss per step (raw, faint, and smoothed) and, where the history has
    it, validation NME with the kept step marked (a generator trained with the
    consistency loss: the critic's NME on its one-step estimates); the title carries
    steps and time."""
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="paper")
    if "val_nme" not in history and "consistency" in history:  # a generator with the consistency loss
        val = history.assign(val_nme=history["consistency"].rolling(window, min_periods=1).mean() * 100)
        val = val.iloc[window - 1::window] if len(val) > window else val
    else:
        val = history.dropna(subset=["val_nme"]) if "val_nme" in history else history.iloc[:0]
    fig, axes = plt.subplots(1, 2 if len(val) else 1, figsize=(9 if len(val) else 5, 3.2), squeeze=False)
    a = axes[0, 0]
    smooth = history.assign(smoothed=history["loss"].rolling(window, min_periods=1).mean())
    sns.lineplot(data=history, x="step", y="loss", ax=a, alpha=0.25, lw=0.6)
    sns.lineplot(data=smooth, x="step", y="smoothed", ax=a, lw=1.4, label=f"mean of {window} steps")
    a.set_yscale("log")
    a.set_ylabel("training loss")
    if len(val):
        b = axes[0, 1]
        sns.lineplot(data=val, x="step", y="val_nme", ax=b, marker="o")
        best = val.loc[val["val_nme"].idxmin()]
        if "consistency" in history:
            b.set_ylabel(f"critic NME on the one-step estimate (%, mean of {window})")
        else:
            b.plot([best["step"]], [best["val_nme"]], "r*", ms=12, label=f"kept: step {int(best['step'])}")
            b.set_ylabel("validation NME (%)")
            b.legend(fontsize=7)
    fig.suptitle(f"{title} ({training_time(history)})", fontsize=9)
    fig.tight_layout()
    return fig


def save_curve(history, path, window: int = 50, points: int = 200) -> "pd.DataFrame":
    """A training run's curve as a small CSV for `dvc plots` (``results/<profile>/plots/``): the
    loss as the mean of ``window`` steps and, where the history has it, the validation NME, at
    the steps it was measured; a history without it is thinned to about ``points`` rows."""
    import pandas as pd
    smooth = history.assign(loss=history["loss"].rolling(window, min_periods=1).mean())
    if "val_nme" in history and history["val_nme"].notna().any():
        curve = smooth.dropna(subset=["val_nme"])[["step", "loss", "val_nme"]]
    else:
        every = max(1, -(-len(smooth) // points))
        rows = sorted(set(range(every - 1, len(smooth), every)) | {len(smooth) - 1})
        curve = smooth.iloc[rows][["step", "loss"]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    curve.astype({"step": int}).to_csv(path, index=False, float_format="%.6g")
    return pd.read_csv(path)


def latest_samples(folder) -> np.ndarray:
    """The newest sample grid a training run wrote (``samples/step_*.png``)."""
    from pathlib import Path
    grids = sorted(Path(folder).glob("step_*.png"))
    if not grids:
        raise FileNotFoundError(f"{folder}: no sample grids written yet")
    return ds.load_image(grids[-1])


def show_figure(fig, path=None, quality: int = 85, dpi: float | None = None):
    """Show a matplotlib figure in the notebook embedded as JPEG (faces and noisy grids
    take about a tenth of their PNG size, which keeps committed executed notebooks
    small), write it to `path` as JPEG if given, and close it. `dpi`: matplotlib's
    default when None. Returns nothing, so a call that ends a cell is not shown twice."""
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=dpi, pil_kwargs={"quality": quality})
    plt.close(fig)
    if path is not None:
        with open(path, "wb") as f:
            f.write(buf.getvalue())
    display(Image(data=buf.getvalue(), format="jpeg"))


def show_image(image: np.ndarray, title: str = "", width: float = 9.0, quality: int = 85):
    """Show an image (a grid of generated faces, say) under a title in the notebook,
    embedded as JPEG (``show_figure``)."""
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(width, width * h / w + 0.4))
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    show_figure(fig, quality=quality)
