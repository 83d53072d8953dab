"""Mixed precision on a CPU: what bf16 autocast buys in speed and what it costs in quality (the generator issue's
time budget). Three parts, in one run on one machine, so the speed-ups are ratios:

1. **Speed**: seconds per training step of the profile's autoencoder, diffusion model (UNet with the
   landmark-consistency critic on half the batch, as stage 1 trains) and detector, and seconds per batch of
   32 faces drawn with DDIM and guidance, in float32 and under ``lib.generator.precision.autocast("bf16")``
   (each timed twice, alternating; the faster of the two is kept).
2. **Training** (``--parts training``): stage 1 trained ``--steps`` steps twice from the same seed (the same
   batches, noise and timesteps), float32 and bf16; the paired per-step differences of the training loss and
   of the consistency term.
3. **Compile** (``--parts compile``): the diffusion training step under bf16, eager against ``torch.compile``.
4. **Sampling**: the profile's trained two-stage generator (``models/<profile>/stage2``) draws the guidance
   sweep's validation items at the profile's guidance in float32 and in bf16; alignment NME (dlib, landmark
   box) and style accuracy of each, and the mean absolute pixel difference between the two sets.

The autoencoder's quality under bf16 is measured by ``bench_autoencoder`` (variant ``32x32x4, bf16``).

    ./study run python -m benchmarks.bench_precision --profile cpu --out precision

``--out NAME`` writes one table per part, ``results/<profile>/benchmarks/NAME_<part>.{csv,md}``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib import pipeline
from lib.detector.critic import Critic
from lib.detector.network import NetworkConfig, build_network
from lib.generator.components import build_components, condition_tensor, vae_scale_factor
from lib.generator.pairs import PairSet
from lib.generator.precision import autocast
from lib.generator.sampling import generate, load_generator, make_pipeline
from lib.generator.training import LandmarkDiffusion
from lib.generator import stages
from lib.generator import synthesis as syn

from .common import add_out_argument, parse_args, write_table


def _timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _generator_inputs(diffusion: dict, models: Path):
    """The profile's diffusion model (untrained UNet, trained autoencoder), its critic and one batch
    of stage-1 inputs: (components, network, critic, points (32, 68, 2), latents, t, text, condition)."""
    torch.manual_seed(0)
    c = build_components(diffusion["model"], models / "autoencoder")
    f = vae_scale_factor(c.vae)
    net = LandmarkDiffusion(c.unet, c.controlnet, f)
    critic = Critic(stages.critic_dir(models))
    res = diffusion["model"]["resolution"]
    b = diffusion["stage1"]["batch_size"]
    points = (np.random.default_rng(0).random((32, 68, 2)) * res * 0.6 + res * 0.2).astype(np.float32)
    latents = torch.randn(b, c.vae.config.latent_channels, res // f, res // f)
    cond = condition_tensor(points[:b], res, c.conditioning)
    text = torch.randn(b, diffusion["model"]["max_prompt_tokens"], c.text_encoder.config.hidden_size)
    t = torch.randint(0, 1000, (b,))
    return c, net, critic, points, latents, t, text, cond


def speed(params: dict, models: Path) -> list[dict]:
    diffusion = params["diffusion"]
    c, net, critic, points, latents, t, text, cond = _generator_inputs(diffusion, models)
    res, b = diffusion["model"]["resolution"], len(latents)
    det = build_network(NetworkConfig(**params["detector"]["model"]))
    images = torch.rand(diffusion["autoencoder_train"]["batch_size"], 3, res, res) * 2 - 1
    crops = torch.randn(params["detector"]["train"]["batch_size"], 3, det.cfg.input_size, det.cfg.input_size)
    opt = torch.optim.AdamW([*net.parameters(), *c.vae.parameters(), *det.parameters()], 1e-5)

    def step(loss):
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def autoencoder(p):
        with autocast(p):
            rec = c.vae.decode(c.vae.encode(images).latent_dist.sample()).sample.float()
        step((rec - images).abs().mean())

    def generator(p):
        with autocast(p):
            pred = net(latents, t, text, cond).float()
            faces = c.vae.decode(pred[: b // 2] / c.vae.config.scaling_factor).sample.float().clamp(-1, 1)
            step(pred.pow(2).mean() + critic.loss(faces, points[: b // 2]))

    def detector(p):
        with autocast(p):
            step(sum(o.float().pow(2).mean() for o in det(crops)))

    pipe = make_pipeline(c)

    def sample(p):
        generate(pipe, points, ["a portrait of cartoon style"] * 32, list(range(32)), res, 20, 3.0,
                 mixed_precision=p)

    rows = []
    for name, fn, n in (("autoencoder step", autoencoder, 8), ("diffusion step (UNet + critic)", generator, 8),
                        ("detector step", detector, 16), ("32 faces drawn (DDIM 20, guidance 3)", sample, 1)):
        times = {"no": [], "bf16": []}
        for p in ("no", "bf16", "no", "bf16"):
            fn(p)  # warm-up
            times[p].append(_timed(lambda: fn(p), n))
        row = {"part": name, "float32 (s)": round(min(times["no"]), 3), "bf16 (s)": round(min(times["bf16"]), 3)}
        row["speed-up"] = round(row["float32 (s)"] / row["bf16 (s)"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def compiled(params: dict, models: Path, rounds: int = 3, n: int = 8) -> list[dict]:
    """Seconds per training step of the diffusion model as the stages train it under bf16 (UNet, then every
    estimate decoded and read by the critic), eagerly and through ``torch.compile`` (the network; the network
    and the decoder), each after its own warm-up, whose seconds (compiling included) are reported too; the
    fastest of `rounds` rounds of `n` steps is kept."""
    diffusion = params["diffusion"]
    rows = []
    for name in ("eager", "torch.compile: network", "torch.compile: network and decoder"):
        torch._dynamo.reset()
        c, net, critic, points, latents, t, text, cond = _generator_inputs(diffusion, models)
        c.vae.requires_grad_(False)
        opt = torch.optim.AdamW(net.parameters(), 1e-5)
        run = torch.compile(net) if name != "eager" else net
        decode = torch.compile(c.vae.decode) if name.endswith("decoder") else c.vae.decode

        def step():
            with autocast("bf16"):
                pred = run(latents, t, text, cond).float()
                faces = decode(pred / c.vae.config.scaling_factor).sample.float().clamp(-1, 1)
                loss = pred.pow(2).mean() + critic.loss(faces, points[: len(latents)])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        warm = _timed(step, 2) * 2
        row = {"diffusion step (bf16)": name, "warm-up, 2 steps (s)": round(warm, 1),
               "s per step": round(min(_timed(step, n) for _ in range(rounds)), 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for r in rows:
        r["speed-up"] = round(rows[0]["s per step"] / r["s per step"], 2)
    return rows


def sampling(params: dict, profile: str) -> list[dict]:
    from lib.data import datasets as ds
    from lib.evaluation import predictors as pr
    from lib.evaluation import style_classifier as sc
    synthesis, res = params["synthesis"], params["diffusion"]["model"]["resolution"]
    data_dir, models = pipeline.data_dir(profile), pipeline.models_dir(profile)
    val = PairSet(ds.read_dataset(data_dir / "crops" / "val", "300w"), res)
    judge = pr.build("dlib_box")
    clf, _ = sc.train_style_classifier(pipeline.generated_dir(profile) / "multidomain", resolution=res)
    cfg = synthesis["guidance"]
    items = syn.sweep_items(val.points, list(clf.classes), cfg["faces"], res, synthesis["seed"],
                            synthesis["edits_per_face"], synthesis["edits"], synthesis["exaggeration"])
    pipe = load_generator(models / synthesis["generators"]["two_stage"])
    guidance = float(params["diffusion"]["stage2"]["guidance"])
    rows, faces = [], {}
    for p in ("no", "bf16"):
        t0 = time.perf_counter()
        table, drawn = syn.guidance_sweep(pipe, items, [guidance], judge, clf, res, synthesis["steps"], p)
        faces[p] = drawn[guidance]
        rows.append({"precision": p, "faces": len(items), "guidance": guidance,
                     "alignment NME (%)": round(float(table["alignment_nme"].iloc[0]), 2),
                     "style accuracy (%)": round(float(table["style_accuracy"].iloc[0]), 1),
                     "seconds": round(time.perf_counter() - t0, 1)})
    rows[1]["mean |bf16 - float32| (pixel levels)"] = round(
        float(np.abs(faces["bf16"].astype(float) - faces["no"].astype(float)).mean()), 2)
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def train_stage1(profile: str, precision: str, steps: int, work: Path) -> Path:
    """Stage 1 for `steps` steps in `precision` from the profile's seed, into ``work/<precision>``; returns the
    path of the run's history."""
    import shutil

    params = pipeline.load_params(profile)
    diffusion, models = params["diffusion"], pipeline.models_dir(profile)
    stage = {**diffusion["stage1"], "steps": steps, "mixed_precision": precision, "sample_every": 10 ** 9,
             "checkpoint_every": 10 ** 9}
    out = work / precision
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(models / "autoencoder", out / "autoencoder")
    critic = Critic(stages.critic_dir(models)) if stages.uses_critic(diffusion) else None
    stages.train_generator("stage1", {**diffusion, "stage1": stage}, pipeline.data_dir(profile),
                           pipeline.generated_dir(profile), out, progress=False, critic=critic)
    return out / "stage1" / "history.csv"


