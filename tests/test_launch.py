"""``lib/launch.py``: one generator stage under ``accelerate launch``, here with
two CPU processes (gloo) on the smoke profile's configuration, in a project
folder made by the test (``--root``); and the whole multi-GPU recipe of
docs/multi-gpu.md, run as written on the smoke profile in a fresh copy of the project."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lib import launch, pipeline
from lib.core.training import epoch_batch
from lib.data import data_prep
from lib.generator import stages

STEPS, PER_PROCESS = 10, 2  # stage 1: 10 steps, a global batch of 2 x 2 faces


def _profile(root: Path, batch_size: int) -> dict:
    params = pipeline.load_params("smoke")
    d = params["diffusion"]
    d["autoencoder_train"].update(steps=2, threads=1)
    d["stage1"].update(steps=STEPS, batch_size=batch_size, lr=2e-3, flip=0.0, checkpoint_every=3, sample_every=100,
                       sample_steps=1, threads=1,
                       snr_gamma=None,  # plain MSE: min-SNR weights make a few steps' losses too noisy to compare
                       consistency_weight=0.0)  # nor the critic's term (its launch: test_the_critic_launches_first)
    (root / "params").mkdir(parents=True, exist_ok=True)
    (root / "params" / "smoke.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder with the smoke profile's data prepared and its autoencoder trained."""
    root = tmp_path_factory.mktemp("project")
    params = _profile(root, PER_PROCESS)
    data_prep.prepare(params["data"], pipeline.data_dir("smoke", root), show_progress=False)
    assert launch.main(["autoencoder", "--profile", "smoke", "--root", str(root), "--no-progress"]) == 0
    return root


