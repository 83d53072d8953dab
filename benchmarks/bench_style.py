"""Stage-2 designs for style, compared at equal CPU time from the profile's own stage 1 (the generator issue).

Style accuracy is the half of the generator issue that the stage-1 comparisons (``bench_generator``) never
reached: no variant learned a style in their 2-minute stage 2. This benchmark starts every variant from the
profile's trained stage-1 generator (``models/<profile>/stage1``, and its critic where a variant keeps the
consistency loss), trains stage 2 for the same wall-clock budget each (a short probe times a step), draws faces
for validation landmarks (half edited) with prompts cycling through the stage-2 styles, and reports alignment
NME (dlib in the landmark box, as ``bench_generator``) and style accuracy (the study's style classifier,
trained on the stage-2 set). Every variant is also drawn at the guidance scales of ``--guidance``, which shows
whether guidance changes what is drawn.

    ./study run python -m benchmarks.bench_style --profile cpu --stage2-minutes 6 --out generator_style

``--out NAME`` writes the table to ``results/<profile>/benchmarks/NAME.{csv,md}``.

``--init stage2`` starts from the profile's trained two-stage generator instead: a longer stage 2. ``--guidance``
with no value skips the drawing (the model stays in ``--work`` for ``bench_guidance --generator``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lib import pipeline
from lib.data import datasets as ds
from lib.generator import condition, sampling
from lib.generator import stages
from lib.generator.styles import style_prompt
from lib.generator.synthesis import judge_nme

from .bench_generator import eval_faces, train_for
from .common import add_out_argument, parse_args, with_settings, write_table

# name -> settings over the profile's diffusion section
VARIANTS = {
    "profile stage 2": {},
    "no consistency loss in stage 2": {"stage2.consistency_weight": 0.0},
    "stage 2 lr x3": {"stage2.lr": 1.0e-3},
    "unconditional prompt share 0.3": {"stage2.prompt_dropout": 0.3},
    "learned style embeddings": {"stage2.style_embeddings": True},
    "learned style embeddings, lr x3": {"stage2.style_embeddings": True, "stage2.lr": 1.0e-3},
    # min-SNR weighting gives the high-noise steps, where the overall look is decided, almost no weight
    "plain v-MSE (no min-SNR) in stage 2": {"stage2.snr_gamma": None},
    "zero terminal SNR + plain v-MSE in stage 2": {"stage2.zero_terminal_snr": True, "stage2.snr_gamma": None},
    "zero terminal SNR + plain v-MSE, no consistency loss": {"stage2.zero_terminal_snr": True, "stage2.snr_gamma": None,
                                                             "stage2.consistency_weight": 0.0},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--stage2-minutes", type=float, default=6.0)
    ap.add_argument("--faces", type=int, default=110, help="generated faces per variant and guidance scale")
    ap.add_argument("--guidance", type=float, nargs="*", default=[1.0, 3.0, 6.0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--init", choices=["stage1", "stage2"], default="stage1",
                    help="what stage 2 starts from: the profile's stage-1 generator, or its trained two-stage "
                         "generator (stage 2's learning rate is constant, so this is a longer stage 2 than the "
                         "profile's, less the optimiser's and the average's history)")
    ap.add_argument("--work", default="/tmp/bench_style", help="scratch folder for the models")
    add_out_argument(ap)
    args = parse_args(ap, argv)

    params = pipeline.load_params(args.profile)
    diffusion = params["diffusion"]
    data_dir, generated = pipeline.data_dir(args.profile), pipeline.generated_dir(args.profile)
    models = pipeline.models_dir(args.profile)
    if not (models / "stage1" / "model_index.json").exists() or not (generated / "multidomain" / "manifest.csv").exists():
        raise SystemExit(f"needs {models}/stage1 and {generated}/multidomain: run the profile's notebooks 02 and 03 first")
    res = diffusion["model"]["resolution"]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "autoencoder").exists():  # where the step probe looks for it
        (work / "autoencoder").symlink_to((models / "autoencoder").resolve())
    if stages.uses_critic(diffusion) and not (work / "critic").exists():
        (work / "critic").symlink_to(stages.critic_dir(models).resolve())

    from lib.evaluation import predictors as pr
    from lib.evaluation import style_classifier as sc
    judge = pr.build("dlib_box")
    classifier, clf_acc = sc.train_style_classifier(generated / "multidomain", resolution=res)
    _, val = stages.stage1_pairs(data_dir, res)
    styles = list(classifier.classes)
    points, edited, chosen, _ = eval_faces(val, styles, args.faces)
    real = judge_nme(judge, val.images, val.points).mean()
    print(f"judge on real validation faces: {real:.2f}%; style classifier {clf_acc * 100:.1f}% on held-out stage-2 "
          f"faces ({len(styles)} styles)", flush=True)

    rows = []
    for name in args.variants:
        d = with_settings(diffusion, VARIANTS[name], "diffusion", params)
        vwork = work / name.replace(" ", "_").replace(".", "")
        shutil.rmtree(vwork, ignore_errors=True)
        vwork.mkdir(parents=True)
        (vwork / "stage1").symlink_to((models / args.init).resolve())
        t0 = time.time()
        trained = train_for("stage2", d, args.stage2_minutes, data_dir, generated, vwork)
        pipe = sampling.load_generator(vwork / "stage2")
        for g in args.guidance:
            t1 = time.time()
            images = sampling.generate(pipe, points, [style_prompt(s) for s in chosen], list(range(len(points))), res,
                                       diffusion["stage2"]["sample_steps"], g)
            nme = judge_nme(judge, images, points)
            row = {"variant": name, **trained, "guidance": g, "images_per_s": round(len(images) / (time.time() - t1), 2),
                   "alignment_nme": round(float(nme[~edited].mean()), 2),
                   "alignment_nme_edited": round(float(nme[edited].mean()), 2),
                   "style_accuracy": round(float((np.array(classifier.predict(list(images))) == np.array(chosen)).mean()
                                                 * 100), 1)}
            ds.save_image(vwork / f"samples_guidance{g:g}.png", sampling.sample_grid(images[:24], condition.render_batch(points[:24], res)))
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(f"{name}: {(time.time() - t0) / 60:.1f} min with its drawings", flush=True)

    table = pd.DataFrame(rows)
    start = "stage 1" if args.init == "stage1" else "two-stage generator (stage 2 continued)"
    head = (f"Stage 2 from the profile's {start} at equal CPU time: {args.stage2_minutes} min per variant; "
            f"{args.faces} faces for validation landmarks (half edited) per guidance scale, prompts cycling through "
            f"the {len(styles)} stage-2 styles (chance {100 / len(styles):.1f}%). Judge: dlib (landmark box) at "
            f"{res} px, {real:.2f}% NME on the real validation faces; style classifier {clf_acc * 100:.1f}% on "
            "held-out stage-2 faces.")
    write_table(table, head, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
