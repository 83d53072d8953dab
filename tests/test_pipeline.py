import json
import re
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


STAGES = REPO / "pipelines" / "stages.yaml"


def test_every_profile_pipeline_is_written_from_the_template():
    """dvc.yaml (cpu) and pipelines/<profile>/dvc.yaml are what `python -m lib.pipeline dvc` writes, as
    regular files: DVC reads a committed symlink's text, not its target, when it compares revisions."""
    assert pipeline.write_dvc_files(check=True) == [], "run: python -m lib.pipeline dvc"
    files = {pipeline.dvc_file(p) for p in pipeline.PROFILES}
    assert files == {Path("dvc.yaml"), *(Path("pipelines") / p / "dvc.yaml" for p in ("smoke", "demo", "paper"))}
    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    links = [line.split("\t")[1] for line in tracked.splitlines() if line.startswith("120000")]
    assert not links, f"symlinks in git: {links}"
    for profile in pipeline.PROFILES:
        text = (REPO / pipeline.dvc_file(profile)).read_text()
        assert "${profile}" not in text and f"--profile {profile}\n" in text
        root = pipeline.load_params(profile)["data"]["root"]
        assert ("${data.root}" in text) == (root is not None)  # DVC reads the data root from the params


def test_the_generator_notices_a_stale_or_linked_file(tmp_path):
    for d in ("lib", "notebooks", "params", "pipelines"):
        shutil.copytree(REPO / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__", "dvc.lock", "dvc.yaml"))
    assert len(pipeline.write_dvc_files(tmp_path)) == 4 and pipeline.write_dvc_files(tmp_path, check=True) == []
    (tmp_path / "pipelines" / "demo" / "dvc.yaml").unlink()
    (tmp_path / "pipelines" / "demo" / "dvc.yaml").symlink_to("../stages.yaml")
    with (tmp_path / "notebooks" / "05_detector.ipynb").open("r+") as f:  # a new import: a new dependency
        nb = json.load(f)
        nb["cells"][3]["source"].insert(0, "from lib.generator import edits\n")
        f.seek(0), f.write(json.dumps(nb)), f.truncate()
    assert sorted(map(str, pipeline.write_dvc_files(tmp_path, check=True))) == ["dvc.yaml", "pipelines/demo/dvc.yaml",
                                                                                "pipelines/paper/dvc.yaml", "pipelines/smoke/dvc.yaml"]
    pipeline.write_dvc_files(tmp_path)
    assert not (tmp_path / "pipelines" / "demo" / "dvc.yaml").is_symlink()
    assert "lib/generator/edits.py" in yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]["detector"]["deps"]


def test_dvc_stages_match_notebooks_and_params():
    stages = yaml.safe_load((REPO / "pipelines" / "smoke" / "dvc.yaml").read_text())["stages"]
    assert len(stages) == len(pipeline.STAGE_SECTIONS)
    for stage in stages.values():
        assert stage["wdir"] == "../.."
        notebook = stage["cmd"].split()[4]
        assert f"notebooks/{notebook}.ipynb" in stage["deps"]
        sections = {k.split(".")[0] for k in stage["params"][0]["params/smoke.yaml"]}
        assert sections <= set(pipeline.STAGE_SECTIONS[notebook])
    # the real-only detector needs data prep only: no diffusion stage stands before it
    assert set(stages["detector"]["deps"]) & {"generated/smoke/synthetic", "models/smoke/stage2"} == set()
    assert "models/smoke/detector_real" in stages["finetune"]["deps"]


def test_source_notebooks_have_no_outputs_and_a_parameters_cell():
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert any("parameters" in c["metadata"].get("tags", []) for c in cells), nb
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), f"{nb} has outputs"


def test_resolve_parameters_deep_merges_a_partial_section():
    profile = pipeline.load_params("smoke")
    got = pipeline.resolve_parameters("01_data_prep", "smoke", {"data": {"val_fraction": 0.3}})
    assert got == {"data": {**profile["data"], "val_fraction": 0.3}}
    got = pipeline.resolve_parameters("05_detector", "smoke", pipeline.parse_assignment("detector.train.steps=100"))
    assert got["detector"]["train"]["steps"] == 100 and got["detector"]["train"]["lr"] == profile["detector"]["train"]["lr"]
    assert got["detector"]["model"] == profile["detector"]["model"]
    # sections left at None (the notebooks' defaults) are the profile's; ints pass for floats
    got = pipeline.resolve_parameters("06_evaluation", "smoke", {"data": {"margin": 1}, "evaluate": None})
    assert got["data"]["margin"] == 1 and got["evaluate"] == profile["evaluate"] and got["synthesis"] == profile["synthesis"]
    assert pipeline.parse_assignment("data.procedural.domains=[cartoon]") == {"data": {"procedural": {"domains": ["cartoon"]}}}