def _launch(root: Path, processes: int, tmp: Path, *args) -> subprocess.CompletedProcess:
    """`accelerate launch` on CPU processes; one process: plain `python -m lib.launch`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "ACCELERATE_USE_CPU": "true",
           "OMP_NUM_THREADS": "1", "MDFLD_LOG_SHARDS": str(tmp / "shards")}
    cmd = [sys.executable, "-m", "lib.launch", *args, "--root", str(root), "--no-progress"]
    if processes > 1:
        with socket.socket() as s:  # a free port: other test runs may launch at the same time
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # accelerate's CPU path without mpirun: torchrun processes (--multi_gpu) told to use the CPU
        # (ACCELERATE_USE_CPU), so the processes join a gloo group
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), "-m", "lib.launch", *args, "--root", str(root), "--no-progress"]
    return subprocess.run(cmd, cwd=pipeline.ROOT, env=env, capture_output=True, text=True, timeout=300)


def _shards(tmp: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (tmp / f"shards.rank{rank}").read_text().splitlines()]


def test_two_processes_shard_the_global_batch_and_match_one_process(project, tmp_path):
    r = _launch(project, 2, tmp_path, "stage1", "--profile", "smoke")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    models = project / "models" / "smoke"
    assert r.stdout.count("finished model in") == 1 and str(models / "stage1") in r.stdout  # main process only

    # one model folder, one checkpoint, written once
    assert sorted(p.name for p in models.iterdir()) == ["autoencoder", "stage1"]
    assert [p.name for p in (models / "stage1" / "checkpoints").iterdir()] == ["last.safetensors"]
    info = json.loads((models / "stage1" / "generator.json").read_text())
    assert info["processes"] == 2 and info["steps"] == STEPS and info["train"]["batch_size"] == PER_PROCESS
    two = pd.read_csv(models / "stage1" / "history.csv")
    assert two["step"].tolist() == list(range(1, STEPS + 1)) and np.isfinite(two["loss"]).all()

    # each process took its own shard [rank::2] of every global batch of 2 x PER_PROCESS faces
    n = len(stages.stage1_pairs(pipeline.data_dir("smoke", project), 32)[0])
    logs = [_shards(tmp_path, rank) for rank in (0, 1)]
    seed = yaml.safe_load((project / "params" / "smoke.yaml").read_text())["diffusion"]["stage1"]["seed"]
    for step in range(STEPS):
        glob = epoch_batch(step, n, 2 * PER_PROCESS, seed)
        for rank, log in enumerate(logs):
            assert log[step] == {"rank": rank, "step": step, "idx": glob[rank::2].tolist()}
        assert not set(logs[0][step]["idx"]) & set(logs[1][step]["idx"])

    # one process at the same global batch: the same data, other noise draws; the loss follows the same course
    single = tmp_path / "single"
    _profile(single, 2 * PER_PROCESS)
    (single / "models" / "smoke").mkdir(parents=True)
    os.symlink(project / "data", single / "data")
    os.symlink(models / "autoencoder", single / "models" / "smoke" / "autoencoder")
    r1 = _launch(single, 1, tmp_path / "one", "stage1", "--profile", "smoke")
    assert r1.returncode == 0, r1.stdout[-3000:] + r1.stderr[-3000:]
    one = pd.read_csv(single / "models" / "smoke" / "stage1" / "history.csv")
    assert json.loads((single / "models" / "smoke" / "stage1" / "generator.json").read_text())["processes"] == 1
    assert _shards(tmp_path / "one", 0)[0]["idx"] == epoch_batch(0, n, 2 * PER_PROCESS, seed).tolist()
    last = slice(STEPS // 2, None)
    a, b = two["loss"].iloc[last].mean(), one["loss"].iloc[last].mean()
    print(f"loss over the last {STEPS - STEPS // 2} steps: 2 processes {a:.4f}, 1 process {b:.4f}; "
          f"first step {two['loss'].iloc[0]:.4f} / {one['loss'].iloc[0]:.4f}")
    assert abs(a - b) < 0.1 * b, (two["loss"].tolist(), one["loss"].tolist())
    assert a < two["loss"].iloc[0] and b < one["loss"].iloc[0]  # both learn


def test_the_notebook_finds_the_launched_model(project, tmp_path):
    """After a 2-process launch, the notebook's own call (one process) has nothing left to do."""
    models = project / "models" / "smoke"
    if not (models / "stage1" / "generator.json").exists():
        r = _launch(project, 2, tmp_path, "stage1", "--profile", "smoke")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    before = (models / "stage1" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    params = pipeline.load_params("smoke", project)
    result = stages.train_generator("stage1", params["diffusion"], pipeline.data_dir("smoke", project),
                                    pipeline.generated_dir("smoke", project), models, progress=False)
    assert result.finished and result.steps_run == 0 and result.resumed_from == STEPS
    assert [p.name for p in (models / "stage1" / "checkpoints").iterdir()] == ["last.safetensors"]
    assert (models / "stage1" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before


def test_clear_errors(project, tmp_path, capsys):
    root = str(project)
    with pytest.raises(SystemExit):
        launch.main(["stage3", "--profile", "smoke", "--root", root])
    assert launch.main(["stage1", "--profile", "nope", "--root", root]) == 2
    assert "no such profile" in capsys.readouterr().err
    # stage 2 / one-step without the multi-domain set of notebook 03; stage 2 without a finished stage 1
    empty = tmp_path / "models"
    params = pipeline.load_params("smoke", project)
    data, generated = pipeline.data_dir("smoke", project), tmp_path / "generated"
    for stage in ("stage2", "onestep"):
        with pytest.raises(launch.LaunchError, match="multi-domain set; notebook 03 makes it"):
            launch.check_inputs(stage, params["diffusion"], data, generated, empty, 1)
    (generated / "multidomain").mkdir(parents=True)
    (generated / "multidomain" / "manifest.csv").write_text("image,style,prompt,edits,seed,source\n")
    with pytest.raises(launch.LaunchError, match="no finished stage-1 model"):
        launch.check_inputs("stage2", params["diffusion"], data, generated, empty, 1)
    with pytest.raises(launch.LaunchError, match="no autoencoder"):
        launch.check_inputs("stage1", params["diffusion"], data, generated, empty, 1)
    with pytest.raises(launch.LaunchError, match="one process only"):
        launch.check_inputs("autoencoder", params["diffusion"], data, generated, empty, 2)
    with pytest.raises(launch.LaunchError, match="run data prep first"):
        launch.check_inputs("stage1", params["diffusion"], tmp_path / "nodata", generated, empty, 1)
    paper = pipeline.load_params("paper")["diffusion"]
    with pytest.raises(launch.LaunchError, match="no Stable Diffusion here"):
        launch.check_inputs("stage1", paper, data, generated, empty, 1)
    assert launch.main(["onestep", "--profile", "smoke", "--root", root]) == 2
    assert "notebook 03 makes it" in capsys.readouterr().err


def test_the_critic_launches_first(project, tmp_path):
    """A stage with the consistency loss needs the critic, which its own launch stage trains (one process)."""
    params = pipeline.load_params("smoke")  # the profile as shipped: every stage uses the consistency loss
    d = params["diffusion"]
    assert stages.uses_critic(d)
    root = tmp_path / "p"
    (root / "params").mkdir(parents=True)
    (root / "params" / "smoke.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "models" / "smoke").mkdir(parents=True)
    os.symlink(project / "data", root / "data")
    data, generated, models = (pipeline.data_dir("smoke", root), pipeline.generated_dir("smoke", root),
                               root / "models" / "smoke")
    os.symlink(project / "models" / "smoke" / "autoencoder", models / "autoencoder")
    with pytest.raises(launch.LaunchError, match="no landmark critic"):
        launch.check_inputs("stage1", d, data, generated, models, 1)
    with pytest.raises(launch.LaunchError, match="one process only"):
        launch.check_inputs("critic", d, data, generated, models, 2)
    assert launch.main(["critic", "--profile", "smoke", "--root", str(root), "--no-progress"]) == 0
    assert (stages.critic_dir(models) / "model.safetensors").is_file()
    launch.check_inputs("stage1", d, data, generated, models, 1)  # now nothing lacks
    assert launch.main(["stage1", "--profile", "smoke", "--root", str(root), "--no-progress"]) == 0
    history = pd.read_csv(models / "stage1" / "history.csv")
    assert np.isfinite(history["consistency"]).all()


def test_the_multidomain_target_builds_the_set_of_notebook_03(project, tmp_path):
    """`lib.launch multidomain` (one process, no training) writes the set stage 2 and one-step read."""
    root = tmp_path / "p"
    (root / "params").mkdir(parents=True)
    shutil.copy(project / "params" / "smoke.yaml", root / "params" / "smoke.yaml")
    os.symlink(project / "data", root / "data")
    params = pipeline.load_params("smoke", root)
    d, data, generated = params["diffusion"], pipeline.data_dir("smoke", root), pipeline.generated_dir("smoke", root)
    with pytest.raises(launch.LaunchError, match="multidomain runs on one process only"):
        launch.check_inputs("multidomain", d, data, generated, root / "models" / "smoke", 2)
    with pytest.raises(launch.LaunchError, match="python -m lib.launch multidomain"):
        launch.check_inputs("stage2", d, data, generated, root / "models" / "smoke", 1)
    assert launch.main(["multidomain", "--profile", "smoke", "--root", str(root), "--no-progress"]) == 0
    manifest = pd.read_csv(generated / "multidomain" / "manifest.csv")
    md = d["multidomain"]
    fewshot = sum(len(list((data / "crops" / s).glob("*.pts"))) for s in stages.fewshot_splits(data))
    assert fewshot > 0 and len(manifest) == len(md["filter_styles"]) * md["per_style"] + fewshot
    pairs, n_real, styles = stages.multidomain_pairs(generated / "multidomain", 32, md["fewshot_repeat"])
    assert n_real == fewshot and set(styles) >= set(md["filter_styles"])
    assert not (root / "models").exists()  # nothing trained
    with pytest.raises(launch.LaunchError, match="no prepared faces; run data prep first"):
        launch.check_inputs("multidomain", d, tmp_path / "nodata", generated, root / "models" / "smoke", 1)


# ------------------------------------------------------------------ docs/multi-gpu.md, run as written

RECIPE = pipeline.ROOT / "docs" / "multi-gpu.md"


def _recipe() -> tuple[list[str], str]:
    """The recipe's command lines (its first bash block) and the CPU form of LAUNCH it gives."""
    text = RECIPE.read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 2, f"{RECIPE}: expected the recipe's bash block and the CPU LAUNCH line"
    lines = [line for line in blocks[0].splitlines() if line.strip()]
    assert lines[0].startswith("PROFILE=") and lines[1].startswith("LAUNCH="), \
        f"{RECIPE}: the block must start with PROFILE=... and LAUNCH=..."
    cpu = blocks[1].strip()
    assert cpu.startswith('LAUNCH="env ACCELERATE_USE_CPU=true ') and cpu.endswith('"'), cpu
    return lines, cpu[len('LAUNCH="'):-1]


def test_the_recipe_uses_its_two_variables():
    lines, _ = _recipe()
    for line in lines[2:]:
        assert "--profile $PROFILE" in line, f"{RECIPE}: {line!r} does not use $PROFILE"
        if re.search(r"lib\.launch (stage1|stage2|onestep)\b", line):
            assert line.startswith("$LAUNCH -m lib.launch "), f"{RECIPE}: {line!r} is not launched with $LAUNCH"
        else:
            assert line.startswith("python -m lib."), f"{RECIPE}: {line!r}: one process, python -m"
    launched = [re.search(r"lib\.launch (\w+)", line)[1] for line in lines if line.startswith("$LAUNCH")]
    assert launched == ["stage1", "stage2", "onestep"]


def _copy_project(work: Path) -> None:
    """The files the recipe runs: the library, the notebooks, the profiles."""
    for d in ("lib", "notebooks", "params"):
        shutil.copytree(pipeline.ROOT / d, work / d, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))


@pytest.mark.slow
def test_the_multi_gpu_recipe_runs_as_written(tmp_path):
    """docs/multi-gpu.md's block on the smoke profile with 2 CPU processes, in a fresh copy of the
    project: every command succeeds, the launches finish stage 1, stage 2 and one-step, and the
    notebooks after them train 0 steps (they pick up the launched models, nothing is set aside)."""
    lines, cpu_launch = _recipe()
    with socket.socket() as s:  # a free port: other test runs may launch at the same time
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = "\n".join(["set -euo pipefail", "trap 'echo \"recipe: failed: $BASH_COMMAND\" >&2' ERR", "set -x",
                        "PROFILE=smoke", f'LAUNCH="{cpu_launch} --main_process_port {port}"', *lines[2:], ""])
    work = tmp_path / "study"
    _copy_project(work)
    (tmp_path / "recipe.sh").write_text(script)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "MPLBACKEND": "Agg",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", str(tmp_path / "recipe.sh")], cwd=work, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]

    params = pipeline.load_params("smoke", work)["diffusion"]
    models = work / "models" / "smoke"
    for stage in stages.GENERATORS:
        assert f"{stage} of smoke: finished model in {models / stage}" in r.stdout, r.stdout[-3000:]
        assert json.loads((models / stage / "generator.json").read_text())["steps"] == params[stage]["steps"]
        assert len(pd.read_csv(models / stage / "history.csv")) == params[stage]["steps"]
        kept = sorted(p.name for p in (models / stage / "checkpoints").iterdir())
        assert kept == ["last.safetensors"], f"{stage}: a checkpoint was set aside (retrained): {kept}"
    assert (work / "generated" / "smoke" / "multidomain" / "manifest.csv").is_file()

    # the executed notebooks: every training call found its model finished
    trained = {}
    for nb in ("02_stage1", "03_stage2"):
        cells = json.loads((work / "results" / "smoke" / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
        text = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("name") == "stdout")
        trained[nb] = [int(n) for n in re.findall(r"(\d+) steps trained in this run", text)]
        assert "starting afresh" not in text, f"{nb}: {text}"
    assert len(trained["02_stage1"]) >= 2 and len(trained["03_stage2"]) == 2, trained  # stage 1 (+ autoencoder, critic); stage 2, one-step
    assert set(trained["02_stage1"] + trained["03_stage2"]) == {0}, trained
