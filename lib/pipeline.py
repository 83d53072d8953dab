"""Profiles, notebook stages and their parameters: the glue between params/, papermill and DVC.

    python -m lib.pipeline run 01_data_prep --profile smoke     # one notebook stage (DVC calls this)
    python -m lib.pipeline run 05_detector --profile smoke -p detector.train.steps=100

Each profile is a file ``params/<profile>.yaml`` and a DVC pipeline written from one template,
``pipelines/stages.yaml``, by :func:`dvc_files` (``python -m lib.pipeline dvc``): ``dvc.yaml`` at
the root for ``cpu`` (the profile whose results are committed), ``pipelines/<profile>/dvc.yaml``
for the others. Each stage's notebook receives the profile name and only its own params
sections, and is written, executed, to ``results/<profile>/notebooks/``.

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
import json
import os
import re
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
    "05_detector": ["detector"],
    "05_finetune": ["detector"],
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


def models_dir(profile: str, root: Path = ROOT) -> Path:
    """Trained models: the autoencoder, the generators (diffusers layouts), the detectors."""
    return root / "models" / profile


def results_dir(profile: str, root: Path = ROOT) -> Path:
    return root / "results" / profile


def generated_dir(profile: str, root: Path = ROOT) -> Path:
    """Sets the study makes: the stage-2 multi-domain set, synthetic sets, baseline sets."""
    return root / "generated" / profile


# --- parameters -----------------------------------------------------------------------------

class Section(dict):
    """A notebook's params section as papermill may give it, key by key: ``-p data.val_fraction 0.3``
    becomes the assignment ``data.val_fraction = 0.3`` in papermill's injected cell, which sets
    ``{"val_fraction": 0.3}`` here (nested keys make nested sections). Empty: the profile's values.
    Checked like any override by :func:`resolve_parameters`."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.setdefault(name, Section())

    def __setattr__(self, name, value):
        self[name] = value


def _type_name(value) -> str:
    return "null" if value is None else "dict" if isinstance(value, dict) else type(value).__name__


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


# --- the DVC pipelines ----------------------------------------------------------------------

def _module_file(parts: list[str], root: Path) -> Path | None:
    """["lib", "core", "crop"] -> lib/core/crop.py or lib/core/__init__.py; None outside lib."""
    p = root.joinpath(*parts)
    if p.with_suffix(".py").is_file():
        return p.with_suffix(".py")
    return p / "__init__.py" if (p / "__init__.py").is_file() else None


def module_imports(path: Path, source: str | None = None, root: Path = ROOT) -> set[Path]:
    """The lib files that importing the module at ``path`` executes directly: each imported
    module and the package ``__init__`` files on its way, lazy imports included."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    targets = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets += [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - (node.level - 1)] if node.level else []
            mod = base + (node.module.split(".") if node.module else [])
            targets += [mod] + [mod + [a.name] for a in node.names]  # a name may be a module
    return {f for t in targets if t[:1] == ["lib"] for i in range(1, len(t) + 1)
            if (f := _module_file(t[:i], root))}


def module_closure(files, root: Path = ROOT) -> set[Path]:
    """``files`` and every lib file they import, in turn."""
    todo, seen = list(files), set()
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(module_imports(f, root=root))
    return seen


def notebook_lib_files(notebook: Path, root: Path = ROOT) -> list[str]:
    """The lib files a notebook runs (its imports and theirs), as sorted paths relative to ``root``:
    exactly a stage's code dependencies."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    src = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
    files = module_closure(module_imports(root / "notebooks" / "notebook.py", src, root), root)
    return sorted(str(f.relative_to(root)) for f in files)


TEMPLATE = Path("pipelines") / "stages.yaml"
ROOT_PROFILE = "cpu"  # the profile at the root (dvc.yaml, dvc.lock): its results are committed


def dvc_file(profile: str) -> Path:
    """Where a profile's pipeline lives, relative to the project root."""
    return Path("dvc.yaml") if profile == ROOT_PROFILE else Path("pipelines") / profile / "dvc.yaml"


def dvc_files(root: Path = ROOT) -> dict[Path, str]:
    """Every profile's dvc.yaml, written from the template: the profile's name put in, the lib
    files each notebook runs listed after it, paths made relative to where the file lives, and
    the data root read by DVC from the profile's params (procedural profiles: the generator)."""
    template = (root / TEMPLATE).read_text()
    body = template[template.index("stages:\n"):]
    out = {}
    for profile in PROFILES:
        path = dvc_file(profile)
        top = "../" * (len(path.parts) - 1)  # from the file's folder to the project root
        text = body.replace("${profile}", profile)
        text = re.sub(r"^(\s+)- (notebooks/\S+\.ipynb)\n",
                      lambda m: "".join(f"{m[1]}- {f}\n" for f in [m[2], *notebook_lib_files(root / m[2], root)]),
                      text, flags=re.M)
        if top:
            text = text.replace("    wdir: ../..\n", f"    wdir: {top.rstrip('/')}\n")
        else:
            text = text.replace("    wdir: ../..\n", "")
        text = text.replace("../../results/", f"{top}results/")
        head = (f"# The {profile} profile's pipeline (params/{profile}.yaml), written by `python -m lib.pipeline dvc`\n"
                f"# from {TEMPLATE}: edit that file, then run the command (tests/test_pipeline.py checks they agree).\n")
        if load_params(profile, root)["data"]["root"] is None:
            text = text.replace("${data_root}", "lib/data/procedural.py  # no data root: procedural faces")
        else:
            text = text.replace("${data_root}", "${data.root}  # data.root of the params")
            head += f"vars:\n  - {top}params/{profile}.yaml:data\n"
        out[path] = head + text
    return out


def write_dvc_files(root: Path = ROOT, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, only compare) every profile's dvc.yaml; returns those that differed."""
    stale = []
    for path, text in dvc_files(root).items():
        target = root / path
        if not target.is_file() or target.is_symlink() or target.read_text() != text:
            stale.append(path)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                target.write_text(text)
    return stale


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
    d = sub.add_parser("dvc", help=f"write every profile's dvc.yaml from {TEMPLATE}", allow_abbrev=False)
    d.add_argument("--check", action="store_true", help="only report the files that differ (exit 1 if any)")
    a = ap.parse_args(argv)
    if a.cmd == "dvc":
        stale = write_dvc_files(check=a.check)
        for path in stale:
            print(f"{path}: {'differs from' if a.check else 'written from'} {TEMPLATE}")
        return 1 if a.check and stale else 0
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
