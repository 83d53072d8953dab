"""Profiles, notebook stages and their parameters: the glue between params/, papermill and DVC.

    python -m lib.pipeline run 01_data_prep --profile smoke     # one notebook stage (DVC calls this)
    python -m lib.pipeline run 05_detector_finetune --profile smoke -p detector.train.steps=100

Each profile is a file ``params/<profile>.yaml`` and a pipeline ``pipelines/<profile>/dvc.yaml``
(a link to ``pipelines/stages.yaml``). Each stage's notebook receives the profile name and only
its own params sections, and is written, executed, to ``results/<profile>/notebooks/``.

Parameters (:func:`resolve_parameters`): an override names a params key by its dotted path
(``-p detector.train.steps=100``) or gives part of a section (papermill's
``-y '{"data": {"val_fraction": 0.3}}'``); either is deep-merged over the profile's values, so
the keys it does not name keep the profile's values. Unknown names and values of the wrong type
are rejected with a ``ValueError`` naming the key.
"""
from __future__ import annotations

import argparse
import ast
import copy
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("smoke", "demo", "cpu", "paper")
# the params sections each notebook reads (pipelines/stages.yaml lists the keys of each stage)
STAGE_SECTIONS = {
    "01_data_prep": ["data"],
    "02_stage1": ["data", "diffusion"],
    "03_stage2": ["data", "diffusion"],
    "04_synthesis": ["data", "diffusion", "synthesis"],
    "05_detector_finetune": ["detector"],
    "06_evaluation": ["data", "diffusion", "evaluate", "synthesis"],
    "07_rendered": ["evaluate", "rendered"],
    "08_dense": ["data", "evaluate", "dense"],
}


def load_params(profile: str, root: Path = ROOT) -> dict:
    path = root / "params" / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such profile; known: {', '.join(PROFILES)}")
    return yaml.safe_load(path.read_text())


def data_dir(profile: str, root: Path = ROOT) -> Path:
    return root / "data" / profile


def results_dir(profile: str, root: Path = ROOT) -> Path:
    return root / "results" / profile


def generated_dir(profile: str, root: Path = ROOT) -> Path:
    """Sets the study makes: the stage-2 multi-domain set, synthetic sets, baseline sets."""
    return root / "generated" / profile


# --- parameters -----------------------------------------------------------------------------

def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _check_type(key: str, value, reference) -> None:
    """``value`` may replace ``reference`` (the profile's value): the same type, an int for a
    float; anything where the profile has null."""
    if reference is None:
        return
    if isinstance(reference, bool) or isinstance(value, bool):
        ok = isinstance(reference, bool) and isinstance(value, bool)
    elif isinstance(reference, float):
        ok = isinstance(value, (int, float))
    elif isinstance(reference, int):
        ok = isinstance(value, int)
    else:
        ok = isinstance(value, type(reference))
    if not ok:
        raise ValueError(f"parameter {key}: expected {_type_name(reference)} (as in the profile), "
                         f"got {_type_name(value)} {value!r}")


def _merge(base, override, key: str):
    """``override`` deep-merged over ``base``; every key must exist in ``base``."""
    if isinstance(base, dict) and override is not None:
        _check_type(key, override, base)
        merged = copy.deepcopy(base)
        for k, v in override.items():
            path = f"{key}.{k}"
            if k not in base:
                raise ValueError(f"unknown parameter {path}; {key} has: {', '.join(map(str, base))}")
            merged[k] = _merge(base[k], v, path)
        return merged
    if override is None and isinstance(base, dict):
        return copy.deepcopy(base)  # a section left at None: the profile's values
    _check_type(key, override, base)
    return copy.deepcopy(override)


