"""The import rules of lib/__init__.py, and DVC dependencies that follow the imports.

Imports are read from the source (ast for lib modules, the JSON cells for notebooks), lazy
imports inside functions included, so neither the rules nor pipelines/stages.yaml can drift
from the code.
"""
import ast

import pytest
import yaml

from lib import pipeline
from tests.conftest import REPO

LIB = REPO / "lib"
PACKAGES = ("core", "data", "generator", "detector", "evaluation")
# what each package may import from lib (lib/__init__.py)
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "generator": {"core", "data"},
    "detector": {"core", "data"},
    "evaluation": {"core", "data", "generator", "detector"},
    "pipeline": set(),
    # lib/launch.py, an entry point like the notebooks: the profiles, the generator's stages and the
    # detector's critic (a stage's consistency loss); not evaluation (only notebooks, the evaluation
    # command, tests and benchmarks import it), and nothing in lib imports launch
    "launch": {"pipeline", "core", "data", "generator", "detector"},
}


def _module_name(path):
    """lib/detector/model.py -> ["lib", "detector", "model"]; a package's __init__ is the package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def lib_imports(path, source=None):
    """The lib packages (or "pipeline", "launch") that the module at ``path`` imports, lazy imports included."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    is_package = path.name == "__init__.py"
    here = _module_name(path)
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                assert len(base) >= 1, f"{path}: relative import beyond lib"
            else:
                base = []
            mod = base + (node.module.split(".") if node.module else [])
            # `from lib import detector` / `from .. import data`: the names may be packages
            targets = [mod + [a.name] for a in node.names] if len(mod) == 1 else [mod]
        else:
            continue
        for t in targets:
            if t[0] == "lib" and len(t) > 1 and t[1] in (*PACKAGES, "pipeline", "launch"):
                found.add(t[1])
    return found


def test_the_parser_sees_every_form_of_import():
    code = ("import lib.core.crop\nfrom lib import data\nfrom ..generator import sampling\n"
            "def f():\n    from ..evaluation.plots import x\n    from . import heatmaps\n")
    # parsed as if it were lib/detector/model.py
    assert lib_imports(LIB / "detector" / "model.py", code) == {"core", "data", "generator", "evaluation", "detector"}
    assert lib_imports(LIB / "detector" / "__init__.py", "from .. import pipeline\nfrom . import model\n") == {"pipeline", "detector"}
    nb_code = ("from lib.data import datasets as ds\nfrom lib import pipeline, evaluation as ev\n"
               "import lib.generator.edits\nfor i in x:\n    from lib.detector.model import Detector\n")
    files = {str(f.relative_to(REPO)) for f in module_imports(REPO / "notebooks" / "notebook.py", nb_code)}
    assert files == {"lib/__init__.py", "lib/data/__init__.py", "lib/data/datasets.py", "lib/pipeline.py",
                     "lib/evaluation/__init__.py", "lib/generator/__init__.py", "lib/generator/edits.py",
                     "lib/detector/__init__.py", "lib/detector/model.py"}


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_follow_the_rules(package):
    for f in sorted((LIB / package).rglob("*.py")):
        bad = lib_imports(f) - {package} - ALLOWED[package]
        assert not bad, f"{f.relative_to(REPO)} imports lib.{', lib.'.join(sorted(bad))}: {package} may import only {sorted(ALLOWED[package]) or 'nothing from lib'} (lib/__init__.py)"


def test_pipeline_imports_none_of_the_packages():
    assert lib_imports(LIB / "pipeline.py") == set()
    assert lib_imports(LIB / "__init__.py") == set()


def test_only_evaluation_imports_evaluation():
    for f in LIB.rglob("*.py"):
        if "evaluation" not in _module_name(f):
            assert "evaluation" not in lib_imports(f), f"{f.relative_to(REPO)} imports lib.evaluation"


def test_launch_imports_follow_the_rules_and_nothing_in_lib_imports_it():
    found = lib_imports(LIB / "launch.py")
    assert {"pipeline", "generator", "detector"} <= found  # its imports, the lazy ones included, are seen
    bad = found - ALLOWED["launch"]
    assert not bad, f"lib/launch.py imports lib.{', lib.'.join(sorted(bad))}: it may import only {sorted(ALLOWED['launch'])}"
    for f in LIB.rglob("*.py"):
        if f != LIB / "launch.py":
            assert "launch" not in lib_imports(f), f"{f.relative_to(REPO)} imports lib.launch, an entry point"
    assert "launch" in lib_imports(LIB / "core" / "x.py", "def f():\n    from .. import launch\n")  # the check sees it


def import_graph(sources=None):
    """lib's module graph from the source: each lib file -> the lib files that importing it executes
    (``lib.pipeline.module_imports``: lazy imports and the package ``__init__`` files on the way included).
    `sources`: {path: source} read instead of those files."""
    sources = sources or {}
    return {f: {g for g in module_imports(f, sources.get(f)) if g != f} for f in sorted(LIB.rglob("*.py"))}


def import_cycles(graph):
    """Every import cycle of `graph`: its strongly connected components of more than one module
    (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_lib_has_no_import_cycles():
    """Modules import one way (lib/__init__.py), lazy imports included: an import inside a function
    that reaches back to its own module is a cycle too."""
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles in lib: " + "; ".join(
        " <-> ".join(str(f.relative_to(REPO)) for f in c) for c in cycles)


def test_the_cycle_check_sees_a_lazy_import_back():
    precision = LIB / "generator" / "precision.py"  # imported by autoencoder and sampling
    graph = import_graph({precision: "def f():\n    from .sampling import generate\n"})
    cycles = [[str(f.relative_to(REPO)) for f in c] for c in import_cycles(graph)]
    assert cycles == [["lib/generator/autoencoder.py", "lib/generator/components.py", "lib/generator/precision.py",
                       "lib/generator/sampling.py"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def module_imports(path, source=None):
    return pipeline.module_imports(path, source, REPO)


def notebook_modules(nb):
    return set(pipeline.notebook_lib_files(nb, REPO))


def test_the_module_closure_follows_relative_and_lazy_imports():
    files = pipeline.module_closure(module_imports(REPO / "notebooks" / "notebook.py", "from lib.detector import model\n"), REPO)
    rel = {str(f.relative_to(REPO)) for f in files}
    assert {"lib/__init__.py", "lib/detector/__init__.py", "lib/detector/model.py", "lib/detector/heatmaps.py",
            "lib/core/crop.py", "lib/core/faces.py"} <= rel
    assert not any(r.startswith(("lib/generator", "lib/evaluation")) for r in rel)


def test_every_stage_depends_on_exactly_the_lib_modules_its_notebook_runs():
    """The generator writes each notebook's lib files into its stage (lib.pipeline.dvc_files)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    by_notebook = {s["cmd"].split()[4]: s for s in stages.values()}
    assert set(by_notebook) == set(pipeline.STAGE_SECTIONS), "one stage per notebook"
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        listed = {d for d in by_notebook[nb.stem]["deps"] if d.startswith("lib/")}
        needed = notebook_modules(nb)
        assert needed, f"{nb.name}: no lib imports found"
        assert listed == needed, (f"dvc.yaml, stage of {nb.name}: lacks {sorted(needed - listed)}, lists unused "
                                  f"{sorted(listed - needed)}: run python -m lib.pipeline dvc")
