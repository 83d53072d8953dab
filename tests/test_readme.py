"""The README's front door, as a newcomer meets it: `study` from any folder, `lib` importable from
notebooks/, a papermill rerun from there, and the README's quick DVC commands on a copy of the project
(committed as a fresh git repository, so HEAD is what a clone holds)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

VENV = Path(sys.prefix)
under_study = pytest.mark.skipif(not list(VENV.glob(".installed-*")),
                                 reason="runs ./study in this environment: run the suite with ./study test")


def _env(tmp_path, **extra):
    env = {"PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "MDFLD_VENV": str(VENV),
           "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return {**env, **extra}


def _run(cmd, cwd, env, timeout=600):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       shell=isinstance(cmd, str), executable="/bin/bash" if isinstance(cmd, str) else None)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The tracked files of the project, as a fresh clone has them (a new git repository)."""
    work = tmp_path_factory.mktemp("clone") / "study"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / f)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(git + ["add", "-A"], cwd=work, check=True)
    subprocess.run(git + ["commit", "-qm", "clone"], cwd=work, check=True)
    return work


def readme_block(marker: str) -> list[str]:
    """The command lines of the README's code block whose first line contains ``marker``."""
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        lines = block.splitlines()
        if lines and marker in lines[0]:
            return [line for line in lines[1:] if line.strip() and not line.startswith("#")]
    raise AssertionError(f"README.md: no code block starting with a line that says {marker!r}")


@under_study
def test_study_from_a_subfolder_reuses_the_environment_and_runs_in_the_callers_folder(tmp_path):
    stamps = sorted(p.name for p in VENV.glob(".installed-*"))
    r = _run(["../study", "run", "python", "-c", "import os, lib; print(os.getcwd()); print(lib.__file__)"],
             cwd=REPO / "notebooks", env=_env(tmp_path))
    assert "setting up the environment" not in r.stderr, r.stderr
    assert sorted(p.name for p in VENV.glob(".installed-*")) == stamps
    cwd, lib_file = r.stdout.split()
    assert Path(cwd) == REPO / "notebooks" and Path(lib_file) == REPO / "lib" / "__init__.py"
    r = _run(f"cd {REPO / 'tests' / 'core'} && ../../study help", cwd=REPO, env=_env(tmp_path))
    assert "./study repro" in r.stdout and "sed:" not in r.stderr


def test_lib_imports_in_a_kernel_started_in_notebooks():
    """The editable install: no PYTHONPATH, the working directory is notebooks/ (as Jupyter's kernel's)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", "import lib.pipeline as p; print(p.ROOT)"], cwd=REPO / "notebooks",
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == REPO


def test_papermill_from_notebooks_with_a_nested_key(project, tmp_path):
    """The README's rerun from notebooks/, `-p data.val_fraction 0.3` included, on the copy (PYTHONPATH points
    `lib` at the copy, as the editable install points it at the project)."""
    command = next(c for c in _readme_commands() if c.startswith("cd notebooks && ../study run papermill"))
    command = command.replace("../study run ", "").replace("/tmp/01.ipynb", str(tmp_path / "01.ipynb"))
    _run(command, cwd=project, env=_env(tmp_path, PYTHONPATH=str(project)))
    executed = (tmp_path / "01.ipynb").read_text()
    assert "data.val_fraction = 0.3" in executed
    import pandas as pd
    faces = pd.read_csv(project / "results" / "smoke" / "data_counts.csv").set_index("split")["faces"]
    assert 0.2 < faces["val"] / (faces["val"] + faces["train"]) < 0.4, faces  # smoke's own val_fraction is 0.15


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
            for line in block.splitlines() if line.strip() and not line.startswith("#")]


@under_study
def test_the_readme_dvc_commands_work_on_a_fresh_clone(project, tmp_path):
    out = {}
    for line in readme_block("tests/test_readme.py runs this block"):
        command = line.split("  #")[0].strip()
        r = _run(command, cwd=project, env=_env(tmp_path))
        text = r.stdout + r.stderr
        assert "ERROR" not in text and "failed to load" not in text, f"{command}\n{text[-3000:]}"
        out[command] = r.stdout
    get = lambda word: next(v for k, v in out.items() if word in k)  # noqa: E731
    dag = get("dvc dag")
    for stage in ("data_prep", "stage1", "stage2", "synthesis", "detector", "finetune", "evaluation"):
        assert stage in dag
    dry = get("repro --dry")
    assert [m for m in re.findall(r"Running stage '(\w+)'", dry)][:2] == ["data_prep", "stage1"]
    assert dry.index("05_detector") < dry.index("05_finetune") < dry.index("06_evaluation")
    metrics = get("metrics show")
    assert "ours_vs_real" in metrics and len(metrics) < 20_000, metrics[:2000]
    exp = get("exp show")  # the workspace and the commit, with parameters and metrics (none empty)
    rows = [line for line in exp.splitlines() if re.match(r"\| (workspace|master|main) ", line)]
    cells = [[c.strip() for c in r.strip("| ").split("|")[1:]] for r in rows]
    assert len(rows) == 2 and all(len(c) == 4 and all(re.fullmatch(r"[0-9.e-]+", v) for v in c) for c in cells), exp
    assert (project / "dvc_plots" / "index.html").exists()
    # nothing the commands ran changed a tracked file
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status


@under_study
def test_dvc_compares_the_workspace_with_git_revisions(project, tmp_path):
    """DVC reads dvc.yaml from git at HEAD (no symlinks): a changed parameter is a change, not every key new."""
    env = _env(tmp_path)
    params = project / "params" / "cpu.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("val_fraction: 0.1", "val_fraction: 0.2", 1))
        r = _run("dvc params diff --md", cwd=project, env=env)
        assert "failed to load" not in r.stderr, r.stderr
        rows = [line for line in r.stdout.splitlines() if line.startswith("| params/")]
        assert len(rows) == 1 and "data.val_fraction" in rows[0] and "0.1" in rows[0] and "0.2" in rows[0], r.stdout
        r = _run("dvc metrics diff HEAD --all --targets results/cpu/metrics.json", cwd=project, env=env)
        assert "nan" not in r.stdout.lower() and "ours_vs_real" in r.stdout, r.stdout[:2000]
    finally:
        params.write_text(original)
