"""Diffusion costs on this machine's CPU. Prints figures; asserts nothing.

    ./study run python -m benchmarks.bench_diffusion --profile cpu [--threads 2]

1. One training step (UNet with the profile's conditioning: + ControlNet, or
   the part channels concatenated; forward, backward, AdamW) in the profile's latent space next to the same UNet in pixel space at the same
   image size (the choice the small profiles make: latent, with a small
   autoencoder trained once).
2. Synthesis throughput (images/s) of the profile's two-stage generator with
   its DDIM steps and guidance (a freshly built generator if none is trained:
   the same speed)."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from lib.generator import autoencoder as ae
from lib.generator import components, condition, sampling, training
from lib.generator import edits
from lib import pipeline
from lib.data.procedural import render_face


def step_seconds(unet, controlnet, x, cond, text, repeats: int, factor: int) -> float:
    net = training.LandmarkDiffusion(unet, controlnet, factor)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    t = torch.randint(0, 1000, (len(x),))
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        loss = net(x, t, text, cond).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))  # the first step pays for allocation


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--guidance", type=float, default=None,
                    help="guidance scale (default: the largest of the profile's candidates, the costlier path)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    d = pipeline.load_params(a.profile)["diffusion"]
    model, res = d["model"], d["model"]["resolution"]
    if model.get("pretrained"):
        print("this benchmark is for the small profiles (a UNet built from config)")
        return 1
    models = pipeline.models_dir(a.profile)
    with tempfile.TemporaryDirectory() as tmp:
        ae_dir = models / "autoencoder"
        if not (ae_dir / "config.json").exists():  # an untrained autoencoder of the same shape costs the same
            ae_dir = Path(tmp) / "ae"
            ae.build({**model["autoencoder"], "resolution": res}).save_pretrained(ae_dir)
        c = components.build_components(model, ae_dir)
        b = d["stage1"]["batch_size"]
        text = components.encode_prompts(c.tokenizer, c.text_encoder, [""] * b).clone()
        concat = c.controlnet is None
        cond = torch.rand(b, len(condition.PARTS) if concat else 3, res, res)
        f = components.vae_scale_factor(c.vae)
        latent = step_seconds(c.unet, c.controlnet, torch.randn(b, 4, res // f, res // f), cond, text, a.repeats, f)
        # the same UNet in pixel space: RGB in and out at full resolution, condition not downsampled
        cfg = {k: v for k, v in c.unet.config.items() if not k.startswith("_")}
        cfg.update(sample_size=res, in_channels=3 + (len(condition.PARTS) if concat else 0), out_channels=3)
        unet_px = UNet2DConditionModel(**cfg)
        cn_px = None if concat else ControlNetModel.from_unet(unet_px, conditioning_embedding_out_channels=(16,))
        pixel = step_seconds(unet_px, cn_px, torch.randn(b, 3, res, res), cond, text, a.repeats, 1)
        print(f"training step, batch {b}, {res} px, {a.threads} threads, conditioning {c.conditioning}:")
        print(f"  latent ({res // f}x{res // f}x4, autoencoder /{f}): {latent:.3f} s/step")
        print(f"  pixel  ({res}x{res}x3):                 {pixel:.3f} s/step  ({pixel / latent:.1f}x the latent step)")

        s = pipeline.load_params(a.profile)["synthesis"]
        gen = models / s["generators"]["two_stage"]
        if (gen / "generator.json").exists():
            pipe, which = sampling.load_generator(gen), "trained two-stage generator"
        else:
            sampling.save_generator(Path(tmp) / "gen", c)
            pipe, which = sampling.load_generator(Path(tmp) / "gen"), "untrained generator of the same shape"
        shape = render_face(0, "photo", res).landmarks
        rng = np.random.default_rng(0)
        points = np.array([edits.random_edits(shape, rng, res)[0] for _ in range(a.images)])
        prompts = [f"a portrait of {s['styles'][i % len(s['styles'])]} style" for i in range(a.images)]
        t0 = time.perf_counter()
        guidance = a.guidance if a.guidance is not None else max(s["guidance"]["values"])
        sampling.generate(pipe, points, prompts, list(range(a.images)), res, s["steps"], guidance, s["batch_size"])
        sec = time.perf_counter() - t0
        print(f"synthesis ({which}): {a.images} images, DDIM {s['steps']} steps, guidance {guidance:g}, "
              f"batch {s['batch_size']}: {a.images / sec:.2f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
