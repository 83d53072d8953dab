"""The one training scaffold every trainer uses (autoencoder, diffusion model,
detector): seeding and threads, resume by run signature, the epoch order of the
data, checkpoints, learning-rate schedule (diffusers' ``get_scheduler``),
progress, and the result as a value.

    run = TrainingRun(out, settings, steps=cfg.steps, checkpoint_every=cfg.checkpoint_every, desc="train x")
    run.resume({"model": model}, opt, scheduler=sched, ema=ema)
    for step in run:                          # from the resumed step to the end
        idx = epoch_batch(step, n, cfg.batch_size, cfg.seed)
        ...
        run.log(loss=float(loss))             # history row, progress, checkpoint when due
    result = run.finish()                     # TrainResult: history, seconds, steps this run

Resuming. A checkpoint is resumed when its *settings* match this run's, where
the settings leave out what only sets the run's length or speed (``steps``,
``threads``, the checkpoint / validation / sample intervals): raising ``steps``
continues a finished or interrupted run. The learning-rate schedule is then
re-planned for the new length from the step reached (steps already taken keep
the rates they had), so a run extended from N to M steps is close to, but not
bit-identical with, a fresh M-step run; an interrupted run resumed with the
same length is exact (tested for every trainer). A checkpoint written with
other settings is moved aside to ``last.<time>.safetensors``, never deleted.
The settings include a ``fingerprint`` of the training data and of the initial
weights, so a run whose data or starting model changed (a retrained stage 1, a
redrawn synthetic set) is trained again, not taken for the finished one.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoints
from .progress import progress

# settings that change how long or how fast a run goes, not what it computes
RUN_LENGTH_KEYS = frozenset({"steps", "threads", "checkpoint_every", "val_every", "sample_every", "sample_steps"})


def fingerprint(*parts) -> str:
    """A short content hash (sha256, 16 hex digits) of arrays, strings, sequences of
    them, and files or folders (a folder: its ``*.json`` and ``*.safetensors`` files),
    for run settings and set records."""
    h = hashlib.sha256()

    def add(x):
        if isinstance(x, Path):
            files = [x]
            if x.is_dir():  # its weights and configs; its checkpoints are training state, not weights
                files = sorted(f for f in [*x.rglob("*.json"), *x.rglob("*.safetensors")]
                               if "checkpoints" not in f.relative_to(x).parts)
            for f in files:
                h.update(f.name.encode())
                with open(f, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
        elif isinstance(x, np.ndarray):
            h.update(str((x.dtype, x.shape)).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, (list, tuple)):
            h.update(f"[{len(x)}".encode())
            for y in x:
                add(y)
        else:
            h.update(repr(x).encode())

    for part in parts:
        add(part)
    return h.hexdigest()[:16]


def seed_everything(seed: int, threads: int = 0) -> None:
    """Seed torch's global generator and set the thread count (0: torch's default)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def epoch_batch(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of the batch at `step`: a fresh permutation of the `n` items each
    epoch (seeded by (seed, epoch)), consecutive slices within it; the whole
    (permuted) set when it is smaller than a batch."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[k * batch_size:(k + 1) * batch_size] if n >= batch_size else perm


def make_scheduler(opt: torch.optim.Optimizer, name: str, warmup: int, steps: int):
    """A learning-rate schedule from diffusers (``constant``, ``constant_with_warmup``,
    ``linear``, ``cosine``, ...), stepped once per optimiser step."""
    from diffusers.optimization import get_scheduler
    return get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=max(1, steps))


def settings_signature(settings: dict) -> str:
    """The JSON a checkpoint must match to be resumed: `settings` without the
    run-length keys (at the top level and one level down)."""
    def strip(d):
        return {k: (strip(v) if isinstance(v, dict) else v) for k, v in d.items() if k not in RUN_LENGTH_KEYS}
    return json.dumps(strip(settings), sort_keys=True, default=str)


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per step since step 0 (resumed runs included); "seconds" is cumulative
    seconds: float         # wall time of this call
    steps_run: int         # optimiser steps taken by this call
    resumed_from: int      # the step this call started at (0: from scratch)
    finished: bool         # the run reached its last step


