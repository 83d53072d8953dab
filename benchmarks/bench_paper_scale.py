"""The ``paper`` profile's cost at its real size, for the cost model of docs/paper-scale.md: memory, seconds and
FLOPs per step of each kind of work the profile does, on the machine it runs on (a GPU for the generator).

Parts (``--parts``, default all three), each run in a process of its own so that its peak RSS is its own:

- ``stage1``: stage-1 training steps exactly as the profile trains them (``lib.generator.training.train`` with the
  profile's ``diffusion.stage1`` settings: Stable Diffusion 1.4 frozen, a new ControlNet trained with AdamW, fp16
  on a GPU), at the profile's resolution and batch (``--batch``; stage 2 and the one-step ablation cost the same
  per step).
- ``sample``: one DDIM sample with classifier-free guidance at the profile's step count and guidance
  (``lib.generator.sampling.generate`` on the ControlNet pipeline, ``synthesis.mixed_precision``), ``--batch`` faces.
  The pipeline is moved to the GPU here; the project's synthesis does not move it (it runs where the pipeline is).
- ``detector``: detector fine-tune steps of the paper's detector (``detector.model``, at its input size) with the
  paper's recipe (``detector.finetune``: the two-stage set alone), through ``lib.detector.training.train`` from a
  saved detector (``init``), as every fine-tune starts; batch ``detector.finetune.train.batch_size`` (or
  ``--detector-batch``). lib.detector places nothing on a GPU, so this part runs where that code runs; the row's
  device says where it ran (a GPU is named only if it allocated memory there).

For each part it prints and writes: peak RSS of the part's process (``resource.getrusage``), the peak GPU memory
allocated (CUDA only), the median seconds per step over ``--steps`` timed steps (the first ``--warmup`` steps and a
training run's last step, where the detector validates, are not timed; a step's time is the training history's),
FLOPs per step counted by ``torch.utils.flop_counter.FlopCounterMode`` (a run of two steps minus a run of one,
in the part's process, after the timed run, so the count costs no time and one-off work such as encoding the
prompt cancels out), and the FLOP rate they imply. For ``sample`` a step is one denoising step with guidance (the
UNet and ControlNet on twice the batch); its row also gives the whole call (text encoding, every step, decoding).

The networks are built at their real size, randomly initialised, from Stable Diffusion 1.4's published
configurations (``params/sd14``, ``lib.generator.components.build_from_configs``: nothing is downloaded; the
tokenizer is a stand-in of CLIP's size), which costs what the real weights cost; ``--pretrained`` uses a local
Stable Diffusion folder instead, through the profile's own loading path. ``--tiny`` runs the same code on the tests'
tiny configuration (tests/conftest.py ``stable_diffusion_dir``, the detector of tests/test_paper_path.py; a sample of
4 DDIM steps unless ``--sample-steps``) in under a minute, to check the script; its figures mean nothing.

    ./study run python -m benchmarks.bench_paper_scale --out paper_scale            # batch 4, every part (a GPU)
    ./study run python -m benchmarks.bench_paper_scale --batch 1 --out paper_scale_batch1
    ./study run python -m benchmarks.bench_paper_scale --tiny --steps 2             # a check, on a CPU

``--out NAME`` writes ``results/paper/benchmarks/NAME.{csv,md}``; without it the table is printed only.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lib import pipeline

from .common import add_out_argument, parse_args, write_table

PARTS = ("stage1", "sample", "detector")
PROFILE = "paper"

# the tests' tiny Stable Diffusion (tests/conftest.py, stable_diffusion_dir): 32 px, a 2x autoencoder, 16 px latents
TINY_RESOLUTION = 32
TINY_CROP = 64
TINY_CONFIGS = {
    "unet": {"_class_name": "UNet2DConditionModel", "sample_size": 16, "block_out_channels": [16, 32],
             "layers_per_block": 1, "norm_num_groups": 8, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32, "attention_head_dim": 4},
    "vae": {"_class_name": "AutoencoderKL", "block_out_channels": [8, 16],
            "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
            "latent_channels": 4, "norm_num_groups": 8},
    "text_encoder": {"model_type": "clip_text_model", "vocab_size": 514, "hidden_size": 32, "intermediate_size": 37,
                     "num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 12,
                     "bos_token_id": 512, "eos_token_id": 513},
}
TINY_SAMPLE_STEPS = 4  # the check's sample (the profile's 50 take half a minute on a busy 2-core CPU even so)
# the tests' small detector (tests/test_paper_path.py)
TINY_DETECTOR = {"stacks": 1, "channels": 16, "depth": 2, "input_size": 32, "heatmap_size": 8}


# ------------------------------------------------------------------ measuring

def peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cuda():
    import torch
    return torch.cuda if torch.cuda.is_available() else None


def _reset_gpu_peak() -> None:
    gc.collect()
    if _cuda():
        _cuda().synchronize()
        _cuda().empty_cache()
        _cuda().reset_peak_memory_stats()


def _gpu_peaks() -> dict:
    """GPU memory (GiB): the peak since the last reset, allocated by tensors and reserved by PyTorch's allocator
    (what the device must hold, less the CUDA context), and what tensors hold now (after a part's timed run: the
    networks' weights, the static share of the peak)."""
    cuda = _cuda()
    if not cuda:
        return dict.fromkeys(("peak GPU (GiB)", "peak GPU reserved (GiB)", "GPU held after (GiB)"), float("nan"))
    gc.collect()
    return {"peak GPU (GiB)": round(cuda.max_memory_allocated() / 2**30, 2),
            "peak GPU reserved (GiB)": round(cuda.max_memory_reserved() / 2**30, 2),
            "GPU held after (GiB)": round(cuda.memory_allocated() / 2**30, 2)}


def _device_used() -> str:
    """Where the work since the last reset ran: the GPU if it allocated memory there, else the CPU."""
    cuda = _cuda()
    if cuda and cuda.max_memory_allocated() > 0:
        return f"cuda ({cuda.get_device_name()})"
    import torch
    return f"cpu ({torch.get_num_threads()} threads)"


def counted_flops(fn) -> int:
    """FLOPs of ``fn()`` as ``FlopCounterMode`` counts them (matrix products, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def step_seconds(history: pd.DataFrame, warmup: int, steps: int) -> list[float]:
    """Seconds of the timed steps of a training run: the history's cumulative ``seconds`` differenced, the first
    `warmup` steps and everything after ``warmup + steps`` left out."""
    per_step = np.diff(np.concatenate([[0.0], history["seconds"].to_numpy(float)]))
    timed = per_step[warmup:warmup + steps]
    if len(timed) < steps:
        raise RuntimeError(f"the run logged {len(per_step)} steps; {warmup + steps + 1} were asked for")
    return timed.tolist()


def measure_training(run, warmup: int, steps: int):
    """Time and count a training part: ``run(steps, name)`` trains that many steps (from scratch) and returns
    its TrainResult. Returns the seconds of the timed steps, the GPU peaks, the device, and the FLOPs of one
    step (a two-step run minus a one-step run, so one-off work cancels)."""
    _reset_gpu_peak()
    timed = run(warmup + steps + 1, "timed")
    seconds = step_seconds(timed.history, warmup, steps)
    gpu, device = _gpu_peaks(), _device_used()
    flops = counted_flops(lambda: run(2, "flops2")) - counted_flops(lambda: run(1, "flops1"))
    return seconds, gpu, device, flops


def _row(part: str, what: str, batch: int, size: int, precision: str, seconds: list[float], flops: int,
         params_total: int, params_trained: int, **extra) -> dict:
    s = float(np.median(seconds))
    return {"part": part, "what": what, "batch": batch, "size (px)": size, "precision": precision,
            "device": _device_used(), "steps timed": len(seconds), "s/step (median)": round(s, 4),
            "s/step (min)": round(float(np.min(seconds)), 4), "GFLOP/step": round(flops / 1e9, 3),
            "achieved TFLOP/s": round(flops / s / 1e12, 3) if s > 0 else float("nan"),
            "parameters (M)": round(params_total / 1e6, 2), "trained (M)": round(params_trained / 1e6, 2),
            "peak RSS (GiB)": round(peak_rss_gib(), 2), **_gpu_peaks(), **extra}


# ------------------------------------------------------------------ inputs

def _tiny_config_folder(folder: Path) -> Path:
    """The tests' tiny Stable Diffusion as a folder of configurations in diffusers' layout."""
    from transformers import CLIPTextConfig
    for name in ("unet", "vae"):
        (folder / name).mkdir(parents=True)
        (folder / name / "config.json").write_text(json.dumps(TINY_CONFIGS[name], indent=2))
    cfg = dict(TINY_CONFIGS["text_encoder"])
    cfg.pop("model_type")
    CLIPTextConfig(**cfg).save_pretrained(folder / "text_encoder")
    return folder


def _params(args) -> dict:
    """The paper profile, brought to the tests' sizes with --tiny (every other value as in the profile)."""
    p = pipeline.load_params(PROFILE)
    if args.tiny:
        p["diffusion"]["model"]["resolution"] = TINY_RESOLUTION
        p["data"]["crop_size"] = TINY_CROP
        p["detector"]["model"].update(TINY_DETECTOR)
    return p


def _components(args, params: dict, work: Path):
    """The paper's networks: built from configurations (default), or loaded by the profile's own path."""
    from lib.generator import components as cm
    model = params["diffusion"]["model"]
    if args.pretrained:
        return cm.build_components({**model, "pretrained": args.pretrained}), f"loaded from {args.pretrained}"
    folder = _tiny_config_folder(work / "tiny_configs") if args.tiny else Path(args.configs)
    # base: the folder, so the run saves only its ControlNet, as the paper's runs over a local base do
    return cm.build_from_configs(folder, model, base=str(folder)), f"random weights from {folder}"


def _faces(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` procedural photo faces (images, exact landmarks) at `size` px."""
    from lib.data.procedural import render_face
    faces = [render_face(seed + i, "photo", size) for i in range(n)]
    return np.array([f.image for f in faces], np.uint8), np.array([f.landmarks for f in faces], np.float64)


def _pairs(n: int, resolution: int, prompt: str = ""):
    from lib.generator.pairs import PairSet
    pairs = PairSet([], resolution)
    pairs.images, pairs.points = _faces(n, resolution)
    pairs.prompts = [prompt] * n
    return pairs


def _count(module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


# ------------------------------------------------------------------ the parts

def part_stage1(args, params: dict, work: Path) -> list[dict]:
    import torch

    from lib.generator import training
    d = params["diffusion"]
    res, batch = d["model"]["resolution"], args.batch or d["stage1"]["batch_size"]
    settings = {**d["stage1"], "batch_size": batch, "checkpoint_every": 10**9, "sample_every": 10**9,
                "threads": args.threads}
    if not torch.cuda.is_available() and settings["mixed_precision"] == "fp16":
        settings["mixed_precision"] = "no"  # fp16 autocast needs a GPU (as tests/test_paper_path.py does)
    pairs = _pairs(max(batch, 2), res)
    c, source = _components(args, params, work)

    def run(steps: int, name: str):
        out = work / name
        result = training.train(pairs, c, training.TrainConfig(**{**settings, "steps": steps}), out, d["model"],
                                progress=False)
        shutil.rmtree(out, ignore_errors=True)  # checkpoints of the real ControlNet are GBs
        return result

    seconds, gpu, device, flops = measure_training(run, args.warmup, args.steps)
    total = sum(_count(m)[0] for m in (c.unet, c.controlnet, c.vae, c.text_encoder))
    row = _row("stage1", "training step: ControlNet trained (AdamW), UNet + VAE + text encoder frozen", batch, res,
               settings["mixed_precision"], seconds, flops, total, _count(c.controlnet)[1], base=source)
    row.update({**gpu, "device": device})
    return [row]


def part_sample(args, params: dict, work: Path) -> list[dict]:
    import torch

    from lib.generator import sampling
    from lib.generator.styles import style_prompt
    s = params["synthesis"]
    res = params["diffusion"]["model"]["resolution"]
    batch = args.batch or params["diffusion"]["stage1"]["batch_size"]
    steps = args.sample_steps or (TINY_SAMPLE_STEPS if args.tiny else s["steps"])
    guidance = max(s["guidance"]["values"])  # any scale above 1 runs both branches: the same cost
    c, source = _components(args, params, work)
    pipe = sampling.make_pipeline(c)
    if torch.cuda.is_available():
        pipe.to("cuda")
    _, points = _faces(batch, res)
    prompts = [style_prompt(s["styles"][i % len(s["styles"])]) for i in range(batch)]

    def draw(n_steps: int):
        return sampling.generate(pipe, points, prompts, list(range(batch)), res, n_steps, guidance, batch,
                                 mixed_precision=s["mixed_precision"])

    draw(1)  # warm-up: allocation, kernels
    _reset_gpu_peak()
    calls = []
    for _ in range(args.sample_calls):
        t0 = time.perf_counter()
        draw(steps)
        calls.append(time.perf_counter() - t0)
    gpu, device = _gpu_peaks(), _device_used()
    one, two = counted_flops(lambda: draw(1)), counted_flops(lambda: draw(2))
    per_step = two - one
    call_flops = one + (steps - 1) * per_step
    per_call = float(np.median(calls))
    total = sum(_count(m)[0] for m in (c.unet, c.controlnet, c.vae, c.text_encoder))
    row = _row("sample", f"one DDIM step with guidance {guidance:g} (UNet + ControlNet on 2 x batch)", batch, res,
               s["mixed_precision"], [t / steps for t in calls], per_step, total, 0, base=source)
    # a step's seconds are the call's over its steps (text encoding and decoding included), so the rate is the call's
    row.update({**gpu, "device": device, "s/call (median)": round(per_call, 3),
                "GFLOP/call": round(call_flops / 1e9, 3), "sampler steps": steps, "steps timed": len(calls) * steps,
                "achieved TFLOP/s": round(call_flops / per_call / 1e12, 3) if per_call > 0 else float("nan")})
    return [row]


def part_detector(args, params: dict, work: Path) -> list[dict]:
    from lib.detector import training as det
    from lib.detector.finetune import recipes
    from lib.detector.model import save_detector
    from lib.detector.network import NetworkConfig, build_network
    d = params["detector"]
    mcfg = NetworkConfig(**d["model"])
    ft = d["finetune"]
    train = recipes(ft["sets"])["synthetic_two_stage_alone"].train_cfg(ft["train"], ft["mix"]["candidates"][0])
    batch = args.detector_batch or train["batch_size"]
    settings = {**train, "batch_size": batch, "checkpoint_every": 10**9, "val_every": 10**9, "threads": args.threads}
    size = params["data"]["crop_size"]
    images, points = _faces(batch + 2, size)
    faces = det.FaceSet.from_arrays(list(images[:batch]), list(points[:batch]))
    val = det.FaceSet.from_arrays(list(images[batch:]), list(points[batch:]))
    init = work / "detector_init"
    model = build_network(mcfg, pretrained=False)
    save_detector(init, model, settings["margin"])  # a fine-tune starts from a saved detector

    def run(steps: int, name: str):
        out = work / name
        cfg = det.TrainConfig.from_dict({**settings, "steps": steps})
        result = det.train(faces, val, mcfg, cfg, out, init=init, progress=False)
        shutil.rmtree(out, ignore_errors=True)
        return result

    seconds, gpu, device, flops = measure_training(run, args.warmup, args.steps)
    total = _count(model)[0]
    row = _row("detector", f"fine-tune step: {mcfg.arch}, {mcfg.stacks} stacks x {mcfg.channels} channels (Adam, "
               "EMA, augmentation)", batch, mcfg.input_size, "float32", seconds, flops, total, total)
    row.update({**gpu, "device": device})
    return [row]


RUN = {"stage1": part_stage1, "sample": part_sample, "detector": part_detector}


def run_part(part: str, args) -> list[dict]:
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    params = _params(args)
    with tempfile.TemporaryDirectory(prefix=f"bench_paper_scale_{part}_", dir=args.work) as tmp:
        return RUN[part](args, params, Path(tmp))


def _child_argv(args, part: str, result: Path) -> list[str]:
    argv = ["--parts", part, "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
            "--configs", str(args.configs), "--sample-calls", str(args.sample_calls), "--child", str(result)]
    for flag, value in (("--batch", args.batch), ("--detector-batch", args.detector_batch),
                        ("--sample-steps", args.sample_steps), ("--pretrained", args.pretrained),
                        ("--work", args.work)):
        if value:
            argv += [flag, str(value)]
    return argv + (["--tiny"] if args.tiny else [])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=PROFILE, choices=[PROFILE], help="the profile measured (only paper)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per training step and per sample call (default: diffusion.stage1.batch_size, 4)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per training part (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first steps per training part (default 1)")
    ap.add_argument("--sample-steps", type=int, default=None,
                    help="DDIM steps of the sample (default: the profile's synthesis.steps, 50; with --tiny, "
                         f"{TINY_SAMPLE_STEPS})")
    ap.add_argument("--sample-calls", type=int, default=1, help="timed sample calls (default 1)")
    ap.add_argument("--detector-batch", type=int, default=None,
                    help="detector fine-tune batch (default: detector.finetune.train.batch_size, 32)")
    ap.add_argument("--configs", default=None,
                    help="folder of Stable Diffusion configurations (default: params/sd14, Stable Diffusion 1.4)")
    ap.add_argument("--pretrained", default=None,
                    help="a local Stable Diffusion folder (diffusers layout) to load instead, by the profile's path")
    ap.add_argument("--tiny", action="store_true",
                    help="the tests' tiny configuration (a check of the script in seconds; its figures mean nothing)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)")
    ap.add_argument("--in-process", action="store_true",
                    help="run the parts in this process (peak RSS is then the running peak over the parts)")
    ap.add_argument("--work", default=None, help="folder for the runs' temporary outputs (default: the system's)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_out_argument(ap)
    args = parse_args(ap, argv)
    if args.configs is None:
        from lib.generator.components import SD14_CONFIGS
        args.configs = str(SD14_CONFIGS)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be at least 1 and --warmup at least 0")

    if args.child:  # one part in its own process: the rows go to a JSON file
        (part,) = args.parts
        Path(args.child).write_text(json.dumps(run_part(part, args)))
        return 0

    rows, failed = [], []
    for part in args.parts:
        t0 = time.perf_counter()
        print(f"[{part}] ...", flush=True)
        try:
            if args.in_process:
                got = run_part(part, args)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    result = Path(tmp) / "rows.json"
                    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_paper_scale",
                                           *_child_argv(args, part, result)], cwd=pipeline.ROOT)
                    if proc.returncode:
                        raise RuntimeError(f"the part's process exited with {proc.returncode}")
                    got = json.loads(result.read_text())
        except Exception as exc:  # noqa: BLE001 - one part's failure is reported, the others still run
            failed.append(part)
            print(f"[{part}] failed: {exc}", flush=True)
            got = [{"part": part, "what": f"failed: {exc}"}]
        for r in got:
            r["wall (s)"] = round(time.perf_counter() - t0, 1)
        rows += got
        print(json.dumps(got, default=str), flush=True)
    table = pd.DataFrame(rows)
    scale = "the tests' tiny configuration (a check: these figures mean nothing)" if args.tiny else \
        "the paper's real sizes (Stable Diffusion 1.4 + ControlNet, STAR's detector)"
    write_table(table, f"The paper profile's cost per step, {scale}: median seconds over {args.steps} timed steps, "
                       "FLOPs counted by FlopCounterMode, peak RSS of each part's process"
                       f"{' (running peak: --in-process)' if args.in_process else ''}.", args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
