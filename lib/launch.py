"""Train one generator stage of a profile outside the notebooks, on one or many
GPUs, under ``accelerate launch``:

    accelerate launch --num_processes 4 -m lib.launch stage1 --profile paper
    python -m lib.launch multidomain --profile paper       # the stage-2 set; one process, no training
    accelerate launch --num_processes 4 -m lib.launch stage2 --profile paper
    python -m lib.launch autoencoder --profile demo        # small profiles; one process
    python -m lib.launch critic --profile cpu              # where a stage uses the consistency loss

The whole sequence, from data prep to the notebooks: docs/multi-gpu.md.

Targets (``lib.generator.stages``): ``autoencoder`` (small profiles' latent
space; nothing to do for a pretrained base; one process only), ``critic`` (the
landmark critic of the consistency loss, ``lib.detector.critic``; nothing to do where
no stage sets ``consistency_weight``; one process only), ``stage1``,
``multidomain`` (builds the multi-domain set of stage 2 and the one-step model in
``generated/<profile>/multidomain``, as notebook 03 does; no training; one process only),
``stage2`` (needs stage 1 and the multi-domain set), ``onestep`` (needs the
multi-domain set).

Each process takes its shard of every global batch of ``batch_size *
processes`` pairs; the main process writes the checkpoints and the finished
model to ``models/<profile>/<stage>``. A finished model is picked up as it is
by any later call (the notebooks' single process trains 0 steps). An
interrupted launch resumes from its last checkpoint when started again; start
it with the same number of processes, which sets its global batch.

On CPUs (no GPU; tests): accelerate 1.x's ``--cpu`` starts one process unless
under mpirun, so start torchrun processes and tell them to use the CPU (gloo):

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m lib.launch stage1 --profile smoke

``--root`` points at another project folder (``params/``, ``data/``,
``generated/``, ``models/`` under it; tests use it). With ``MDFLD_LOG_SHARDS``
set to a path, every process appends its rank, step and batch indices to
``<path>.rank<r>`` (JSON lines), to check the sharding.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import pipeline

STAGES = ("autoencoder", "critic", "stage1", "multidomain", "stage2", "onestep")
ONE_PROCESS = ("autoencoder", "critic", "multidomain")  # no training on several processes


class LaunchError(Exception):
    """A problem found before training: the message says what to do."""


def check_inputs(stage: str, diffusion: dict, data: Path, generated: Path, models: Path, processes: int) -> None:
    """Raise LaunchError naming what `stage` lacks (and how to make it)."""
    if stage not in STAGES:
        raise LaunchError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    if stage in ONE_PROCESS and processes > 1:
        raise LaunchError(f"{stage} runs on one process only (this launch has {processes}); "
                          f"run: python -m lib.launch {stage} --profile <profile>")
    crops = Path(data) / "crops"
    for split in ("train", "val"):
        if not any((crops / split).glob("*.pts")):
            raise LaunchError(f"{crops / split}: no prepared faces; run data prep first "
                              "(python -m lib.pipeline run 01_data_prep)")
    if stage in ("stage2", "onestep") and not (Path(generated) / "multidomain" / "manifest.csv").exists():
        raise LaunchError(f"{Path(generated) / 'multidomain' / 'manifest.csv'}: no multi-domain set; notebook 03 makes it, "
                          "or without training: python -m lib.launch multidomain --profile <profile>")
    if stage == "multidomain":
        return  # the training faces are all it reads
    pretrained = diffusion["model"].get("pretrained")
    if pretrained and not Path(pretrained).exists():
        raise LaunchError(f"{pretrained}: no Stable Diffusion here; set diffusion.model.pretrained "
                          "to your local copy (a diffusers folder)")
    if stage in ("stage1", "onestep") and not pretrained and not (Path(models) / "autoencoder" / "config.json").exists():
        raise LaunchError(f"{Path(models) / 'autoencoder'}: no autoencoder; train it first "
                          "(python -m lib.launch autoencoder --profile <profile>, or notebook 02)")
    if stage == "stage2" and not (Path(models) / "stage1" / "generator.json").exists():
        raise LaunchError(f"{Path(models) / 'stage1'}: no finished stage-1 model; train stage1 first")
    from .generator import stages
    if stage in stages.GENERATORS and diffusion[stage].get("consistency_weight") \
            and not (stages.critic_dir(models) / "model.safetensors").exists():
        raise LaunchError(f"{stages.critic_dir(models)}: no landmark critic, which {stage}'s consistency loss "
                          "needs; train it first (python -m lib.launch critic --profile <profile>, or notebook 02)")


def _log_shards(path: str) -> None:
    """Debug hook (MDFLD_LOG_SHARDS): record each process's batch indices per step."""
    from accelerate import PartialState

    from .generator import training as dm
    batch = dm._batch  # called by dm.train with this process's shard of the global batch

    def logged(pairs, idx, cfg, step, *rest):
        rank = PartialState().process_index
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.rank{rank}", "a") as fh:
            fh.write(json.dumps({"rank": rank, "step": int(step), "idx": [int(i) for i in idx]}) + "\n")
        return batch(pairs, idx, cfg, step, *rest)

    dm._batch = logged


