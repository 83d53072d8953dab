"""What the benchmarks share: where a table goes, the provenance it carries, and settings over a params section.

Tables. A benchmark that compares designs writes its table with :func:`write_table` to
``results/<profile>/benchmarks/<NAME>.csv`` and ``<NAME>.md``, beside the pipeline's outputs and not among them.
Every such script takes ``--out NAME`` (:func:`add_out_argument`; no ``--out``: it prints only) and parses its
arguments with :func:`parse_args`, which turns the name into that path and records the run's provenance before
anything runs. The .md's first line is that provenance (:func:`provenance`): the commit (``+dirty`` when the working
tree differs from it, untracked files included), the exact command line and the date. The .csv is plain CSV (pandas
reads it as it is); its provenance is the line of the .md of the same name.

Settings. A variant is a set of settings over a section of a profile, by dotted keys relative to the section
(``{"model.sigma": 1.0}`` over ``detector``); :func:`with_settings` applies them. Given the profile, the result is
checked against the schema (``params/schema.yaml``) as the pipeline checks a params file
(``lib.pipeline.check_params``), so a misspelt key, a wrong type or a value out of range is a ``ParamsError``
naming the key (with the closest key the schema knows) instead of a setting silently added. Without the profile,
every key must already be in the section.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import difflib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

from lib import pipeline

ROOT = pipeline.ROOT
FOLDER = "benchmarks"  # under results/<profile>/
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# the first line of every table's .md (the tables moved here from results/<profile>/ carry a line of their own
# kind, "Provenance (recorded ...)", written when they moved; see results/cpu/benchmarks/README.md)
PROVENANCE = re.compile(r"Provenance: commit `(?P<commit>[0-9a-f]{4,40}(?:\+dirty)?|unknown)`, "
                        r"(?P<date>\d{4}-\d{2}-\d{2}), command `(?P<command>.+)`\.")

_recorded: str | None = None  # the run's provenance, recorded by parse_args before the run


def table_dir(profile: str, root: Path = ROOT) -> Path:
    """Where a profile's benchmark tables go: ``results/<profile>/benchmarks/``."""
    return pipeline.results_dir(profile, root) / FOLDER


def commit(root: Path = ROOT) -> str:
    """``git rev-parse --short HEAD`` of `root`, with ``+dirty`` when tracked files differ from it or untracked
    (not ignored) files exist; ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if status else "")


def command_line(argv: list[str] | None = None, module: str | None = None) -> str:
    """``python -m <module> <arguments>``, quoted so that a shell runs it as it ran (`argv`: the arguments,
    default ``sys.argv[1:]``; `module`: default the ``__main__`` module's name, else ``sys.argv[0]``)."""
    if module is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else None
    args = list(sys.argv[1:] if argv is None else argv)
    head = ["python", "-m", module] if module else ["python", sys.argv[0]]
    return shlex.join(head + [str(a) for a in args])


def provenance(argv: list[str] | None = None, module: str | None = None, *, root: Path = ROOT,
               date: datetime.date | None = None) -> str:
    """The line a table's .md starts with: ``Provenance: commit `abc1234+dirty`, 2026-12-08, command `python -m
    benchmarks.bench_x --profile cpu --out x`.`` (the :data:`PROVENANCE` pattern)."""
    date = date or datetime.date.today()
    return f"Provenance: commit `{commit(root)}`, {date.isoformat()}, command `{command_line(argv, module)}`."


def add_out_argument(ap: argparse.ArgumentParser) -> None:
    """The one ``--out`` of every benchmark that writes a table."""
    ap.add_argument("--out", default=None, metavar="NAME",
                    help=f"write the table as results/<profile>/{FOLDER}/NAME.csv and NAME.md (a name, not a path; "
                         "a script writing several tables adds a suffix to NAME for each); default: print only")


def out_path(profile: str, name: str | None, root: Path = ROOT) -> Path | None:
    """``results/<profile>/benchmarks/<name>`` (no suffix), or None without a name. A name with a folder or
    a suffix in it is a ValueError: the folder is always this one."""
    if name is None:
        return None
    if not NAME.fullmatch(name):
        raise ValueError(f"--out {name!r}: expected a table name (letters, digits, _ and -), not a path or a file "
                         f"name; the table goes to results/{profile}/{FOLDER}/NAME.csv and NAME.md")
    return table_dir(profile, root) / name


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None = None, module: str | None = None,
               root: Path = ROOT) -> argparse.Namespace:
    """``ap.parse_args(argv)``, with ``args.out`` turned into the table's path (:func:`out_path`; a bad name is
    argparse's usage error) and, when a table will be written, the run's provenance recorded now, before the run
    changes anything (`module`: default, the module calling this)."""
    global _recorded
    args = ap.parse_args(argv)
    if getattr(args, "out", None) is not None:
        try:
            args.out = out_path(args.profile, args.out, root)
        except ValueError as exc:
            ap.error(str(exc))
        if module is None:
            caller = sys._getframe(1).f_globals
            spec = caller.get("__spec__")
            module = spec.name if spec is not None else caller.get("__name__")
        _recorded = provenance(argv, module, root=root)
    return args


