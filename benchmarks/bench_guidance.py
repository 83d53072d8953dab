"""Sampler-side ways to more style (the generator issue's style target), on a profile's trained two-stage
generator and validation landmarks, without retraining anything.

Classifier-free guidance raises style accuracy and costs alignment (``results/<profile>/guidance.md``).
This bench asks whether the sampler can buy the style for less alignment. Each variant draws the same
sweep items (``synthesis.sweep_items`` on the validation landmarks, edited as synthesis edits, prompts
cycling through the stage-2 styles, the same seeds) and is scored by

- dlib's shape predictor in the landmark box (the judge notebook 04 chooses the guidance with) and the
  real-only detector (``models/<profile>/detector_real``, the judge of ``alignment.csv``): NME against
  the conditioning landmarks, inter-ocular, %;
- the study's style classifier (fit on the stage-2 set at the generator's resolution): accuracy on the
  requested style, %.

Variants (``VARIANTS``): plain guidance at several scales; guidance rescaled to the conditional
prediction's spread (diffusers' ``rescale_noise_cfg``, Lin et al. 2024); guidance applied only above
a timestep (the interval of Kynkaanniemi et al. 2024: the unguided model draws the last, fine steps);
more DDIM steps. Every figure comes with its 95% bootstrap interval over the items, so ``--faces`` sets how finely
a variant is measured (the profile's guidance sweep draws 110). The options are ``LandmarkPipeline``'s (``guidance_rescale``, ``guidance_min_timestep``),
drawn through ``lib.generator.sampling.generate`` as synthesis draws.

The bench also prints each judge's own cost of the styles: its NME on the real validation faces as they
are and restyled by each filter style of the stage-2 set (their landmarks exact by construction), so an
alignment ratio can be read against what the judge does on correctly labelled faces of those styles.

    ./study run python -m benchmarks.bench_guidance --profile cpu --out guidance_variants

``--out NAME`` writes ``results/<profile>/benchmarks/NAME.{csv,md}`` and, with the judges' cost of the styles,
``NAME_judge_style_cost.{csv,md}``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lib import pipeline
from lib.data import datasets as ds
from lib.detector.model import Detector
from lib.evaluation import predictors as pr
from lib.evaluation.statistics import bootstrap_ci
from lib.evaluation import style_classifier as sc
from lib.generator import sampling
from lib.generator import synthesis as syn
from lib.generator.pairs import PairSet, resize_pair
from lib.generator.styles import stylise

from .common import add_out_argument, parse_args, write_table

# name -> (guidance, options): guidance_rescale (0: none), guidance_min_timestep (guidance only at timesteps >= it),
# steps (DDIM)
VARIANTS = {
    "plain 3": (3.0, {}),
    "plain 3.5": (3.5, {}),
    "plain 4": (4.0, {}),
    "plain 5": (5.0, {}),
    "rescaled 0.7, 5": (5.0, {"guidance_rescale": 0.7}),
    "rescaled 0.7, 7": (7.0, {"guidance_rescale": 0.7}),
    "interval t >= 300, 5": (5.0, {"guidance_min_timestep": 300}),
    "interval t >= 300, 7": (7.0, {"guidance_min_timestep": 300}),
    "interval t >= 500, 7": (7.0, {"guidance_min_timestep": 500}),
    "plain 3, 40 steps": (3.0, {"steps": 40}),
}


def style_cost(judges: dict, samples: list, styles: list[str], resolution: int, seed: int = 0) -> list[dict]:
    """Each judge's NME (%) on the real validation faces restyled by each filter style, at `resolution`."""
    rng, rows = np.random.default_rng(seed), []
    for style in styles:
        pairs = [resize_pair(stylise(ds.load_image(s.image_path), style, rng), s.landmarks, resolution)
                 for s in samples]
        images, points = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        rows.append({"style": style, **{name: round(float(syn.judge_nme(j, images, points).mean()), 2)
                                        for name, j in judges.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--faces", type=int, default=220, help="sweep items per variant")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    add_out_argument(ap)
    ap.add_argument("--generator", default=None,
                    help="a generator folder to draw with (default: the profile's two-stage generator)")
    ap.add_argument("--no-style-cost", action="store_true", help="skip each judge's own cost of the filter styles")
    args = parse_args(ap, argv)
    params = pipeline.load_params(args.profile)
    synthesis, res = params["synthesis"], params["diffusion"]["model"]["resolution"]
    data_dir, models = pipeline.data_dir(args.profile), pipeline.models_dir(args.profile)
    samples = ds.read_dataset(data_dir / "crops" / "val", "300w")
    val = PairSet(samples, res)
    judges = {"dlib": pr.build("dlib_box"), "real only": Detector(models / "detector_real", "landmarks", "real only")}
    clf, clf_acc = sc.train_style_classifier(pipeline.generated_dir(args.profile) / "multidomain", resolution=res)
    on_real = {name: float(syn.judge_nme(j, val.images, val.points).mean()) for name, j in judges.items()}
    items = syn.sweep_items(val.points, list(clf.classes), args.faces, res, synthesis["seed"],
                            synthesis["edits_per_face"], synthesis["edits"], synthesis["exaggeration"])
    generator = Path(args.generator) if args.generator else models / synthesis["generators"]["two_stage"]
    pipe = sampling.load_generator(generator)
    points = np.array([it["points"] for it in items])
    wanted = np.array([it["style"] for it in items])
    rows = []
    for name in args.variants:
        guidance, opts = VARIANTS[name]
        t0 = time.perf_counter()
        opts = {"steps": synthesis["steps"], **opts}
        faces = sampling.generate(pipe, points, [it["prompt"] for it in items], [it["seed"] for it in items], res,
                                  guidance=guidance, batch_size=synthesis["batch_size"],
                                  mixed_precision=synthesis["mixed_precision"], **opts)
        row = {"variant": name, "guidance": guidance, "steps": opts["steps"],
               "seconds": round(time.perf_counter() - t0, 1)}
        for judge, j in judges.items():
            per_face = syn.judge_nme(j, faces, points)
            nme = float(per_face.mean())
            row[f"{judge} NME (%)"] = round(nme, 2)
            row[f"{judge} x real"] = round(nme / on_real[judge], 2)
            row[f"{judge} x real, 95% CI"] = "[{:.2f}, {:.2f}]".format(*(v / on_real[judge] for v in bootstrap_ci(per_face)))
        hit = (np.array(clf.predict(list(faces))) == wanted).astype(float) * 100
        row["style accuracy (%)"] = round(float(hit.mean()), 1)
        row["style, 95% CI"] = "[{:.1f}, {:.1f}]".format(*bootstrap_ci(hit))
        print(json.dumps(row), flush=True)
        rows.append(row)
    head = (f"{args.profile} profile, {'two-stage generator' if not args.generator else args.generator}, "
            f"{len(items)} validation sweep items (edited), "
            f"{synthesis['mixed_precision']} sampling. On the {len(val)} real validation faces: dlib "
            f"{on_real['dlib']:.2f}%, real only {on_real['real only']:.2f}%. Style judge {clf_acc * 100:.1f}% on "
            f"held-out stage-2 faces, chance {100 / len(clf.classes):.1f}%.")
    write_table(pd.DataFrame(rows), head, args.out)
    if args.no_style_cost:
        return 0
    cost = pd.DataFrame(style_cost(judges, samples, params["diffusion"]["multidomain"]["filter_styles"], res))
    cost.loc[len(cost)] = {"style": "mean", **{k: round(float(cost[k].mean()), 2) for k in judges}}
    write_table(cost, f"Each judge's NME (%) on the {len(val)} real validation faces restyled by each filter "
                f"style at {res} px (labels exact).", args.out and f"{args.out}_judge_style_cost")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
