"""The generator's training stages as functions of a profile's ``diffusion``
params section, shared by notebooks 02 / 03 and ``lib/launch.py`` (several
processes under ``accelerate launch``): whichever runs first trains, the other
finds the finished model and resumes with nothing left to do.

    autoencoder  the small profiles' latent space (none for a pretrained base)

A stage with ``consistency_weight`` also takes a landmark critic (``lib.detector.critic``,
trained on ``stage1_pairs`` into ``critic_dir``), which the caller builds and passes in.
    stage1       real faces, empty prompts
    stage2       the multi-domain set with style prompts, from stage 1
    onestep      the multi-domain set from scratch (the ablation)

The multi-domain set of stage 2 and the one-step model (``make_multidomain``, in
``generated/<profile>/multidomain``) is built by notebook 03 or ``python -m lib.launch multidomain``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.training import TrainResult, seed_everything
from ..data import datasets as ds
from . import autoencoder
from . import training
from .components import build_components
from ..core.progress import track
from .pairs import PairSet, resize_pair
from .sampling import load_components
from . import synthesis
from .styles import PHOTO, style_prompt, stylise

GENERATORS = ("stage1", "stage2", "onestep")
PREVIEW_FACES = 8


def stage1_pairs(data_dir: Path, resolution: int, errors: list | None = None) -> tuple[PairSet, PairSet]:
    """Real training and validation faces with empty prompts."""
    crops = Path(data_dir) / "crops"
    return (PairSet(ds.read_dataset(crops / "train", "300w", errors), resolution, prompt="", errors=errors),
            PairSet(ds.read_dataset(crops / "val", "300w", errors), resolution, prompt="", errors=errors))


def multidomain_pairs(multidomain: Path, resolution: int, repeat: int) -> tuple[PairSet, int, list[str]]:
    """The stage-2 set: filtered real faces plus the few real domain faces
    repeated `repeat` times. Returns the pairs, the number of real domain faces
    and the styles in order of first appearance."""
    samples = ds.read_dataset(multidomain, "synthetic")
    if not samples:
        raise FileNotFoundError(f"{multidomain}: no multi-domain set; notebook 03 makes it "
                                "(or: python -m lib.launch multidomain --profile <profile>)")
    pairs = PairSet([s for s in samples if s.meta["seed"] != ""], resolution, prompt=None)  # filtered faces
    real = PairSet([s for s in samples if s.meta["seed"] == ""], resolution, prompt=None)
    for _ in range(repeat):
        pairs = pairs + real
    return pairs, len(real), list(dict.fromkeys(s.meta["style"] for s in samples))


def fewshot_splits(data_dir: Path) -> list[str]:
    """The prepared ``fewshot_<domain>`` splits of a profile (its few real domain faces)."""
    return sorted(p.stem for p in (Path(data_dir) / "manifests").glob("fewshot_*.csv"))


def make_multidomain(diffusion: dict, data_dir: Path, generated: Path, errors: list | None = None) -> list[dict]:
    """Write the multi-domain set of stage 2 and the one-step model to ``generated/multidomain``
    (images, ``.pts`` and ``manifest.csv``) and return its manifest rows: the real training faces
    restyled by the filters (``multidomain``: ``filter_styles``, ``per_style`` faces each, chosen by
    ``seed``) and the few real domain faces of every ``fewshot_<domain>`` split, with their domain as
    the style. Deterministic; faces already written are kept. `errors`: unreadable faces are listed
    there and skipped (None: raise)."""
    md = diffusion["multidomain"]
    data_dir, out = Path(data_dir), Path(generated) / "multidomain"
    train = ds.read_dataset(data_dir / "crops" / "train", "300w", errors)
    if not train:
        raise FileNotFoundError(f"{data_dir / 'crops' / 'train'}: no prepared training faces; run data prep first")
    rows = synthesis.restyle(train, md["filter_styles"], md["per_style"], out, md["seed"], errors=errors)
    for split in fewshot_splits(data_dir):
        faces = ds.read_dataset(data_dir / "crops" / split, "300w", errors)
        rows += synthesis.add_real(faces, split.removeprefix("fewshot_"), out)
    synthesis.write_manifest(out, rows)
    return rows


def preview(data_dir: Path, resolution: int, styles: list[str] | None = None) -> tuple:
    """Fixed validation landmarks, prompts (one style per column, or empty) and seeds for the sample grids."""
    points = PairSet(ds.read_dataset(Path(data_dir) / "crops" / "val", "300w")[:PREVIEW_FACES], resolution).points
    k = len(points)
    prompts = [style_prompt(styles[i % len(styles)]) for i in range(k)] if styles else [""] * k
    return points, prompts, list(range(k))


def restyled_copies(samples: list[ds.Sample], resolution: int, styles: list[str], share: float, seed: int,
                    errors: list | None = None) -> np.ndarray:
    """A restyled copy of a `share` of `samples` (each in one of `styles`, drawn by the
    stage-2 set's filters at crop size, then brought to `resolution`), as (N, R, R, 3)
    uint8. The autoencoder trains on them beside the photos, so its latent space can
    hold the styles stage 2 asks for, as Stable Diffusion's, trained on all kinds of
    images, can."""
    if not styles or share <= 0:
        return np.zeros((0, resolution, resolution, 3), np.uint8)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(samples), int(round(share * len(samples))), replace=False))
    out = []
    for i in track(chosen, desc="restyle autoencoder faces", enabled=len(chosen) > 50):
        s = samples[i]
        try:
            img = stylise(ds.load_image(s.image_path), styles[int(rng.integers(len(styles)))], rng)
        except ds.BadInput as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        out.append(resize_pair(img, s.landmarks, resolution)[0])
    return np.array(out, np.uint8).reshape(-1, resolution, resolution, 3)


def train_autoencoder(diffusion: dict, data_dir: Path, models: Path, progress: bool = True) -> TrainResult | None:
    """The small profiles' autoencoder (cached in ``models/autoencoder``): the real training
    faces plus restyled copies of a share of them (``autoencoder_train.style_share``) in the
    stage-2 set's filter styles (``multidomain.filter_styles``); None for a pretrained base."""
    model_cfg = diffusion["model"]
    if model_cfg.get("pretrained"):
        return None
    res = model_cfg["resolution"]
    train, val = stage1_pairs(data_dir, res)
    settings = dict(diffusion["autoencoder_train"])
    if settings.get("style_share"):
        settings["styles"] = [s for s in diffusion["multidomain"]["filter_styles"] if s != PHOTO]
    cfg = autoencoder.AutoencoderTrainConfig(**settings)
    restyled = restyled_copies(ds.read_dataset(Path(data_dir) / "crops" / "train", "300w"), res, list(cfg.styles),
                               cfg.style_share, cfg.seed)
    return autoencoder.train(np.concatenate([train.images, restyled]), val.images,
                             {**model_cfg["autoencoder"], "resolution": res}, cfg, Path(models) / "autoencoder",
                             progress=progress)


def critic_dir(models: Path) -> Path:
    """Where notebook 02 trains the critic: inside the stage-1 model, which stage 2 and one-step build on."""
    return Path(models) / "stage1" / "critic"


def uses_critic(diffusion: dict) -> bool:
    """Whether a stage trains with the landmark-consistency loss (and so needs a critic)."""
    return any(diffusion[g].get("consistency_weight") for g in GENERATORS if g in diffusion)


def train_generator(name: str, diffusion: dict, data_dir: Path, generated: Path, models: Path,
                    stop_at: int | None = None, progress: bool = True, critic=None) -> TrainResult:
    """Train generator `name` (one of GENERATORS) into ``models/<name>`` (`critic`: see ``training.train``)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    model_cfg, res = diffusion["model"], diffusion["model"]["resolution"]
    models = Path(models)
    cfg = training.TrainConfig(**diffusion[name])
    seed_everything(cfg.seed, cfg.threads)  # new weights (UNet, ControlNet) start alike in every run and process
    if name == "stage1":
        pairs, _ = stage1_pairs(data_dir, res)
        components, init, styles = build_components(model_cfg, models / "autoencoder"), None, None
    else:
        pairs, _, styles = multidomain_pairs(Path(generated) / "multidomain", res, diffusion["multidomain"]["fewshot_repeat"])
        if name == "stage2":
            components, init = load_components(models / "stage1"), models / "stage1"
        else:
            components, init = build_components(model_cfg, models / "autoencoder"), None
    return training.train(pairs, components, cfg, models / name, model_cfg, init=init,
                          preview=preview(data_dir, res, styles), stop_at=stop_at, progress=progress, critic=critic)