def write_table(table: pd.DataFrame, head: str, out: str | Path | None, line: str | None = None,
                keep_earlier: bool = False) -> None:
    """Print a benchmark's table under its heading; with `out` (a path without suffix), also write it as
    ``<out>.csv`` (plain CSV) and ``<out>.md``: the provenance line (`line`; default the run's, recorded by
    :func:`parse_args`, else made now), a blank line, the heading, the table. `keep_earlier`: the provenance lines
    of an existing ``<out>.md`` are kept below the new one (a table whose rows were appended to earlier ones)."""
    print(head)
    print(table.to_markdown(index=False))
    if not out:
        return
    out = Path(out)
    csv, md = out.parent / f"{out.name}.csv", out.parent / f"{out.name}.md"
    line = line or _recorded or provenance()
    earlier = []
    if keep_earlier and md.is_file():
        earlier = [text for text in md.read_text().splitlines() if text.startswith("Provenance")]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    md.write_text("\n".join([line, *(f"Earlier rows: {e}" for e in earlier)]) + "\n\n" + head + "\n\n"
                  + table.to_markdown(index=False) + "\n")


def _section(params: dict, where: str) -> dict:
    node = params
    for part in where.split("."):
        node = node[part]
    return node


def with_settings(base: dict, settings: dict, where: str, params: dict | None = None) -> dict:
    """A copy of `base`, the section at dotted path `where` of a profile (``"diffusion"``,
    ``"detector.finetune.train"``), with `settings` applied: ``{"model.sigma": 1.0}`` sets ``base["model"]["sigma"]``.
    A setting replaces the value at its key whole (a mapping too: ``{"mix": {...}}`` is the new mix, not merged).

    With `params` (the profile `base` belongs to, as ``lib.pipeline.load_params`` returns it), a key the section
    lacks is allowed where the schema knows it, and the result, put in the profile at `where`, is checked against
    the schema (``lib.pipeline.check_params``): an unknown key, a wrong type or a value out of range is a
    ``ParamsError`` naming the key. Without `params`, every key must be in `base` already (a ValueError names it
    and what the section has)."""
    out = copy.deepcopy(base)
    for key, value in settings.items():
        parts = key.split(".")
        if not all(parts):
            raise ValueError(f"setting {key!r} over {where}: expected a dotted key such as model.sigma")
        node, at = out, where
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if not isinstance(node, dict):
                raise ValueError(f"setting {where}.{key}: {at} is a value ({node!r}), not a section")
            if part not in node:
                if params is None:
                    close = difflib.get_close_matches(part, list(map(str, node)), 1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    raise ValueError(f"setting {where}.{key}: {at} has no key {part!r}{hint}; "
                                     f"{at} has: {', '.join(map(str, node))}")
                if not last:
                    node[part] = {}  # a section the profile leaves out: the schema judges its keys
            if last:
                node[part] = copy.deepcopy(value)
            else:
                if node[part] is None and params is not None:
                    node[part] = {}
                node, at = node[part], f"{at}.{part}"
    if params is not None:
        profile = copy.deepcopy(params)
        *path, name = where.split(".")
        (_section(profile, ".".join(path)) if path else profile)[name] = out
        pipeline.check_params(profile, f"settings {json.dumps(settings, sort_keys=True, default=str)} over {where}")
    return out