class TrainingRun:
    """Bookkeeping of one training run; see the module docstring."""

    def __init__(self, out: str | Path, settings: dict, steps: int, checkpoint_every: int, desc: str,
                 stop_at: int | None = None, progress: bool = True, is_main: bool = True, barrier=None):
        self.out = Path(out)
        self.ckpt = self.out / "checkpoints" / "last.safetensors"
        self.signature = settings_signature(settings)
        self.steps, self.checkpoint_every, self.desc = steps, max(1, checkpoint_every), desc
        self.end = min(steps, stop_at) if stop_at is not None else steps
        self.progress, self.is_main = progress, is_main
        self.barrier = barrier or (lambda: None)
        self.step, self.start, self.history, self.state = 0, 0, [], {}
        self._before = 0.0  # training seconds of earlier calls (from the resumed history)
        self._modules, self._opt, self._sched, self._ema = {}, None, None, None

    # ---------------------------------------------------------------- resume
    def resume(self, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, scheduler=None,
               ema=None, state: dict | None = None) -> bool:
        """Register what the checkpoints hold and restore it from the last
        checkpoint when its settings match. `state`: extra JSON values kept
        across resumes (e.g. the best validation score so far)."""
        self._modules, self._opt, self._sched, self._ema = modules, opt, scheduler, ema
        self.state = dict(state or {})
        if not self.ckpt.exists():
            return False
        try:
            meta = checkpoints.read_meta(self.ckpt)
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is set aside, not fatal
            return self._set_aside(f"unreadable ({exc})")
        if meta.get("signature") != self.signature:
            return self._set_aside("written with other settings")
        meta = checkpoints.load(self.ckpt, modules, opt, ema=ema)
        self.step = self.start = meta["step"]
        self.history = meta["history"]
        self.state.update(meta.get("state", {}))
        self._before = float(self.history[-1].get("seconds", 0.0)) if self.history else 0.0
        if scheduler is not None:
            _jump(scheduler, opt, self.step)
        self._print(f"resuming from {self.ckpt} at step {self.step} of {self.steps}")
        return True

    def _set_aside(self, why: str) -> bool:
        if self.is_main:
            kept = self.ckpt.with_name(f"last.{time.strftime('%Y%m%d-%H%M%S')}.safetensors")
            self.ckpt.replace(kept)
            self._print(f"{self.ckpt}: {why}; kept as {kept.name}, starting afresh")
        self.barrier()
        return False

    # ---------------------------------------------------------------- loop
    def __iter__(self):
        self._t0 = time.perf_counter()
        self._bar = progress(self.steps, self.step, self.desc, self.progress and self.is_main)
        while self.step < self.end:
            yield self.step

    def log(self, **row) -> dict:
        """Close the current step: step the schedule, append ``{"step", **row}``
        to the history, update the progress and checkpoint when due."""
        if self._sched is not None:
            self._sched.step()
        self.step += 1
        # "seconds": training time since step 0, summed over resumed runs, so history.csv carries the timing
        row = {"step": self.step, **row, "seconds": round(self._before + time.perf_counter() - self._t0, 3)}
        self.history.append(row)
        self._bar.update(1)
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step" and isinstance(v, float)})
        if self.step % self.checkpoint_every == 0 or self.step == self.end:
            self.save()
        return row

    def save(self) -> None:
        if self.is_main:
            checkpoints.save(self.ckpt, self._modules, self._opt,
                             {"step": self.step, "history": self.history, "state": self.state,
                              "signature": self.signature}, ema=self._ema)
        self.barrier()

    def finish(self) -> TrainResult:
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        df = pd.DataFrame(self.history)
        finished = self.step >= self.steps
        # the records are those of the call that trained: a call that finds the run finished leaves them as
        # they are (their time, and the fingerprint of the folder that a later stage starts from)
        records = (self.out / "history.csv", self.out / "timing.json")
        if finished and self.is_main and (self.step > self.start or not all(f.exists() for f in records)):
            self.out.mkdir(parents=True, exist_ok=True)
            df.to_csv(self.out / "history.csv", index=False)
            (self.out / "timing.json").write_text(json.dumps(
                {"steps": self.step, "seconds_last_call": round(seconds, 1), "steps_last_call": self.step - self.start,
                 "seconds_per_step": round(seconds / max(1, self.step - self.start), 4)}, indent=2))
        return TrainResult(df, seconds, self.step - self.start, self.start, finished)

    def _print(self, msg: str) -> None:
        if self.is_main:
            print(msg, flush=True)


def _jump(scheduler, opt, step: int) -> None:
    """Put a LambdaLR-style schedule (diffusers') at `step` for the current plan."""
    scheduler.last_epoch = step
    lrs = [base * f(step) for base, f in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    scheduler._last_lr = lrs