@pytest.mark.parametrize("overrides, message", [
    ({"data": {"val_fracton": 0.3}}, "unknown parameter data.val_fracton"),
    ({"detector": {}}, "unknown parameter detector"),
    ({"profile": "smoke"}, "profile"),
    ({"data": {"val_fraction": "0.3"}}, "data.val_fraction: expected float"),
    ({"data": {"procedural": {"size": 9.5}}}, "data.procedural.size: expected int"),
    ({"data": {"redistributable": 1}}, "data.redistributable: expected bool"),
    ({"data": [1]}, "parameter data: expected dict"),
])
def test_resolve_parameters_rejects_unknown_keys_and_wrong_types(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pipeline.resolve_parameters("01_data_prep", "smoke", overrides)


def test_a_section_papermill_fills_key_by_key_is_an_override():
    """papermill's `-p data.val_fraction 0.3` is the assignment `data.val_fraction = 0.3` in its injected
    cell, run after the notebook's parameters cell (`data = Section()`)."""
    data = pipeline.Section()
    exec("data.val_fraction = 0.3\ndata.procedural.size = 48", {"data": data})
    got = pipeline.resolve_parameters("01_data_prep", "smoke", {"data": data})["data"]
    assert got["val_fraction"] == 0.3 and got["procedural"]["size"] == 48
    assert got["crop_size"] == pipeline.load_params("smoke")["data"]["crop_size"]
    assert pipeline.resolve_parameters("01_data_prep", "smoke", {"data": pipeline.Section()}) == \
        pipeline.resolve_parameters("01_data_prep", "smoke", {"data": None})
    typo = pipeline.Section()
    typo.val_fracton = 0.3
    with pytest.raises(ValueError, match="unknown parameter data.val_fracton"):
        pipeline.resolve_parameters("01_data_prep", "smoke", {"data": typo})
    leaf = pipeline.Section()
    leaf.val_fraction.x = 1
    with pytest.raises(ValueError, match="data.val_fraction: expected float .*, got dict"):
        pipeline.resolve_parameters("01_data_prep", "smoke", {"data": leaf})


def test_resolve_parameters_rejects_a_misspelt_papermill_parameter():
    """In a notebook, papermill's `-p profil smoke` is an assignment in its injected cell (IPython's `In`)."""
    injected = '# Parameters\nprofil = "smoke"\ndata = {"val_fraction": 0.3}\n'
    namespace = {"profile": "demo", "data": None, "profil": "smoke", "x": 1, "pipeline": pipeline,
                 "In": ["", 'profile = "demo"\ndata = None\n', injected, "..."]}
    with pytest.raises(ValueError, match="unknown parameter.*profil"):
        pipeline.resolve_parameters("01_data_prep", "demo", {"data": None}, namespace=namespace)
    namespace["In"][2] = injected.replace("profil ", "profile ")
    assert pipeline.resolve_parameters("01_data_prep", "demo", {"data": None}, namespace=namespace)["data"]
    assert pipeline.injected_names({"In": ["", "x = 1"]}) == set()  # outside papermill: nothing to check


def test_run_command_rejects_bad_parameters_before_running(capsys):
    for argv in (["run", "01_data_prep", "--profile", "smoke", "-p", "data.val_fracton=0.3"],
                 ["run", "01_data_prep", "--profile", "smoke", "-p", "data.val_fraction=abc"],
                 ["run", "01_data_prep", "--profile", "smoke", "-p", "val_fraction"],
                 ["run", "01_data_prep", "--profil", "smoke"]):
        with pytest.raises(SystemExit) as e:
            pipeline.main(argv)
        assert e.value.code == 2, argv
    assert "data.val_fraction: expected float" in capsys.readouterr().err


def _copy_project(work):
    """The tracked project files a pipeline run needs, committed in a fresh git repository."""
    for d in ("lib", "notebooks", "params", "pipelines"):
        shutil.copytree(REPO / d, work / d, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "dvc.lock"))
    for f in (".dvc/config", ".dvc/.gitignore", ".dvc/plots/ced.json", ".dvcignore", ".gitignore", "study",
              "requirements.txt", "constraints.txt", "pyproject.toml", "dvc.yaml"):
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, work / f)
    # the run records as committed (a local run may have replaced a placeholder in this checkout)
    for lock in [REPO / "dvc.lock", *REPO.glob("pipelines/*/dvc.lock")]:
        committed = subprocess.run(["git", "show", f":{lock.relative_to(REPO)}"], cwd=REPO, capture_output=True, text=True)
        if committed.returncode == 0:
            (work / lock.relative_to(REPO)).write_text(committed.stdout)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(git + ["add", "-A"], cwd=work, check=True)
    subprocess.run(git + ["commit", "-qm", "project"], cwd=work, check=True)


