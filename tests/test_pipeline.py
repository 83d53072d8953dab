import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lib import pipeline
from tests.conftest import REPO


def test_every_profile_is_complete():
    for profile in pipeline.PROFILES:
        p = pipeline.load_params(profile)
        assert p["profile"] == profile
        for sections in pipeline.STAGE_SECTIONS.values():
            for s in sections:
                assert s in p, f"params/{profile}.yaml lacks section {s}"


def test_dvc_stages_match_notebooks_and_params():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        notebook = stage["cmd"].split()[4]
        assert f"notebooks/{notebook}.ipynb" in stage["deps"]
        sections = {k.split(".")[0] for k in stage["params"][0]["params/${profile}.yaml"]}
        assert sections <= set(pipeline.STAGE_SECTIONS[notebook])


def test_source_notebooks_have_no_outputs_and_a_parameters_cell():
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert any("parameters" in c["metadata"].get("tags", []) for c in cells), nb
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), f"{nb} has outputs"


def test_use_switches_profile(tmp_path):
    shutil.copytree(REPO / "params", tmp_path / "params")
    pipeline.use("cpu", tmp_path)
    assert pipeline.active_profile(tmp_path) == "cpu"
    assert yaml.safe_load((tmp_path / "params" / "profile.yaml").read_text())["data_root"] == "../shared/data"


@pytest.mark.slow
def test_smoke_pipeline_under_dvc(tmp_path):
    """`dvc repro` of the smoke profile in a fresh copy of the project."""
    work = tmp_path / "study"
    for d in ("lib", "notebooks", "params"):
        shutil.copytree(REPO / d, work / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("dvc.yaml", ".dvc/config", ".dvcignore"):
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, work / f)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    pipeline.use("smoke", work)
    bin_dir = str(Path(sys.executable).parent)  # papermill's kernel and `python` in dvc.yaml
    env = {"PATH": bin_dir + ":/usr/bin:/bin", "HOME": str(tmp_path), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = pd.read_csv(work / "results" / "smoke" / "table1.csv")
    assert list(table.columns) == ["method", "test_set", "n", "nme", "fr_10", "auc_10", "box"]
    assert set(table["test_set"]) == {"test_photo", "test_cartoon", "test_caricature"}
    assert {"ours (two-stage synthetic)", "one-step synthetic (ablation)", "stage-1-only synthetic (ablation)",
            "geometry-aware style transfer (Face of Art)", "few-shot real only"} <= set(table["method"])
    align = pd.read_csv(work / "results" / "smoke" / "alignment.csv")
    assert list(align.columns) == ["generator", "style", "n", "alignment_nme", "style_accuracy"]
    assert set(align["generator"]) == {"two_stage", "one_step", "stage1_only"}
    # the synthetic sets are in the 300-W layout with a manifest
    synth = work / "generated" / "smoke" / "synthetic" / "two_stage"
    assert (synth / "manifest.csv").exists() and len(list(synth.rglob("*.pts"))) == len(list(synth.rglob("*.jpg"))) == 10
    assert (work / "models" / "smoke" / "stage2" / "model_index.json").exists()  # diffusers save_pretrained layout
    assert (work / "results" / "smoke" / "notebooks" / "06_evaluation.ipynb").exists()
    assert (work / "dvc.lock").exists()
    # a second repro has nothing to do
    r = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=work, env=env, capture_output=True, text=True)
    assert "up to date" in r.stdout, r.stdout
