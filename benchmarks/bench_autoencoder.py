"""The small profiles' latent space, compared at equal steps: what each autoencoder
design keeps of the landmarks and of the stage-2 styles (the generator issue).

A latent diffusion model can draw no more than its autoencoder can decode. Each
variant (``VARIANTS``: settings over the profile's ``diffusion`` section) trains
the autoencoder for the profile's step count with ``stages.train_autoencoder``,
then reconstructs

- the real validation faces: PSNR, and a judge's NME (dlib's shape predictor in
  the landmark box, inter-ocular, %) on the reconstructions against the true
  landmarks, beside the same judge on the originals (the alignment ceiling);
- the held-out part of the stage-2 set at the generator's resolution: PSNR, and
  the study's style judge (``style_classifier.train_style_classifier`` at that
  resolution) on the reconstructions (the style ceiling; on the originals it is
  the judge's own held-out accuracy).

Models go to a scratch folder (``--work``); ``--out NAME`` writes the table as CSV and Markdown to
``results/<profile>/benchmarks/NAME.{csv,md}``.

    ./study run python -m benchmarks.bench_autoencoder --profile cpu --out autoencoder_variants
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib import pipeline
from lib.generator import autoencoder as ae
from lib.generator import stages

from lib.generator.synthesis import judge_nme

from .common import add_out_argument, parse_args, with_settings, write_table

# name -> settings over the profile's diffusion section; steps are the profile's unless a row names them
VARIANTS = {
    "4 channels, photos only": {"model.autoencoder.latent_channels": 4, "autoencoder_train.style_share": 0.0},
    "4 channels + restyled copies": {"model.autoencoder.latent_channels": 4, "autoencoder_train.style_share": 0.5},
    "8 channels + restyled copies": {"model.autoencoder.latent_channels": 8, "autoencoder_train.style_share": 0.5},
    "16 channels + restyled copies": {"model.autoencoder.latent_channels": 16, "autoencoder_train.style_share": 0.5},
    # the profile's design trained longer: does the style ceiling rise with steps?
    "8 channels + restyled copies, 2000 steps": {"autoencoder_train.steps": 2000},
    "8 channels + restyled copies, 4000 steps": {"autoencoder_train.steps": 4000},
    "8 channels, every face also restyled": {"autoencoder_train.style_share": 1.0},
    "8 channels + restyled copies, 2x wider": {"model.autoencoder.block_out_channels": [32, 64, 128]},
    # one downsampling instead of two: a 32x32 latent grid at 64 px (the generator issue: 16x16 caps style)
    "32x32 latents, 4 channels": {"model.autoencoder.block_out_channels": [32, 64], "model.autoencoder.latent_channels": 4},
    "32x32 latents, 8 channels": {"model.autoencoder.block_out_channels": [32, 64], "model.autoencoder.latent_channels": 8},
    # the cpu profile's 32x32x4 design at fewer steps: what does a shorter autoencoder cost (issue 11's time budget)?
    "32x32x4, 1000 steps": {"model.autoencoder.block_out_channels": [32, 64], "model.autoencoder.latent_channels": 4,
                            "autoencoder_train.steps": 1000},
    # the same at 2,000 steps, trained under bf16 autocast (lib.generator.precision.autocast; bench_precision times it)
    "32x32x4, bf16": {"model.autoencoder.block_out_channels": [32, 64], "model.autoencoder.latent_channels": 4,
                      "autoencoder_train.mixed_precision": "bf16"},
    # twice the latent channels on the 32x32 grid: colour pencil and engraving do not survive 32x32x4 (the generator
    # issue's style ceiling; results/cpu/style_confusion.csv)
    "32x32x8, bf16": {"model.autoencoder.block_out_channels": [32, 64], "model.autoencoder.latent_channels": 8,
                      "autoencoder_train.mixed_precision": "bf16"},
    "32x32x4, float32": {"model.autoencoder.block_out_channels": [32, 64], "model.autoencoder.latent_channels": 4,
                         "autoencoder_train.mixed_precision": "no"},
}


# styles the committed cpu autoencoder's round trip loses (results/cpu/style_confusion.csv), reported one by one
LOST_STYLES = ("caricature", "colour pencil", "engraving")


def _steps(folder: str | Path) -> int | None:
    summary = Path(folder) / "summary.json"
    return json.loads(summary.read_text()).get("steps") if summary.exists() else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--work", default="/tmp/bench_autoencoder", help="scratch folder for the models")
    add_out_argument(ap)
    ap.add_argument("--reference", nargs="*", default=[], metavar="FOLDER",
                    help="trained autoencoder folders (e.g. models/cpu/autoencoder) scored as rows beside the variants")
    args = parse_args(ap, argv)

    params = pipeline.load_params(args.profile)
    diffusion = params["diffusion"]
    if diffusion["model"].get("pretrained"):
        raise SystemExit(f"profile {args.profile} uses a pretrained autoencoder; nothing to compare")
    data_dir, generated = pipeline.data_dir(args.profile), pipeline.generated_dir(args.profile)
    if not (generated / "multidomain" / "manifest.csv").exists():
        raise SystemExit(f"needs {generated}/multidomain: run notebook 03 of the profile first")
    res = diffusion["model"]["resolution"]

    from lib.evaluation import style_classifier as sc
    from lib.evaluation import predictors as pr
    judge = pr.build("dlib_box")
    classifier, clf_acc = sc.train_style_classifier(generated / "multidomain", resolution=res)
    _, (held, held_styles) = sc.style_faces(generated / "multidomain", resolution=res)
    held, held_styles = np.stack(held), np.asarray(held_styles)
    _, val = stages.stage1_pairs(data_dir, res)
    real = float(judge_nme(judge, val.images, val.points).mean())
    print(f"judge on real validation faces: {real:.2f}% NME; style judge {clf_acc * 100:.1f}% on {len(held)} held-out "
          f"stage-2 faces at {res} px ({len(classifier.classes)} styles)", flush=True)

    def score(row: dict, folder: Path) -> dict:
        vae = ae.load(folder)
        rec_val, rec_held = ae.reconstruct(vae, val.images), ae.reconstruct(vae, held)
        with torch.inference_mode():
            c, h, w = vae.encode(ae.to_model_range(held[:1])).latent_dist.mode().shape[1:]
        row["latent"] = f"{h}x{w}x{c}"
        row["psnr_photos"] = round(ae.psnr(rec_val, val.images), 2)
        row["psnr_stage2"] = round(ae.psnr(rec_held, held), 2)
        row["judge_nme_reconstructed"] = round(float(judge_nme(judge, rec_val, val.points).mean()), 2)
        predicted = np.array(classifier.predict(list(rec_held)))
        row["style_accuracy_reconstructed"] = round(float((predicted == held_styles).mean()) * 100, 1)
        for style in LOST_STYLES:  # per style: the ones the profile's round trip loses
            if (held_styles == style).any():
                row[f"{style} (%)"] = round(float((predicted[held_styles == style] == style).mean()) * 100, 1)
        print(json.dumps(row), flush=True)
        return row

    rows = [score({"variant": f"trained: {folder}", "steps": _steps(folder), "minutes": None}, Path(folder))
            for folder in args.reference]
    for name in args.variants:
        d = with_settings(diffusion, VARIANTS[name], "diffusion", params)
        work = Path(args.work) / name.replace(" ", "_").replace("+", "").replace(",", "").replace("__", "_")
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.time()
        stages.train_autoencoder(d, data_dir, work, progress=False)
        rows.append(score({"variant": name, "steps": d["autoencoder_train"]["steps"],
                           "minutes": round((time.time() - t0) / 60, 2)}, work / "autoencoder"))

    table = pd.DataFrame(rows)
    head = (f"Autoencoders at equal steps ({args.profile} profile, {res} px). Judge: dlib (landmark box), "
            f"{real:.2f}% NME on the real validation faces themselves. Style judge: {clf_acc * 100:.1f}% on the "
            f"held-out stage-2 faces themselves, chance {100 / len(classifier.classes):.1f}%.")
    write_table(table, head, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