def parse_assignment(text: str) -> dict:
    """``"detector.train.steps=100"`` -> ``{"detector": {"train": {"steps": 100}}}`` (YAML value)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. detector.train.steps=100")
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(value)
    return out


def _deep_update(target: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _deep_update(target[k], v)
        else:
            target[k] = v
    return target


def injected_names(namespace: dict) -> set[str]:
    """The names papermill set in this kernel: its injected cell (``# Parameters`` and assignments)
    is in IPython's input history ``In``. Empty outside papermill."""
    for source in reversed(namespace.get("In") or []):
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return set()
            return {t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
    return set()


def resolve_parameters(stage: str, profile: str, overrides: dict | None = None, *,
                       namespace: dict | None = None, root: Path = ROOT) -> dict:
    """The params sections of ``stage`` for ``profile``, with ``overrides`` deep-merged in.

    ``overrides`` maps section names to partial sections (``{"data": {"val_fraction": 0.3}}``);
    a section given as ``None`` keeps the profile's values. Raises ``ValueError`` naming the key
    for an unknown stage, section or key, and for a value whose type differs from the profile's
    (ints are accepted for floats; anything where the profile has null).

    In a notebook, pass ``namespace=globals()`` as well: then a parameter papermill injected
    under a name the notebook does not take (``-p profil smoke``) is rejected too.
    """
    if stage not in STAGE_SECTIONS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_SECTIONS)}")
    sections = STAGE_SECTIONS[stage]
    if not isinstance(profile, str):
        raise ValueError(f"parameter profile: expected str, got {_type_name(profile)} {profile!r}")
    params = load_params(profile, root)
    overrides = dict(overrides or {})
    if namespace is not None:
        stray = sorted(injected_names(namespace) - {"profile", *sections})
        if stray:
            raise ValueError(f"unknown parameter(s) {', '.join(stray)}; notebook {stage} takes: "
                             f"{', '.join(['profile', *sections])}")
    for name in overrides:
        if name == "profile":
            raise ValueError("the profile is not a params key: give it as the profile (--profile)")
        if name not in sections:
            raise ValueError(f"unknown parameter {name}; notebook {stage} takes: "
                             f"{', '.join(['profile', *sections])}")
    return {s: _merge(params[s], overrides.get(s), s) for s in sections}


# --- running a stage ------------------------------------------------------------------------

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def run(stage: str, profile: str = "demo", overrides: dict | None = None, root: Path = ROOT) -> Path:
    import papermill as pm

    sections = resolve_parameters(stage, profile, overrides, root=root)  # fails before papermill starts
    out = results_dir(profile, root) / "notebooks" / f"{stage}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    # readable executed notebooks: training loops print ~10 lines each (lib.core.training); other
    # progress bars and the libraries' chatter stay out of the committed outputs
    for key, value in {"TQDM_DISABLE": "1", "TQDM_MININTERVAL": "60", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                       "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error",
                       "PYTHONWARNINGS": "ignore::FutureWarning"}.items():
        os.environ.setdefault(key, value)
    # the figures a cell draws are embedded in the executed notebook (training curves, sample grids), whatever
    # backend the calling shell sets for scripts (./study exports Agg); the kernel inherits the environment
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        pm.execute_notebook(str(root / "notebooks" / f"{stage}.ipynb"), str(out),
                            parameters={"profile": profile, **sections}, cwd=str(root), kernel_name="python3",
                            progress_bar=False, kernel_manager_class=_local_kernel_manager())
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    return out


def _local_kernel_manager():
    """A kernel manager on local IPC sockets in a private temporary folder (no
    unencrypted TCP, hence no warning about it in every execution)."""
    import tempfile

    from jupyter_client.manager import KernelManager

    class LocalKernelManager(KernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(Path(tempfile.mkdtemp(prefix="mdfld-kernel-")) / "kernel"))
            super().__init__(**kwargs)

    return LocalKernelManager


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline", allow_abbrev=False)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one notebook stage with papermill", allow_abbrev=False)
    r.add_argument("stage", choices=sorted(STAGE_SECTIONS))
    r.add_argument("--profile", choices=PROFILES, default="demo")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override one params key, e.g. detector.train.steps=100 (repeatable)")
    a = ap.parse_args(argv)
    overrides: dict = {}
    try:
        for text in a.param:
            _deep_update(overrides, parse_assignment(text))
        resolve_parameters(a.stage, a.profile, overrides)
    except ValueError as e:
        ap.error(str(e))
    print(run(a.stage, a.profile, overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
