import json

import numpy as np
import torch

from lib.core import training as t


def test_epoch_batch_covers_each_epoch_once():
    n, b = 10, 3
    per_epoch = n // b
    seen = np.concatenate([t.epoch_batch(s, n, b, seed=0) for s in range(per_epoch)])
    assert len(set(seen.tolist())) == len(seen) == per_epoch * b
    assert not np.array_equal(t.epoch_batch(0, n, b, 0), t.epoch_batch(per_epoch, n, b, 0))  # reshuffled
    np.testing.assert_array_equal(t.epoch_batch(4, n, b, 1), t.epoch_batch(4, n, b, 1))  # deterministic
    assert sorted(t.epoch_batch(0, 2, 8, 0).tolist()) == [0, 1]  # a set smaller than a batch


def test_signature_ignores_run_length_but_not_settings():
    a = {"train": {"steps": 10, "threads": 2, "lr": 1e-3, "checkpoint_every": 5}, "model": {"c": 4}}
    longer = {"train": {"steps": 99, "threads": 1, "lr": 1e-3, "checkpoint_every": 7}, "model": {"c": 4}}
    other = {"train": {"steps": 10, "threads": 2, "lr": 2e-3, "checkpoint_every": 5}, "model": {"c": 4}}
    assert t.settings_signature(a) == t.settings_signature(longer)
    assert t.settings_signature(a) != t.settings_signature(other)
    assert json.loads(t.settings_signature(a)) == {"train": {"lr": 1e-3}, "model": {"c": 4}}


def test_scheduler_jump_matches_stepping():
    def fresh():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        return opt, t.make_scheduler(opt, "cosine", 3, 20)
    opt, s = fresh()
    for _ in range(7):
        opt.step()
        s.step()
    opt2, s2 = fresh()
    t._jump(s2, opt2, 7)
    assert abs(opt.param_groups[0]["lr"] - opt2.param_groups[0]["lr"]) < 1e-12
    opt.step(), s.step(), opt2.step(), s2.step()
    assert abs(opt.param_groups[0]["lr"] - opt2.param_groups[0]["lr"]) < 1e-12


def test_unreadable_checkpoint_is_set_aside(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"truncated")
    m = torch.nn.Linear(2, 2)
    run = t.TrainingRun(tmp_path, {"a": 1}, steps=2, checkpoint_every=1, desc="x", progress=False)
    assert run.resume({"m": m}, torch.optim.SGD(m.parameters(), lr=0.1)) is False
    assert not ckpt.exists() and len(list(ckpt.parent.glob("last.*.safetensors"))) == 1


def test_fingerprint_tells_data_and_weights_apart(tmp_path):
    from lib.core.training import fingerprint
    a = np.zeros((2, 3), np.float32)
    assert fingerprint(a) == fingerprint(a.copy()) and len(fingerprint(a)) == 16
    assert fingerprint(a) != fingerprint(a + 1) and fingerprint(a) != fingerprint(a.astype(np.float64))
    assert fingerprint([a, "x"]) != fingerprint([a, "y"])
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "m" / "checkpoints").mkdir()
    (tmp_path / "m" / "checkpoints" / "last.safetensors").write_bytes(b"state")
    before = fingerprint(tmp_path / "m")
    (tmp_path / "m" / "checkpoints" / "last.safetensors").write_bytes(b"other state")
    assert fingerprint(tmp_path / "m") == before  # checkpoints are not the weights
    (tmp_path / "m" / "model.safetensors").write_bytes(b"retrained")
    assert fingerprint(tmp_path / "m") != before


def test_a_call_that_finds_the_run_finished_leaves_its_records(tmp_path):
    def train():
        m = torch.nn.Linear(2, 2)
        run = t.TrainingRun(tmp_path, {"a": 1}, steps=2, checkpoint_every=1, desc="x", progress=False)
        run.resume({"m": m}, torch.optim.SGD(m.parameters(), lr=0.1))
        for _ in run:
            run.log(loss=1.0)
        return run.finish()
    first = train()
    assert first.steps_run == 2 and first.finished
    records = {f: (tmp_path / f).read_bytes() for f in ("history.csv", "timing.json")}
    again = train()
    assert again.steps_run == 0 and again.finished and len(again.history) == 2
    assert {f: (tmp_path / f).read_bytes() for f in records} == records
    (tmp_path / "timing.json").unlink()  # a record missing: written again
    train()
    assert (tmp_path / "timing.json").exists()
