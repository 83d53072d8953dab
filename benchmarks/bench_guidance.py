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
more DDIM steps. The loop below is ``LandmarkPipeline``'s with those two options added.

The bench also prints each judge's own cost of the styles: its NME on the real validation faces as they
are and restyled by each filter style of the stage-2 set (their landmarks exact by construction), so an
alignment ratio can be read against what the judge does on correctly labelled faces of those styles.

    ./study run python -m benchmarks.bench_guidance --profile cpu --out results/cpu/guidance_variants
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
from diffusers.utils.torch_utils import randn_tensor

from lib import pipeline
from lib.data import datasets as ds
from lib.detector.model import Detector
from lib.evaluation import predictors as pr
from lib.evaluation import style_classifier as sc
from lib.generator import diffusion as dm
from lib.generator import synthesis as syn
from lib.generator.styles import stylise

from .bench_generator import write_table

# name -> (guidance, options): rescale (0: none), guided_from (guidance only at timesteps >= it), steps
VARIANTS = {
    "plain 3": (3.0, {}),
    "plain 4": (4.0, {}),
    "plain 5": (5.0, {}),
    "rescaled 0.7, 5": (5.0, {"rescale": 0.7}),
    "rescaled 0.7, 7": (7.0, {"rescale": 0.7}),
    "interval t >= 300, 5": (5.0, {"guided_from": 300}),
    "interval t >= 300, 7": (7.0, {"guided_from": 300}),
    "interval t >= 500, 7": (7.0, {"guided_from": 500}),
    "plain 3, 40 steps": (3.0, {"steps": 40}),
}


@torch.no_grad()
def draw(pipe, points: np.ndarray, prompts: list[str], seeds: list[int], resolution: int, guidance: float,
         steps: int = 20, rescale: float = 0.0, guided_from: int = 0, precision: str = "no",
         batch_size: int = 32) -> np.ndarray:
    """``LandmarkPipeline`` from noise, with guidance `rescale` and guidance only at timesteps >= `guided_from`."""
    if dm.conditioning_of(pipe) != "concat":
        raise SystemExit("bench_guidance: a concat generator (the small profiles') is needed")
    f, out = dm.vae_scale_factor(pipe.vae), []
    for i in range(0, len(points), batch_size):
        sl = slice(i, i + batch_size)
        n = len(prompts[sl])
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[sl]]
        with dm.autocast(precision):
            text = torch.cat([dm.encode_prompts(pipe.tokenizer, pipe.text_encoder, [""] * n),
                              dm.encode_prompts(pipe.tokenizer, pipe.text_encoder, list(prompts[sl]))])
            labels = dm.style_labels(pipe.config.style_prompts, list(prompts[sl]))
            labels = None if labels is None else torch.cat([torch.zeros_like(labels), labels])
            latents = randn_tensor((n, pipe.vae.config.latent_channels, resolution // f, resolution // f),
                                   generator=gens, dtype=pipe.unet.dtype)
            pipe.scheduler.set_timesteps(steps)
            parts = dm.condition_tensor(points[sl], resolution, "concat")
            parts = torch.cat([parts, parts])
            for t in pipe.scheduler.timesteps:
                x = torch.cat([latents, latents])
                pred = pipe.unet(dm.concat_input(x, parts, f), t, encoder_hidden_states=text,
                                 class_labels=labels).sample.float()
                uncond, cond = pred.chunk(2)
                scale = guidance if int(t) >= guided_from else 1.0
                guided = uncond + scale * (cond - uncond)
                if rescale:
                    guided = rescale_noise_cfg(guided, cond, guidance_rescale=rescale)
                latents = pipe.scheduler.step(guided, t, latents).prev_sample
            images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        out.append((images * 255).round().astype(np.uint8))
    return np.concatenate(out)


def style_cost(judges: dict, samples: list, styles: list[str], resolution: int, seed: int = 0) -> list[dict]:
    """Each judge's NME (%) on the real validation faces restyled by each filter style, at `resolution`."""
    rng, rows = np.random.default_rng(seed), []
    for style in styles:
        pairs = [dm.resize_pair(stylise(ds.load_image(s.image_path), style, rng), s.landmarks, resolution)
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
    ap.add_argument("--out", default=None, help="table path prefix (default: print only)")
    args = ap.parse_args(argv)
    params = pipeline.load_params(args.profile)
    synthesis, res = params["synthesis"], params["diffusion"]["model"]["resolution"]
    data_dir, models = pipeline.data_dir(args.profile), pipeline.ROOT / "models" / args.profile
    samples = ds.read_dataset(data_dir / "crops" / "val", "300w")
    val = dm.PairSet(samples, res)
    judges = {"dlib": pr.build("dlib_box"), "real only": Detector(models / "detector_real", "landmarks", "real only")}
    clf, clf_acc = sc.train_style_classifier(pipeline.generated_dir(args.profile) / "multidomain", resolution=res)
    on_real = {name: float(syn.judge_nme(j, val.images, val.points).mean()) for name, j in judges.items()}
    items = syn.sweep_items(val.points, list(clf.classes), args.faces, res, synthesis["seed"],
                            synthesis["edits_per_face"], synthesis["edits"], synthesis["exaggeration"])
    pipe = dm.load_generator(models / synthesis["generators"]["two_stage"])
    points = np.array([it["points"] for it in items])
    wanted = np.array([it["style"] for it in items])
    rows = []
    for name in args.variants:
        guidance, opts = VARIANTS[name]
        t0 = time.perf_counter()
        faces = draw(pipe, points, [it["prompt"] for it in items], [it["seed"] for it in items], res, guidance,
                     precision=synthesis["mixed_precision"], **opts)
        row = {"variant": name, "guidance": guidance, "steps": opts.get("steps", synthesis["steps"]),
               "seconds": round(time.perf_counter() - t0, 1)}
        for judge, j in judges.items():
            nme = float(syn.judge_nme(j, faces, points).mean())
            row[f"{judge} NME (%)"] = round(nme, 2)
            row[f"{judge} x real"] = round(nme / on_real[judge], 2)
        row["style accuracy (%)"] = round(float(np.mean(np.array(clf.predict(list(faces))) == wanted)) * 100, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    head = (f"{args.profile} profile, two-stage generator, {len(items)} validation sweep items (edited), "
            f"{synthesis['mixed_precision']} sampling. On the {len(val)} real validation faces: dlib "
            f"{on_real['dlib']:.2f}%, real only {on_real['real only']:.2f}%. Style judge {clf_acc * 100:.1f}% on "
            f"held-out stage-2 faces, chance {100 / len(clf.classes):.1f}%.")
    write_table(pd.DataFrame(rows), head, args.out)
    cost = pd.DataFrame(style_cost(judges, samples, params["diffusion"]["multidomain"]["filter_styles"], res))
    cost.loc[len(cost)] = {"style": "mean", **{k: round(float(cost[k].mean()), 2) for k in judges}}
    write_table(cost, f"Each judge's NME (%) on the {len(val)} real validation faces restyled by each filter "
                f"style at {res} px (labels exact).", args.out and f"{args.out}_judge_style_cost")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
