"""Generator designs compared at equal CPU time on validation data (the generator issue).

Each variant is the profile's ``diffusion`` section with a few settings changed
(``VARIANTS``). It trains stage 1 (real training faces, empty prompts) and then
stage 2 (the multi-domain set with style prompts) for the same wall-clock
budget each, measured on this machine: a short probe run times a step, and the
step count is the budget divided by that time. Then it draws faces for
validation landmarks (half of them edited twice, as synthesis does), one style
prompt of the stage-2 set each, and reports

- alignment NME: a judge's landmarks on the generated face against the
  landmarks it was drawn from (inter-ocular, %), for unedited and edited
  landmarks, and the same judge on the real validation faces and on their
  autoencoder reconstructions (the ceiling the latent space allows);
- style accuracy: the study's style classifier (trained on the stage-2 set)
  recognising the requested style (%, chance 1 / number of styles).

A variant that changes the latent space (``model.autoencoder``, ``autoencoder_train``)
draws in an autoencoder trained for it (cached; its minutes are reported beside
the budget, since a profile trains its autoencoder once for every stage); every
row reports its latent space's ceilings: the judge's NME on the round trip of
the real validation faces, and the style judge on the round trip of the held-out
stage-2 faces.

The judge is a trained detector folder (``--judge``) or, by default, dlib's
shape predictor in the landmark box (needs no training of its own). Models go
to a scratch folder (``--work``); ``--out NAME`` writes the table as CSV and Markdown to
``results/<profile>/benchmarks/NAME.{csv,md}`` (``benchmarks.common``).

    ./study run python -m benchmarks.bench_generator --profile cpu --stage1-minutes 4 --stage2-minutes 1.5
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lib import pipeline
from lib.data import datasets as ds
from lib.generator import autoencoder as ae
from lib.generator import condition, sampling
from lib.generator import edits as ed
from lib.generator import stages
from lib.generator.pairs import PairSet
from lib.generator.styles import style_prompt
from lib.generator.synthesis import edit_control, judge_nme

from .common import add_out_argument, parse_args, with_settings, write_table

# name -> settings over the profile's diffusion section ("section.key": value). Every variant starts from
# BASE, the recipe before this comparison (ControlNet, noise prediction, plain MSE, no EMA; stage 1 lr 3e-4,
# stage 2 lr 1e-4), so the table does not depend on what the profile has since chosen.
BASE = {"model.conditioning": "controlnet", "model.unet.addition_embed_type": None, "model.prediction_type": "epsilon",
        **{f"{s}.{k}": v for s in ("stage1", "stage2") for k, v in (("snr_gamma", None), ("ema_decay", None))},
        "stage1.lr": 3.0e-4, "stage2.lr": 1.0e-4}
CONCAT = {"model.conditioning": "concat"}
POOLED = {**CONCAT, "model.unet.addition_embed_type": "text"}
MIN_SNR = {"stage1.snr_gamma": 5.0, "stage2.snr_gamma": 5.0}
V_PRED = {"model.prediction_type": "v_prediction"}
EMA_LR = {"stage1.ema_decay": 0.999, "stage2.ema_decay": 0.999, "stage1.lr": 1.0e-3, "stage2.lr": 3.0e-4}
RECIPE = {**POOLED, **MIN_SNR, **V_PRED, **EMA_LR}  # the recipe these rows chose (the profile's since 2026-11)
LATENT_32 = {"model.autoencoder.block_out_channels": [32, 64], "model.autoencoder.latent_channels": 4,
             "model.unet.block_out_channels": [32, 64, 128, 128], "model.unet.attention_levels": [2, 3]}
# the same grid with a narrow first level in the autoencoder (its decoder runs in every step of the consistency
# loss) and in the UNet, to bring the step cost nearer the 16x16 design's (measured 1.3x)
LATENT_32_NARROW = {"model.autoencoder.block_out_channels": [16, 64], "model.autoencoder.latent_channels": 4,
                    "model.unet.block_out_channels": [16, 64, 128, 128], "model.unet.attention_levels": [2, 3]}
EDIT_AUG = {"stage1.edit_share": 0.5, "stage2.edit_share": 0.5}


def consistency(weight: float, max_timestep: int) -> dict:
    return {f"{s}.{k}": v for s in ("stage1", "stage2")
            for k, v in (("consistency_weight", weight), ("consistency_max_timestep", max_timestep))}


VARIANTS = {
    "controlnet": {},
    "concat": CONCAT,
    "concat + pooled text": POOLED,
    "concat + pooled text + min-SNR 5": {**POOLED, **MIN_SNR},
    "concat + pooled text + v-pred + min-SNR 5": {**POOLED, **MIN_SNR, **V_PRED},
    "concat + pooled text + v-pred + min-SNR 5 + EMA, lr x3": RECIPE,
    "recipe + consistency 1, all t": {**RECIPE, **consistency(1.0, 1000)},
    "recipe + consistency 1, t below 500": {**RECIPE, **consistency(1.0, 500)},
    # the latent grid: one autoencoder downsampling instead of two (32x32 latents at 64 px: a style ceiling of
    # 65.7% against 38.6% at 16x16, results/cpu/benchmarks/autoencoder_latent_grid.md) and a UNet with one more
    # level, whose finest level is half as wide (a step measured 1.6x the 16x16 design's,
    # results/cpu/benchmarks/generator_latent_grid.md)
    "recipe + consistency 1, all t, 32x32 latents": {**RECIPE, **consistency(1.0, 1000), **LATENT_32},
    "recipe + consistency 1, all t, 32x32 latents, narrow first level": {**RECIPE, **consistency(1.0, 1000),
                                                                         **LATENT_32_NARROW},
    # half the training pairs edited and warped onto their edited landmarks (TrainConfig.edit_share)
    "recipe + consistency 1, all t, edit augmentation 0.5": {**RECIPE, **consistency(1.0, 1000), **EDIT_AUG},
    "recipe + consistency 1, all t, 32x32 latents, edit augmentation 0.5": {**RECIPE, **consistency(1.0, 1000),
                                                                           **LATENT_32, **EDIT_AUG},
}
PROBE_STEPS = 6


def critic_for(diffusion: dict, name: str, work: Path):
    """The shared critic (``work/critic``) when stage `name` trains with the consistency loss."""
    if not diffusion[name].get("consistency_weight"):
        return None
    from lib.detector.critic import Critic
    return Critic(work.parent / "critic")


def autoencoder_for(d: dict, diffusion: dict, data_dir: Path, models: Path, work: Path) -> tuple[Path, float | None]:
    """The autoencoder variant `d` draws in: the profile's (``models/autoencoder``) when `d` keeps its latent
    space, else one trained for it with ``stages.train_autoencoder`` (cached under ``work/autoencoders``; its
    minutes are reported, outside the budget, as the profile's own autoencoder is trained once before the stages)."""
    mine = [d["model"]["autoencoder"], d["autoencoder_train"]]
    if mine == [diffusion["model"]["autoencoder"], diffusion["autoencoder_train"]]:
        return models / "autoencoder", None
    folder = work / "autoencoders" / hashlib.md5(json.dumps(mine, sort_keys=True).encode()).hexdigest()[:10]
    t0 = time.time()
    stages.train_autoencoder(d, data_dir, folder, progress=False)
    return folder / "autoencoder", round((time.time() - t0) / 60, 2)


def seconds_per_step(name: str, diffusion: dict, data_dir: Path, generated: Path, work: Path) -> float:
    probe = work / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    (probe / "autoencoder").parent.mkdir(parents=True, exist_ok=True)
    (probe / "autoencoder").symlink_to((work / "autoencoder").resolve())
    d = with_settings(diffusion, {f"{name}.steps": PROBE_STEPS, f"{name}.checkpoint_every": 10 ** 6,
                                  f"{name}.sample_every": 10 ** 6}, "diffusion")
    if name == "stage2":
        (probe / "stage1").symlink_to((work / "stage1").resolve())
    stages.train_generator(name, d, data_dir, generated, probe, progress=False, critic=critic_for(d, name, work))
    h = pd.read_csv(probe / name / "history.csv")
    shutil.rmtree(probe)
    return float(np.median(np.diff(h["seconds"].to_numpy())[1:]))  # the first step pays for warm-up


def train_for(name: str, diffusion: dict, minutes: float, data_dir: Path, generated: Path, work: Path) -> dict:
    s = seconds_per_step(name, diffusion, data_dir, generated, work)
    steps = max(1, int(minutes * 60 / s))
    d = with_settings(diffusion, {f"{name}.steps": steps, f"{name}.checkpoint_every": steps,
                                  f"{name}.sample_every": 10 ** 6}, "diffusion")
    r = stages.train_generator(name, d, data_dir, generated, work, progress=False, critic=critic_for(d, name, work))
    return {f"{name}_steps": steps, f"{name}_s_per_step": round(s, 3), f"{name}_minutes": round(r.seconds / 60, 2)}


def eval_faces(val: PairSet, styles: list[str], n: int, seed: int = 0):
    """n validation landmark sets (every other one edited twice), prompts cycling through `styles`, and the
    validation face each set comes from."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(val), n, replace=n > len(val))
    points, edited = [], []
    for k, i in enumerate(idx):
        if k % 2:
            pts, _ = ed.random_edits(val.points[i], np.random.default_rng([seed, k]), val.resolution, 2)
        else:
            pts = val.points[i]
        points.append(pts)
        edited.append(bool(k % 2))
    chosen = [styles[k % len(styles)] for k in range(n)]
    return np.array(points), np.array(edited), chosen, idx


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--stage1-minutes", type=float, default=4.0)
    ap.add_argument("--stage2-minutes", type=float, default=1.5)
    ap.add_argument("--faces", type=int, default=110, help="generated faces per variant")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--judge", default=None, help="a trained detector folder (default: dlib in the landmark box)")
    ap.add_argument("--work", default="/tmp/bench_generator", help="scratch folder for the models")
    add_out_argument(ap)
    ap.add_argument("--append", action="store_true", help="add these rows to the table at --out (same machine, "
                    "same budgets), replacing rows of the same variants")
    args = parse_args(ap, argv)

    params = pipeline.load_params(args.profile)
    diffusion = params["diffusion"]
    data_dir, generated = pipeline.data_dir(args.profile), pipeline.generated_dir(args.profile)
    models = pipeline.models_dir(args.profile)
    if not (models / "autoencoder" / "config.json").exists() or not (generated / "multidomain" / "manifest.csv").exists():
        raise SystemExit(f"needs {models}/autoencoder and {generated}/multidomain: run the profile's stage1 "
                         "notebook's autoencoder step and notebook 03's set first")
    res = diffusion["model"]["resolution"]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "autoencoder").exists():
        (work / "autoencoder").symlink_to((models / "autoencoder").resolve())

    from lib.evaluation import style_classifier as sc
    from lib.evaluation import predictors as pr
    from lib.detector.model import Detector
    judge = Detector(args.judge) if args.judge else pr.build("dlib_box")
    classifier, clf_acc = sc.train_style_classifier(generated / "multidomain", resolution=res)
    _, val = stages.stage1_pairs(data_dir, res)
    styles = list(classifier.classes)
    points, edited, chosen, sources = eval_faces(val, styles, args.faces)

    vae = ae.load(models / "autoencoder")
    real = judge_nme(judge, val.images, val.points).mean()
    recon = judge_nme(judge, ae.reconstruct(vae, val.images), val.points).mean()
    src = sources[edited]  # the judge's own cost of the edits, on the edited items' real source faces
    plain, warped = (float(x.mean()) for x in edit_control(judge, val.images[src], val.points[src], points[edited]))
    print(f"judge on real validation faces: {real:.2f}%, on their autoencoder reconstructions: {recon:.2f}%; "
          f"on the edited items' source faces {plain:.2f}%, warped onto the edited landmarks {warped:.2f}%; "
          f"style classifier {clf_acc * 100:.1f}% on held-out stage-2 faces ({len(styles)} styles)", flush=True)

    # the landmark critic of the consistency rows, trained once (its minutes are reported, not in the budget)
    critic_minutes = None
    if any(stages.uses_critic(with_settings(diffusion, {**BASE, **VARIANTS[n]}, "diffusion", params))
           for n in args.variants):
        from lib.detector.critic import train_critic
        t0 = time.time()
        train, _ = stages.stage1_pairs(data_dir, res)
        r = train_critic(train.images, train.points, val.images, val.points, diffusion["critic"], work / "critic",
                         progress=False)
        critic_minutes = round((time.time() - t0) / 60, 2)
        crit_nme = judge_nme(Detector(work / "critic"), val.images, val.points).mean()
        print(f"critic: {critic_minutes} min ({r.steps_run if r else 0} steps this run), "
              f"{crit_nme:.2f}% NME on the real validation faces", flush=True)

    rows = []
    for name in args.variants:
        d = with_settings(diffusion, {**BASE, **VARIANTS[name]}, "diffusion", params)
        vwork = work / name.replace(" ", "_").replace("+", "").replace("__", "_")
        for stage in ("stage1", "stage2"):
            shutil.rmtree(vwork / stage, ignore_errors=True)
        vwork.mkdir(parents=True, exist_ok=True)
        ae_dir, ae_minutes = autoencoder_for(d, diffusion, data_dir, models, work)
        (vwork / "autoencoder").unlink(missing_ok=True)
        (vwork / "autoencoder").symlink_to(ae_dir.resolve())
        # the ceilings of the variant's latent space: the judges on real faces after its round trip
        vae = ae.load(ae_dir)
        row = {"variant": name, "autoencoder_minutes": ae_minutes,
               "judge_nme_round_trip": round(float(judge_nme(judge, ae.reconstruct(vae, val.images), val.points).mean()), 2),
               "style_ceiling": round(classifier.accuracy(*sc.round_trip_faces(vae, generated / "multidomain",
                                                                               resolution=res)) * 100, 1)}
        t0 = time.time()
        row.update(train_for("stage1", d, args.stage1_minutes, data_dir, generated, vwork))
        row.update(train_for("stage2", d, args.stage2_minutes, data_dir, generated, vwork))
        row["train_minutes"] = round((time.time() - t0) / 60, 2)
        pipe = sampling.load_generator(vwork / "stage2")
        t1 = time.time()
        images = sampling.generate(pipe, points, [style_prompt(s) for s in chosen], list(range(len(points))), res,
                                   diffusion["stage2"]["sample_steps"], diffusion["stage2"]["guidance"])
        row["images_per_s"] = round(len(images) / (time.time() - t1), 2)
        nme = judge_nme(judge, images, points)
        row["alignment_nme"] = round(float(nme[~edited].mean()), 2)
        row["alignment_nme_edited"] = round(float(nme[edited].mean()), 2)
        row["alignment_ratio"] = round(float(nme.mean() / real), 2)
        row["style_accuracy"] = round(float((np.array(classifier.predict(list(images))) == np.array(chosen)).mean() * 100), 1)
        ds.save_image(vwork / "samples.png", sampling.sample_grid(images[:24], condition.render_batch(points[:24], res)))
        rows.append(row)
        print(json.dumps(row), flush=True)

    table = pd.DataFrame(rows)
    if args.append and args.out and args.out.with_name(f"{args.out.name}.csv").exists():
        old = pd.read_csv(args.out.with_name(f"{args.out.name}.csv"))
        table = pd.concat([old[~old["variant"].isin(table["variant"])], table], ignore_index=True)
    head = (f"Equal CPU time: stage 1 {args.stage1_minutes} min + stage 2 {args.stage2_minutes} min per variant; "
            f"{args.faces} generated faces for validation landmarks (half edited). Judge: "
            f"{'detector ' + args.judge if args.judge else 'dlib (landmark box)'} at {res} px: {real:.2f}% NME on the "
            f"real validation faces, {recon:.2f}% on their autoencoder reconstructions; on the edited items' real "
            f"source faces {plain:.2f}%, and {warped:.2f}% on them warped onto the edited landmarks (the judge's own "
            f"cost of the edits). Style chance "
            f"{100 / len(styles):.1f}% ({len(styles)} styles)."
            + (f" The consistency rows' critic trained once, {critic_minutes} min, outside the budget; its "
               f"{crit_nme:.2f}% NME on the real validation faces." if critic_minutes is not None else ""))
    write_table(table, head, args.out, keep_earlier=args.append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