def training(profile: str, steps: int, work: Path) -> list[dict]:
    """Stage 1 trained twice from the same seed (the same batches, noise and timesteps), float32 and bf16; the
    paired per-step differences of the loss and of the consistency term."""
    hist, rows = {}, []
    for p in ("no", "bf16"):
        t0 = time.perf_counter()
        hist[p] = pd.read_csv(train_stage1(profile, p, steps, work))
        rows.append({"precision": p, "steps": steps, "minutes": round((time.perf_counter() - t0) / 60, 2),
                     "loss, mean": round(float(hist[p]["loss"].mean()), 4),
                     "consistency, mean": round(float(hist[p]["consistency"].mean()), 4)})
    for col in ("loss", "consistency"):
        d = hist["bf16"][col].to_numpy() - hist["no"][col].to_numpy()
        rows[1][f"{col}: bf16 - float32 per step (mean +- se)"] = f"{d.mean():+.4f} +- {d.std(ddof=1) / np.sqrt(len(d)):.4f}"
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def cpu_description() -> str:
    """PyTorch's CPU capability and the bf16 instructions the CPU reports (Linux): bf16 autocast gains most with
    AMX tiles, less with AVX-512 BF16 alone, and is emulated without either."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        pass
    bf16 = [name for name in ("amx_bf16", "avx512_bf16") if name in flags] or ["none reported"]
    return f"CPU capability {torch.backends.cpu.get_cpu_capability()}, bf16 instructions: {', '.join(bf16)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--parts", nargs="*", default=["speed", "sampling"])
    add_out_argument(ap)
    ap.add_argument("--steps", type=int, default=150, help="stage-1 steps of the `training` part")
    ap.add_argument("--work", default="/tmp/bench_precision", help="scratch folder of the `training` part")
    args = parse_args(ap, argv)
    params = pipeline.load_params(args.profile)
    if params["diffusion"]["model"].get("pretrained"):
        raise SystemExit(f"profile {args.profile}: mixed precision on a GPU is accelerate's; this bench is for CPUs")
    threads = params["diffusion"]["stage1"].get("threads") or torch.get_num_threads()
    torch.set_num_threads(threads)
    models = pipeline.models_dir(args.profile)
    head = f"{args.profile} profile, {threads} threads, {cpu_description()}."
    if "speed" in args.parts:
        write_table(pd.DataFrame(speed(params, models)), f"Speed, float32 against bf16 autocast. {head}",
                    args.out and f"{args.out}_speed")
    if "compile" in args.parts:
        write_table(pd.DataFrame(compiled(params, models)), f"Diffusion training step, eager against torch.compile. {head}",
                    args.out and f"{args.out}_compile")
    if "training" in args.parts:
        write_table(pd.DataFrame(training(args.profile, args.steps, Path(args.work))),
                    f"Stage 1 trained {args.steps} steps from the same seed in each precision. {head}",
                    args.out and f"{args.out}_training")
    if "sampling" in args.parts:
        write_table(pd.DataFrame(sampling(params, args.profile)),
                    f"The two-stage generator's guidance-sweep items drawn in each precision. {head}",
                    args.out and f"{args.out}_sampling")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
