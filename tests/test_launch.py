"""``lib/launch.py``: one generator stage under ``accelerate launch``, here with
two CPU processes (gloo) on the smoke profile's configuration, in a project
folder made by the test (``--root``)."""
import json
import os
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
