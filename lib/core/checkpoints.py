"""Training checkpoints as safetensors: model tensors, optimiser state and a
JSON header (step, history, settings), written atomically so an interruption
mid-write never corrupts the last good checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {f"opt.{pid}.{k}": v.detach().clone() if torch.is_tensor(v) else torch.tensor(v)
               for pid, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict = {}
    for key, v in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def ema_tensors(ema) -> tuple[dict, dict]:
    """A diffusers ``EMAModel`` as tensors (its shadow weights) and JSON (its counters)."""
    sd = ema.state_dict()
    tensors = {f"emamodel.{i}": t.detach().contiguous().clone() for i, t in enumerate(sd.pop("shadow_params"))}
    return tensors, sd


def restore_ema(ema, tensors: dict, settings: dict) -> None:
    shadow = [tensors[f"emamodel.{i}"] for i in range(len(tensors))]
    ema.load_state_dict({**settings, "shadow_params": shadow})


def save(path: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, meta: dict, ema=None) -> None:
    """`modules` name -> module; `meta` values are JSON-encoded into the header;
    `ema`: an optional diffusers ``EMAModel``."""
    tensors = {f"{name}.{k}": v.detach().contiguous().clone()
               for name, m in modules.items() for k, v in m.state_dict().items()}
    opt_t, groups = optimizer_tensors(opt)
    tensors.update(opt_t)
    header = {k: json.dumps(v) for k, v in meta.items()}
    header["param_groups"] = json.dumps(groups)
    if ema is not None:
        ema_t, ema_settings = ema_tensors(ema)
        tensors.update(ema_t)
        header["ema"] = json.dumps(ema_settings)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=header)
    tmp.replace(path)


def read_meta(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return {k: json.loads(v) for k, v in f.metadata().items()}


def load(path: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, ema=None) -> dict:
    """Restore modules, optimiser (and EMA) in place; returns the header."""
    meta = read_meta(path)
    t = load_file(str(path))
    for name, m in modules.items():
        prefix = f"{name}."
        m.load_state_dict({k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)})
    restore_optimizer(opt, {k: v for k, v in t.items() if k.startswith("opt.")}, meta.pop("param_groups"))
    if ema is not None:
        restore_ema(ema, {k: v for k, v in t.items() if k.startswith("emamodel.")}, meta.pop("ema"))
    return meta
