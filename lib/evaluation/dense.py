"""Dense landmarks from rendered faces, label transfer to the 68 points, and
unsupervised domain adaptation (notebook 08).

The line of work of industrial synthetic-face studies (e.g. Synthesis AI's
facial-landmark case study): a detector of many points trained on rendered
faces, a small label-transfer network to the 68 iBUG points trained on real
faces, and adaptation from rendered to real faces without real labels. Rows
(``dense`` in ``params/<profile>.yaml``):

- **rendered only**: the dense detector (``lib.detector.dense``) trained on the
  rendered faces of notebook 07 with their exact dense labels, read at its
  nearest dense points to the 68;
- **label transfer (frozen / joint)**: that detector and an MLP to the 68
  points, trained on real 300-W training faces with the detector frozen, then
  jointly;
- **adaptation (DALN / discriminator)**: the dense detector trained on rendered
  faces plus unlabelled real training faces (cropped around the face finder's
  box; their landmarks are never read), selected on rendered validation faces;
- **real only**: the 68-point hourglass of the same size trained on the real
  faces for the same steps.

Every row is scored on the real test sets with NME normalised by the
inter-pupil distance (the case study's metric) beside the inter-ocular NME,
FR and AUC of Table 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import crop as cr
from ..core import landmarks as lm
from ..core.faces import FaceFinder
from ..core.progress import track
from ..data import datasets as ds
from ..detector import training as det
from ..detector.dense import Adaptation
from ..detector.network import NetworkConfig

ROWS = ("rendered only", "label transfer (frozen)", "label transfer (joint)", "adaptation (DALN)",
        "adaptation (discriminator)", "real only")


def dense_faces(samples: list[ds.Sample], errors: list | None = None) -> det.FaceSet:
    """Faces with their dense labels (``landmarks.to_dense`` of their 68 points: exact for rendered faces)."""
    faces = det.FaceSet(samples, errors)
    return det.FaceSet.from_arrays(faces.images, [lm.to_dense(p) for p in faces.points])


def network(cfg: dict, arch: str = "hourglass", points: int = lm.N_POINTS) -> NetworkConfig:
    """The section's network as a 68-point hourglass, a dense hourglass (``points`` N_DENSE)
    or a transfer network."""
    return NetworkConfig(**{**cfg["model"], "arch": arch, "points": points})


def train_config(cfg: dict, part: str | None = None) -> det.TrainConfig:
    """``dense.train``, with the keys of ``dense.<part>`` (e.g. ``transfer.frozen``) over it."""
    extra = {}
    if part:
        extra = cfg
        for key in part.split("."):
            extra = extra[key]
    return det.TrainConfig.from_dict({**cfg["train"], **extra})


def target_crops(samples: list[ds.Sample], size: int, margin: float, finder: FaceFinder | None = None,
                 progress: bool = True) -> np.ndarray:
    """Unlabelled target faces: each image cropped around the face finder's box (the largest
    face; images where it finds none are left out). Their landmarks are not read."""
    finder = finder or FaceFinder()
    crops = []
    for s in track(samples, "find target faces", progress):
        image = ds.load_image(s.image_path)
        box = finder.find(image)
        if box is not None:
            crops.append(cr.crop(image, cr.grow(box, margin), size)[0])
    return np.array(crops, np.uint8).reshape(-1, size, size, 3)


def train_rows(cfg: dict, rendered: dict[str, list[ds.Sample]], real: dict[str, list[ds.Sample]], out: str | Path,
               errors: list | None = None, progress: bool = True) -> dict[str, Path]:
    """Train every row's network (resumable) and return its detector folder. `rendered`:
    notebook 07's ``train`` and ``val`` samples; `real`: the real ``train`` and ``val`` splits."""
    out = Path(out)
    train = dense_faces(rendered["train"][:cfg["rendered_faces"]], errors)
    val = dense_faces(rendered["val"], errors)
    real_train, real_val = det.FaceSet(real["train"], errors), det.FaceSet(real["val"], errors)
    dense_cfg, base = network(cfg, points=lm.N_DENSE), train_config(cfg)
    folders = {"rendered only": out / "dense_rendered"}
    det.train(train, val, dense_cfg, base, folders["rendered only"], progress=progress)
    # label transfer: the dense detector frozen, then jointly, on real 68-point faces
    transfer = network(cfg, arch="transfer")
    folders["label transfer (frozen)"] = out / "transfer_frozen"
    det.train(real_train, real_val, transfer, train_config(cfg, "transfer.frozen"), folders["label transfer (frozen)"],
              init=folders["rendered only"], progress=progress)
    folders["label transfer (joint)"] = out / "transfer_joint"
    det.train(real_train, real_val, transfer, train_config(cfg, "transfer.joint"), folders["label transfer (joint)"],
              init=folders["label transfer (frozen)"], progress=progress)
    # unsupervised adaptation: rendered labels + unlabelled real faces, selected on rendered faces
    targets = target_crops(real["train"], dense_cfg.input_size, base.margin, progress=progress)
    for method, row in (("daln", "adaptation (DALN)"), ("discriminator", "adaptation (discriminator)")):
        a = cfg["adaptation"][method]
        folders[row] = out / f"adapt_{method}"
        adaptation = Adaptation(method, targets, dense_cfg.channels, a["weight"], base.seed)
        det.train(train, val, dense_cfg, base, folders[row], progress=progress, adaptation=adaptation)
    folders["real only"] = out / "real_only"
    det.train(real_train, real_val, network(cfg), base, folders["real only"], progress=progress)
    return folders


