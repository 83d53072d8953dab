"""Profiles, notebook stages and their parameters: the glue between params/, papermill and DVC.

    python -m lib.pipeline run 01_data_prep --profile smoke     # one notebook stage (DVC calls this)
    python -m lib.pipeline run 05_detector --profile smoke -p detector.train.steps=100

Each profile is a file ``params/<profile>.yaml`` and a DVC pipeline written from one template,
``pipelines/stages.yaml``, by :func:`dvc_files` (``python -m lib.pipeline dvc``): ``dvc.yaml`` at
the root for ``cpu`` (the profile whose results are committed), ``pipelines/<profile>/dvc.yaml``
for the others. Each stage's notebook receives the profile name and only its own params
sections, and is written, executed, to ``results/<profile>/notebooks/``.

Every profile is checked against one schema, ``params/schema.yaml`` (the one place that says what each
parameter means, its type and its range), when it is loaded (:func:`load_params`), before any stage runs: a
misspelt key, a wrong type or a value out of range is one ``ParamsError`` (a ``ValueError``) naming the file,
the key and what is allowed. The params files are read as YAML with YAML 1.2's floats (``1e-4`` is a number,
not the text YAML 1.1 makes of it).

Parameters (:func:`resolve_parameters`): an override names a params key by its dotted path
(``-p detector.train.steps=100``) or gives part of a section (papermill's
``-y '{"data": {"val_fraction": 0.3}}'``); either is deep-merged over the profile's values, so
the keys it does not name keep the profile's values. Unknown names and values of the wrong type
are rejected with a ``ValueError`` naming the key, and the merged values are checked against the schema again.
"""
from __future__ import annotations

import argparse
import ast
import copy
import difflib
import functools
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


SCHEMA = ROOT / "params" / "schema.yaml"


class ParamsError(ValueError):
    """A params file or an override off the schema (params/schema.yaml); the message names the file or
    the override, the key and what is allowed."""


class ParamsLoader(yaml.SafeLoader):
    """YAML as ``yaml.safe_load`` reads it, but with YAML 1.2's floats: ``1e-4`` and ``2E5`` are numbers
    (YAML 1.1, PyYAML's default, wants a dot and reads them as text)."""