def run(stage: str, profile: str, root: Path = pipeline.ROOT, stop_at: int | None = None,
        progress: bool = True) -> Path | None:
    """Train `stage` of `profile` (or build its multi-domain set); returns the model folder (the
    set's folder for ``multidomain``; None: nothing to train)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from .generator import stages

    root = Path(root)
    try:
        params = pipeline.load_params(profile, root)
    except FileNotFoundError as exc:
        raise LaunchError(str(exc)) from None
    diffusion = params["diffusion"]
    data, generated, models = pipeline.data_dir(profile, root), pipeline.generated_dir(profile, root), pipeline.models_dir(profile, root)
    # the state Accelerator will find; with ACCELERATE_USE_CPU several processes join a gloo group
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    check_inputs(stage, diffusion, data, generated, models, state.num_processes)
    if os.environ.get("MDFLD_LOG_SHARDS"):
        _log_shards(os.environ["MDFLD_LOG_SHARDS"])
    if stage == "multidomain":
        errors: list[str] = []
        rows = stages.make_multidomain(diffusion, data, generated, errors)
        out = generated / "multidomain"
        for e in errors:
            print(f"skipped: {e}", file=sys.stderr, flush=True)
        print(f"multidomain of {profile}: {len(rows)} pairs in {len({r['style'] for r in rows})} styles "
              f"({len(errors)} faces skipped) in {out}", flush=True)
        return out
    if stage == "autoencoder":
        if stages.train_autoencoder(diffusion, data, models, progress=progress) is None:
            print(f"{profile}: pretrained base, its own autoencoder is used; nothing to train", flush=True)
            return None
        out = models / "autoencoder"
        finished = (out / "config.json").exists()
    elif stage == "critic":
        if not stages.uses_critic(diffusion):
            print(f"{profile}: no stage uses the consistency loss; no critic to train", flush=True)
            return None
        from .detector.critic import train_critic
        train, val = stages.stage1_pairs(data, diffusion["model"]["resolution"])
        out = stages.critic_dir(models)
        finished = train_critic(train.images, train.points, val.images, val.points, diffusion["critic"], out,
                                progress=progress).finished
    else:
        critic = None
        if diffusion[stage].get("consistency_weight"):
            from .detector.critic import Critic
            critic = Critic(stages.critic_dir(models))
        result = stages.train_generator(stage, diffusion, data, generated, models, stop_at=stop_at, progress=progress,
                                        critic=critic)
        out, finished = models / stage, result.finished
    if state.is_main_process:
        if finished:
            print(f"{stage} of {profile}: finished model in {out}", flush=True)
        else:
            print(f"{stage} of {profile}: stopped early; the checkpoint in {out / 'checkpoints'} resumes it", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="accelerate launch [--num_processes N] -m lib.launch",
                                 description="Train one generator stage of a profile, or build the "
                                             "multi-domain set (see lib/launch.py, docs/multi-gpu.md).")
    ap.add_argument("stage", choices=STAGES)
    ap.add_argument("--profile", required=True, help="params/<profile>.yaml, e.g. paper")
    ap.add_argument("--root", type=Path, default=pipeline.ROOT, help="the project folder (default: this checkout)")
    ap.add_argument("--stop-at", type=int, default=None, help="end at this step (training resumes from it later)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    a = ap.parse_args(argv)
    try:
        run(a.stage, a.profile, a.root, a.stop_at, progress=not a.no_progress)
    except LaunchError as exc:
        if os.environ.get("RANK", "0") == "0":  # every process stops; one says why
            print(f"lib.launch: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