def settings_table(cfg: dict) -> list[dict]:
    """What each row trains on, for how long, selected on what."""
    steps = train_config(cfg).steps
    fr, jt = train_config(cfg, "transfer.frozen"), train_config(cfg, "transfer.joint")
    n = cfg["rendered_faces"]
    return [
        {"row": "rendered only", "labels": f"{n} rendered faces, {lm.N_DENSE} points", "steps": steps,
         "selected on": "rendered validation"},
        {"row": "label transfer (frozen)", "labels": "real 300-W training faces, 68 points (dense detector frozen)",
         "steps": fr.steps, "selected on": "real validation"},
        {"row": "label transfer (joint)", "labels": "real 300-W training faces, 68 points (all weights)",
         "steps": jt.steps, "selected on": "real validation"},
        *({"row": f"adaptation ({name})", "labels": f"{n} rendered faces + unlabelled real training faces",
           "steps": steps, "selected on": "rendered validation"} for name in ("DALN", "discriminator")),
        {"row": "real only", "labels": "real 300-W training faces, 68 points", "steps": steps,
         "selected on": "real validation"},
    ]


def table_markdown(table, test_sets: list[str]) -> str:
    """One row per study row: NME inter-pupil, NME inter-ocular [95% CI], FR@10% and AUC@10%
    per test set, from rows of ``evaluate.table_row``."""
    head = "| row | " + " | ".join(f"{t} NME inter-pupil | {t} NME inter-ocular [95% CI] | {t} FR@10% | {t} AUC@10%"
                                  for t in test_sets) + " |"
    lines = [head, "|---|" + "---|" * (4 * len(test_sets))]
    for row, g in table.groupby("method", sort=False):
        cells = []
        for t in test_sets:
            r = g[g["test_set"] == t]
            cells += (["-"] * 4 if r.empty else
                      [f"{r.nme_inter_pupil.iloc[0]:.2f}", f"{r.nme.iloc[0]:.2f} [{r.nme_ci_low.iloc[0]:.2f}, "
                       f"{r.nme_ci_high.iloc[0]:.2f}]", f"{r.fr_10.iloc[0]:.2f}", f"{r.auc_10.iloc[0]:.4f}"])
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