ParamsLoader.add_implicit_resolver(  # copies SafeLoader's resolvers for this class first, then adds this one
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(text: str):
    """A params file's (or an override's) YAML, with YAML 1.2's floats (:class:`ParamsLoader`)."""
    return yaml.load(text, Loader=ParamsLoader)


@functools.lru_cache(maxsize=None)
def schema() -> dict:
    """The schema of a profile (``params/schema.yaml``: its ``profile`` node)."""
    return read_yaml(SCHEMA.read_text())["profile"]


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def load_params(profile: str, root: Path = ROOT) -> dict:
    """``params/<profile>.yaml`` under ``root``, checked against the schema (:func:`check_params`)."""
    path = root / "params" / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such profile; known: {', '.join(PROFILES)}")
    try:
        params = read_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{_shown(path)}: not valid YAML ({' '.join(str(exc).split())})") from None
    check_params(params, _shown(path))
    if params["profile"] != profile:
        raise ParamsError(f"{_shown(path)}: profile: {params['profile']!r}, expected {profile!r} (the file's name)")
    return params


def check_params(params, where: str) -> None:
    """Raise ParamsError listing every way ``params`` (a whole profile) departs from the schema."""
    problems = list(_problems(params, schema(), ""))
    if len(problems) == 1:
        raise ParamsError(f"{where}: {problems[0]}")
    if problems:
        raise ParamsError(f"{where}: {len(problems)} problems:\n  " + "\n  ".join(problems))


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_section(node: dict) -> bool:
    return "keys" in node


def _describe(node: dict) -> str:
    """What a schema node allows, in words: 'an int >= 1', 'a float in [0, 1)', 'one of: a, b', ..."""
    if "any_of" in node:
        return " or ".join(_describe(n) for n in node["any_of"])
    if _is_section(node):
        text = "a section with keys " + ", ".join(map(str, node["keys"]))
    elif node.get("type", "any") == "dict":
        text = "a mapping of names to " + _describe(node["values"])
    else:
        kind = node.get("type", "any")
        text = {"int": "an int", "float": "a number", "bool": "true or false", "str": "a string", "list": "a list",
                "any": "anything"}[kind]
        if "choices" in node:
            text = "one of: " + ", ".join(map(str, node["choices"]))
        low = ("[", node["min"]) if "min" in node else ("(", node["above"]) if "above" in node else None
        high = (node["max"], "]") if "max" in node else (node["below"], ")") if "below" in node else None
        if low and high:
            text += f" in {low[0]}{low[1]}, {high[0]}{high[1]}"
        elif low:
            text += f" {'>=' if low[0] == '[' else '>'} {low[1]}"
        elif high:
            text += f" {'<=' if high[1] == ']' else '<'} {high[0]}"
        if kind == "list":
            if "length" in node:
                text += f" of {node['length']}"
            elif node.get("min_length"):
                text += f" of at least {node['min_length']}"
            if "items" in node:
                text += " (each " + _describe(node["items"]) + ")"
    if node.get("nullable"):
        text += ", or null"
    return text


def _about(node: dict) -> str:
    return f" ({node['doc']})" if node.get("doc") else ""


def _problems(value, node: dict, path: str):
    """The ways ``value`` at ``path`` departs from the schema ``node`` (strings naming the key)."""
    where = path or "the file"
    if "any_of" in node:
        if any(not list(_problems(value, alt, path)) for alt in node["any_of"]):
            return
        yield f"{where}: {value!r}; allowed: {_describe(node)}{_about(node)}"
        return
    if value is None:
        if not node.get("nullable"):
            yield f"{where}: null; allowed: {_describe(node)}{_about(node)}"
        return
    if _is_section(node):
        keys = node["keys"]
        if not isinstance(value, dict):
            yield f"{where}: {_type_name(value)} {value!r}; expected a section with keys {', '.join(map(str, keys))}"
            return
        for k, v in value.items():
            if k in keys:
                yield from _problems(v, keys[k], _join(path, k))
                continue
            close = difflib.get_close_matches(str(k), list(map(str, keys)), 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            yield f"{_join(path, k)}: unknown key{hint}; {path or 'a profile'} takes: {', '.join(map(str, keys))}"
        for k in node.get("required", []):
            if k not in value:
                yield f"{_join(path, k)}: missing{_about(keys[k])}"
        if node.get("one_of") and not any(k in value for k in node["one_of"]):
            yield f"{where}: needs {' or '.join(node['one_of'])}"
        return
    kind = node.get("type", "any")
    if kind == "dict":
        if not isinstance(value, dict):
            yield f"{where}: {_type_name(value)} {value!r}; expected {_describe(node)}{_about(node)}"
            return
        for k, v in value.items():
            yield from _problems(v, node["values"], _join(path, k))
        return
    ok = {"any": True, "bool": isinstance(value, bool), "str": isinstance(value, str),
          "list": isinstance(value, list),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool)}[kind]
    if not ok:
        hint = (" (YAML reads an unquoted yes/no/on/off as true/false: quote it)"
                if kind == "str" and isinstance(value, bool) else "")
        yield f"{where}: {_type_name(value)} {value!r}; expected {_describe(node)}{_about(node)}{hint}"
        return
    if "choices" in node and value not in node["choices"]:
        yield f"{where}: {value!r}; allowed: {', '.join(map(str, node['choices']))}{_about(node)}"
        return
    if kind in ("int", "float"):
        bad = (("min" in node and value < node["min"]) or ("max" in node and value > node["max"])
               or ("above" in node and value <= node["above"]) or ("below" in node and value >= node["below"]))
        if bad or value != value:  # NaN is in no range
            yield f"{where}: {value!r} out of range; allowed: {_describe(node)}{_about(node)}"
    if kind == "list":
        if ("length" in node and len(value) != node["length"]) or len(value) < node.get("min_length", 0):
            yield f"{where}: {len(value)} items; allowed: {_describe(node)}{_about(node)}"
        if "items" in node:
            for i, item in enumerate(value):
                yield from _problems(item, node["items"], f"{path}[{i}]")


def _child(node: dict | None, key, base) -> dict | None:
    """The schema node of ``key`` below ``node`` (None where the schema does not say)."""
    if node is None:
        return None
    if "any_of" in node:  # the alternative of the profile's value's form
        node = next((n for n in node["any_of"] if _is_section(n) == isinstance(base, dict)), None)
        return _child(node, key, base)
    if _is_section(node):
        return node["keys"].get(key)
    if node.get("type") == "dict":
        return node["values"]
    return None


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


def _merge(base, override, key: str, node: dict | None = None):
    """``override`` deep-merged over ``base``; every key must exist in ``base`` or be one the schema
    (``node``, the schema of ``key``) knows there."""
    if isinstance(base, dict) and override is not None:
        _check_type(key, override, base)
        merged = copy.deepcopy(base)
        for k, v in override.items():
            path = f"{key}.{k}"
            child = _child(node, k, base)
            if k not in base:
                if child is None:
                    known = list(node["keys"]) if node is not None and _is_section(node) else list(base)
                    raise ValueError(f"unknown parameter {path}; {key} has: {', '.join(map(str, known))}")
                merged[k] = copy.deepcopy(v)  # a key the profile leaves out: the schema checks it
                continue
            merged[k] = _merge(base[k], v, path, child)
        return merged
    if override is None and isinstance(base, dict):
        return copy.deepcopy(base)  # a section left at None: the profile's values
    _check_type(key, override, base)
    return copy.deepcopy(override)


def parse_assignment(text: str) -> dict:
    """``"detector.train.steps=100"`` -> ``{"detector": {"train": {"steps": 100}}}`` (a YAML value, read as
    the params files are: ``1e-4`` is a float). A value that is not YAML is a ValueError naming the override."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. detector.train.steps=100")
    try:
        parsed = read_yaml(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"override {text!r}: the value {value!r} is not valid YAML ({problem}); "
                         "quote text, write lists as [a, b]") from None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
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
    merged = {s: _merge(params[s], overrides.get(s), s, schema()["keys"][s]) for s in sections}
    problems = [p for s in sections if overrides.get(s) is not None
                for p in _problems(merged[s], schema()["keys"][s], s)]
    if problems:
        raise ParamsError("parameter " + "\nparameter ".join(problems))
    return merged


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
    package = parts[:-1]  # the package a relative import starts from (for __init__.py: its own package)
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