def _env(tmp_path):
    bin_dir = str(Path(sys.executable).parent)  # papermill's kernel and `python` in the stages
    return {"PATH": bin_dir + ":/usr/bin:/bin", "HOME": str(tmp_path), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
            "DVC_NO_ANALYTICS": "1"}


def test_dvc_reads_every_profile_pipeline(tmp_path):
    work = tmp_path / "study"
    _copy_project(work)
    r = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--all"], cwd=work, env=_env(tmp_path),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for profile in pipeline.PROFILES:
        for stage in yaml.safe_load(STAGES.read_text())["stages"]:
            name = stage if profile == pipeline.ROOT_PROFILE else f"pipelines/{profile}/dvc.yaml:{stage}"
            assert re.search(rf"^{re.escape(name)}\s", r.stdout, re.M), name


@pytest.mark.slow
def test_smoke_pipeline_under_dvc(tmp_path):
    """`dvc repro` of the smoke profile in a fresh clone of the project: results, DVC's metrics
    and plots, and no tracked file changed."""
    work = tmp_path / "study"
    _copy_project(work)
    env = _env(tmp_path)

    def dvc(*args):
        r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout

    if not list(Path(sys.prefix).glob(".installed-*")):
        pytest.skip("runs ./study repro in this environment: run the suite with ./study test")
    r = subprocess.run(["./study", "repro", "smoke"], cwd=work, env={**env, "MDFLD_VENV": sys.prefix},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = pd.read_csv(work / "results" / "smoke" / "table1.csv")
    assert list(table.columns) == ["method", "test_set", "n", "nme", "fr_10", "auc_10", "box", "nme_ci_low",
                                   "nme_ci_high", "seeds", "nme_seed_sd"]
    assert (table["nme_ci_low"] < table["nme"]).all() and (table["nme"] < table["nme_ci_high"]).all()
    assert set(table[table["method"] == "ours (two-stage synthetic)"]["seeds"]) == {2}
    paired = pd.read_csv(work / "results" / "smoke" / "paired.csv")
    assert list(paired.columns) == ["method", "baseline", "test_set", "n", "nme", "baseline_nme", "delta", "ci_low",
                                    "ci_high", "p_value", "seeds"]
    assert set(paired["baseline"]) == {"real only (landmark box)", "few-shot real only",
                                       "few-shot real only without interpolation", "Face of Art without interpolation"}
    # 9 methods against real only and the plain few-shot and Face of Art fine-tunes, 8 against few-shot (itself)
    assert len(paired) == 3 * (9 + 8 + 9 + 9) and (paired["ci_low"] <= paired["delta"]).all()
    assert (work / "results" / "smoke" / "figures" / "paired_deltas.png").exists()
    per_face = pd.read_csv(work / "results" / "smoke" / "per_image" / "ours_two_stage_synthetic__test_caricature.csv.gz")
    assert list(per_face.columns) == ["id", "box", "nme_inter_ocular", "nme_inter_pupil", "nme_box_diagonal", "seed"]
    assert len(per_face) == 2 * paired[(paired["test_set"] == "test_caricature")]["n"].iloc[0]  # each face, each seed
    assert (work / "models" / "smoke" / "detector_fewshot" / "seed1" / "model.safetensors").exists()
    # each method's interpolation weight, chosen on validation; Table 1 reads the interpolated detectors
    interp = pd.read_csv(work / "results" / "smoke" / "detector_interpolation.csv")
    assert len(interp) == 8 * 5 and (interp.groupby("fine-tune")["chosen"].sum() == 1).all()
    # the paper's recipe: the two-stage set alone, without the few real domain faces the other fine-tunes get
    finetunes = pd.read_csv(work / "results" / "smoke" / "detector_finetunes.csv").groupby("fine-tune")["training faces"].max()
    assert finetunes["synthetic_two_stage_alone"] < finetunes["synthetic_two_stage"]
    assert "paper's recipe (two-stage set alone)" in set(table["method"])
    assert (work / "models" / "smoke" / "detector_fewshot" / "interpolated" / "seed1" / "model.safetensors").exists()
    assert {"ours without interpolation (plain fine-tune)", "few-shot real only without interpolation"} <= set(table["method"])
    assert set(table["test_set"]) == {"test_photo", "test_cartoon", "test_caricature"}
    assert {"ours (two-stage synthetic)", "one-step synthetic (ablation)", "stage-1-only synthetic (ablation)",
            "geometry-aware style transfer (Face of Art)", "few-shot real only", "warp-first synthetic (two-stage)",
            "warp-first synthetic + exaggeration"} <= set(table["method"])
    guidance = pd.read_csv(work / "results" / "smoke" / "guidance.csv")  # the guidance chosen on validation faces
    assert list(guidance["guidance"]) == [1.0, 3.0] and guidance["chosen"].sum() == 1 and (guidance["faces"] == 4).all()
    sweep = pd.read_csv(work / "results" / "smoke" / "warp_strength.csv")  # the strength chosen on validation faces
    assert list(sweep["strength"]) == [0.0, 0.5] and sweep["chosen"].sum() == 1
    align = pd.read_csv(work / "results" / "smoke" / "alignment.csv")
    assert list(align.columns) == ["generator", "style", "n", "alignment_nme", "style_accuracy", "alignment_nme_ci_low",
                                   "alignment_nme_ci_high", "style_accuracy_ci_low", "style_accuracy_ci_high",
                                   "n_unedited", "alignment_nme_unedited", "alignment_nme_edited_matched"]
    everything = align[align["style"] == "all"]
    assert ((everything["alignment_nme_ci_low"] <= everything["alignment_nme"])
            & (everything["alignment_nme"] <= everything["alignment_nme_ci_high"])).all()
    assert set(align["generator"]) == {"two_stage", "one_step", "stage1_only", "two_stage_warp",
                                       "two_stage_warp_exaggeration"}
    # the unedited controls of the noise sets: the first item of each of the 5 styles, drawn again without edits
    everything = align[(align["style"] == "all") & align["generator"].isin(["two_stage", "one_step", "stage1_only"])]
    assert (everything["n_unedited"] == 5).all() and everything["alignment_nme_unedited"].notna().all()
    assert (work / "models" / "smoke" / "stage2" / "model_index.json").exists()
    assert '"LandmarkPipeline"' in (work / "models" / "smoke" / "stage2" / "model_index.json").read_text()
    # the synthetic sets are in the 300-W layout with a manifest
    synth = work / "generated" / "smoke" / "synthetic" / "two_stage"
    assert (synth / "manifest.csv").exists() and len(list(synth.rglob("*.pts"))) == len(list(synth.rglob("*.jpg"))) == 10
    assert (work / "models" / "smoke" / "stage2" / "model_index.json").exists()  # diffusers save_pretrained layout
    assert (work / "results" / "smoke" / "notebooks" / "06_evaluation.ipynb").exists()
    assert (work / "pipelines" / "smoke" / "dvc.lock").exists()
    # the executed notebooks show their figures (training curves, samples), not only files beside them
    executed = json.loads((work / "results" / "smoke" / "notebooks" / "02_stage1.ipynb").read_text())
    assert any("image/png" in o.get("data", {}) for c in executed["cells"] for o in c.get("outputs", []))

    # DVC's metrics: Table 1 and the alignment table
    metrics = json.loads(dvc("metrics", "show", "--json"))
    found = [m for rev in metrics.values() for path, m in rev["data"].items()
             if path.endswith("results/smoke/metrics.json")]
    assert found and "error" not in found[0], metrics
    data = found[0]["data"]
    # the headline figures only (lib.evaluation.headline): Table 1's NME per method, the study's main comparisons
    # (ours_vs_foa is left out: smoke declares no interpolated Face of Art baseline), alignment over all styles
    assert list(data) == ["table1", "paired", "alignment"]
    assert set(data["table1"]) == set(data["paired"]) == {"test_photo", "test_cartoon", "test_caricature"}
    assert all(len(t) == 15 and all(isinstance(v, float) for v in t.values()) for t in data["table1"].values())
    assert {"ours_two_stage_synthetic", "real_only_landmark_box", "few_shot_real_only",
            "paper_s_recipe_two_stage_set_alone", "dlib_detector_box", "mean_shape"} <= set(data["table1"]["test_photo"])
    assert all(list(c) == ["ours_vs_real", "paper_vs_real", "ours_vs_fewshot"]
               and all(set(d) == {"delta", "ci_low", "ci_high"} for d in c.values()) for c in data["paired"].values())
    assert set(data["alignment"]) == {"two_stage", "one_step", "stage1_only", "two_stage_warp", "two_stage_warp_exaggeration"}
    assert all("nme" in a and set(a) <= {"nme", "style_acc"} for a in data["alignment"].values())
    # strict JSON (no NaN: a missing value is null), and tens of numbers: 15 x 3 + 3 x 3 x 3 + 5 x 2
    from lib.evaluation.headline import count_numbers
    written = json.loads((work / "results" / "smoke" / "metrics.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"metrics.json is not strict JSON: {c}"))
    assert count_numbers(written) == 82
    dvc("metrics", "diff")
    # DVC's plots: one CED curve per test set, and training curves, all from small CSVs in results/<profile>/plots
    plots = work / "results" / "smoke" / "plots"
    for test_set in ("test_photo", "test_cartoon", "test_caricature"):
        ced = pd.read_csv(plots / "ced" / f"{test_set}.csv")
        assert list(ced.columns) == ["method", "nme", "fraction"]
    curves = sorted(str(f.relative_to(plots)) for f in plots.rglob("*.csv") if f.parent.name != "ced")
    assert curves == ["detector/detector_real.csv", *(f"finetune/{n}.csv" for n in sorted(finetunes.index)),
                      "stage1/autoencoder.csv", "stage1/critic.csv", "stage1/stage1.csv",
                      "stage2/onestep.csv", "stage2/stage2.csv"], curves
    assert list(pd.read_csv(plots / "detector" / "detector_real.csv").columns) == ["step", "loss", "val_nme"]
    # every plot of the profile renders (the other profiles' plots are not this run's: the copy has none of them)
    targets = [f"results/smoke/plots/{d}" for d in ("ced", "stage1", "stage2", "detector", "finetune")]
    shown = dvc("plots", "show", "--json", *targets, "smoke/generator_loss", "smoke/detector_val_nme")
    for name in ("results/smoke/plots/ced/test_photo.csv", "results/smoke/plots/stage2/onestep.csv",
                 "results/smoke/plots/finetune/fewshot.csv", "smoke/generator_loss", "smoke/detector_val_nme"):
        assert name in shown, name
    assert not json.loads(shown).get("errors"), json.loads(shown)["errors"]

    # no tracked file changed: git status is clean, the run's record is kept locally
    status = subprocess.run(["git", "status", "--porcelain"], cwd=work, capture_output=True, text=True, check=True).stdout
    assert status == "", status
    assert "data_prep" in (work / "pipelines" / "smoke" / "dvc.lock").read_text()
    # a second repro has nothing to do
    assert "up to date" in dvc("status", "pipelines/smoke/dvc.yaml")


# ------------------------------------------------------------------ issue 51: one schema for the params files

def test_every_profile_passes_the_schema_and_reads_as_before():
    for profile in pipeline.PROFILES:
        text = (REPO / "params" / f"{profile}.yaml").read_text()
        pipeline.check_params(pipeline.read_yaml(text), f"params/{profile}.yaml")
        assert pipeline.load_params(profile) == yaml.safe_load(text)  # YAML 1.2 floats change no committed value


@pytest.mark.parametrize("edit, says", [
    # item 6: `val` misspelt silently removed the validation splits, 15 emptied the training set, `step` was a KeyError
    (lambda t: t.replace("fewshot: 10, val: 5}", "fewshot: 10, vall: 5}"),
     "data.sources[5].vall: unknown key (did you mean val?); data.sources[5] takes: path, format, split, domain, fewshot, val"),
    (lambda t: t.replace("val_fraction: 0.1", "val_fraction: 15"), "data.val_fraction: 15 out of range; allowed: a number in [0, 1)"),
    (lambda t: t.replace("train: {steps: 12000,", "train: {step: 12000,"),
     "detector.train.step: unknown key (did you mean steps?)"),
    (lambda t: t.replace("stage1: {steps: 1100,", "stage1: {steps: 0,"), "diffusion.stage1.steps: 0 out of range; allowed: an int >= 1"),
    (lambda t: t.replace("mixed_precision: bf16\n  seed: 0", "mixed_precision: no\n  seed: 0"),
     "synthesis.mixed_precision: bool False; expected one of: no, bf16, fp16"),
])
def test_a_params_file_off_the_schema_is_one_clear_error_naming_file_and_key(tmp_path, edit, says):
    (tmp_path / "params").mkdir()
    text = (REPO / "params" / "cpu.yaml").read_text()
    assert edit(text) != text
    (tmp_path / "params" / "cpu.yaml").write_text(edit(text))
    for load in (lambda: pipeline.load_params("cpu", tmp_path),
                 lambda: pipeline.resolve_parameters("01_data_prep", "cpu", root=tmp_path)):  # before any stage runs
        with pytest.raises(pipeline.ParamsError) as exc:
            load()
        assert str(exc.value).startswith(f"{tmp_path / 'params' / 'cpu.yaml'}: ") and says in str(exc.value)


def test_overrides_read_yaml_12_floats_and_bad_yaml_is_a_clear_error(capsys):
    """Item 7: `-p detector.train.lr=1e-4` was "expected float, got str '1e-4'"; `-p 'data.val_fraction=[1'`
    printed a raw YAML traceback."""
    got = pipeline.resolve_parameters("05_detector", "smoke", pipeline.parse_assignment("detector.train.lr=1e-4"))
    assert got["detector"]["train"]["lr"] == 1e-4
    assert pipeline.parse_assignment("x.y=2E5") == {"x": {"y": 200000.0}}
    for override, says in (("data.val_fraction=[1", "the value '[1' is not valid YAML"),
                           ("data.val_fraction=1.5", "parameter data.val_fraction: 1.5 out of range"),
                           ("data.procedural.size=8", "parameter data.procedural.size: 8 out of range")):
        with pytest.raises(SystemExit) as e:
            pipeline.main(["run", "01_data_prep", "--profile", "smoke", "-p", override])
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err, override
    # a key the profile leaves out but the schema knows may be set
    got = pipeline.resolve_parameters("05_detector", "smoke", pipeline.parse_assignment("detector.train.augment.detector_boxes=0.5"))
    assert got["detector"]["train"]["augment"]["detector_boxes"] == 0.5


def test_the_schema_lists_every_field_of_the_settings_objects():
    """Sections that become a settings object in lib may hold exactly its fields."""
    from dataclasses import fields

    from lib.detector.augment import AugmentConfig
    from lib.detector.network import NetworkConfig
    from lib.detector.training import TrainConfig as DetectorTrain
    from lib.generator.autoencoder import AutoencoderTrainConfig
    from lib.generator.training import TrainConfig as GeneratorTrain

    keys = pipeline.schema()["keys"]

    def names(cls, *leave_out):
        return {f.name for f in fields(cls)} - set(leave_out)
    assert set(keys["detector"]["keys"]["model"]["keys"]) == names(NetworkConfig)
    assert set(keys["detector"]["keys"]["train"]["keys"]) == names(DetectorTrain)
    assert set(keys["detector"]["keys"]["train"]["keys"]["augment"]["keys"]) == names(AugmentConfig)
    assert set(keys["diffusion"]["keys"]["stage1"]["keys"]) == names(GeneratorTrain)
    assert set(keys["diffusion"]["keys"]["autoencoder_train"]["keys"]) == names(AutoencoderTrainConfig, "styles")
