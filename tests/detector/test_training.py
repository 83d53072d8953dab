import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lib.detector import model as det
from lib.detector import training as tr

from tests.detector.conftest import MCFG
from tests.detector.conftest import short_config as _cfg


def _same_checkpoints(a, b):
    ta, tb = load_file(str(a / "checkpoints" / "last.safetensors")), load_file(str(b / "checkpoints" / "last.safetensors"))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.allclose(ta[k].float(), tb[k].float(), atol=1e-6), k


def test_interrupted_and_resumed_run_matches_uninterrupted(faces, tmp_path):
    train, val = faces
    tr.train(train, val, MCFG, _cfg(), tmp_path / "a", progress=False)
    first = tr.train(train, val, MCFG, _cfg(), tmp_path / "b", stop_at=3, progress=False)
    assert first.steps_run == 3 and not first.finished
    second = tr.train(train, val, MCFG, _cfg(), tmp_path / "b", progress=False)  # resumes at step 3
    assert second.resumed_from == 3 and second.steps_run == 3 and second.finished
    _same_checkpoints(tmp_path / "a", tmp_path / "b")
    assert "emamodel.0" in load_file(str(tmp_path / "a" / "checkpoints" / "last.safetensors"))


def test_training_lowers_the_loss_and_selects_on_validation(faces, tmp_path):
    train, val = faces
    r = tr.train(train, val, MCFG, _cfg(steps=30, lr=3e-3, val_every=10, checkpoint_every=10),
                 tmp_path / "d", progress=False)
    hist = r.history
    assert hist["loss"].iloc[-5:].mean() < hist["loss"].iloc[:5].mean()
    assert r.seconds > 0 and r.steps_run == 30
    cfg = (tmp_path / "d" / "config.json").read_text()
    assert "selected_step" in cfg and hist["val_nme"].notna().sum() == 3
    assert (tmp_path / "d" / "history.csv").exists() and (tmp_path / "d" / "timing.json").exists()
    # the schedule is diffusers' cosine with warm-up: rises, then decays towards 0
    assert hist["lr"].iloc[0] < hist["lr"].iloc[2] and hist["lr"].iloc[-1] < 0.1 * hist["lr"].max()


def test_a_longer_run_continues_from_the_last_checkpoint(faces, tmp_path, capsys):
    train, val = faces
    tr.train(train, val, MCFG, _cfg(steps=6), tmp_path / "d", progress=False)
    r = tr.train(train, val, MCFG, _cfg(steps=9, threads=2), tmp_path / "d", progress=False)
    assert "resuming" in capsys.readouterr().out
    assert r.resumed_from == 6 and r.steps_run == 3
    assert r.history["step"].tolist() == list(range(1, 10))


def test_checkpoint_of_other_settings_is_kept_aside_not_resumed(faces, tmp_path, capsys):
    train, val = faces
    tr.train(train, val, MCFG, _cfg(), tmp_path / "d", stop_at=3, progress=False)
    r = tr.train(train, val, MCFG, _cfg(lr=5e-4), tmp_path / "d", progress=False)
    assert "starting afresh" in capsys.readouterr().out
    assert r.history["step"].tolist() == list(range(1, 7)) and r.resumed_from == 0
    kept = list((tmp_path / "d" / "checkpoints").glob("last.*.safetensors"))
    assert len(kept) == 1  # the other run's checkpoint is kept, renamed


def test_detector_folder_round_trip(faces, tmp_path):
    train, val = faces
    tr.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "d", progress=False)
    model, config = det.load_detector(tmp_path / "d")
    assert config["margin"] == 0.25 and model.cfg == MCFG
    assert np.isfinite(det.predict_crops(model, np.zeros((1, 32, 32, 3), np.uint8))).all()


def test_batch_mix_draws_a_fixed_share_from_each_pool(faces):
    train, val = faces
    cfg = _cfg(batch_size=8)
    plain = tr.batch_faces(5, train, cfg)
    assert len(plain) == 8
    # no mix: the same batch as the training set's own epoch order
    assert all(a[0] is train.images[i] for a, i in zip(plain, tr.epoch_batch(5, len(train), 8, cfg.seed)))
    mixed_cfg = _cfg(batch_size=8, mix={"few": 0.25, "real": 0.25})
    mixed = tr.batch_faces(5, train, mixed_cfg, {"few": val, "real": train})
    from_val = sum(any(img is v for v in val.images) for img, _ in mixed)
    assert len(mixed) == 8 and from_val == 2  # round(0.25 * 8) from the few faces, whatever the set's size
    with pytest.raises(ValueError, match="not given"):
        tr.batch_faces(0, train, mixed_cfg, {"few": val})
    with pytest.raises(ValueError, match="whole batch"):
        tr.batch_faces(0, train, _cfg(batch_size=8, mix={"few": 0.75, "real": 0.5}), {"few": val, "real": train})


def test_training_with_a_batch_mix_runs_and_records_its_pools(faces, tmp_path):
    train, val = faces
    r = tr.train(train, val, MCFG, _cfg(mix={"few": 0.5}), tmp_path / "m", progress=False, pools={"few": val})
    plain = tr.train(train, val, MCFG, _cfg(), tmp_path / "p", progress=False)
    assert r.finished and np.isfinite(r.history["loss"]).all()
    assert not np.allclose(r.history["loss"], plain.history["loss"])  # other faces in every batch


def test_a_finished_run_on_other_data_is_trained_again_not_resumed(faces, samples, tmp_path):
    train, val = faces
    first = tr.train(train, val, MCFG, _cfg(), tmp_path / "r", progress=False)
    again = tr.train(train, val, MCFG, _cfg(), tmp_path / "r", progress=False)
    assert first.steps_run == 6 and again.steps_run == 0  # same data and settings: the finished run is kept
    other = tr.FaceSet(samples[2:])  # as many faces, other ones
    redo = tr.train(other, val, MCFG, _cfg(), tmp_path / "r", progress=False)
    assert redo.steps_run == 6 and redo.resumed_from == 0


def test_detector_box_jitter_is_measured_on_the_training_faces(tmp_path):
    import pandas as pd
    import pytest
    from lib.detector.augment import AugmentConfig
    from lib.data.procedural import render_face
    rendered = [render_face(400 + i, "photo", 192) for i in range(4)]
    faces = tr.FaceSet([])
    faces.images, faces.points = [f.image for f in rendered], [f.landmarks for f in rendered]
    cfg = _cfg(steps=2, val_every=2)
    cfg.augment = AugmentConfig(detector_boxes=0.5)
    tr.train(faces, faces, MCFG, cfg, tmp_path / "d", progress=False)
    rows = pd.read_csv(tmp_path / "d" / "box_errors.csv")
    assert list(rows.columns) == ["dx", "dy", "log_scale"] and 1 <= len(rows) <= 4
    blank = tr.FaceSet([])
    blank.images, blank.points = [np.zeros((192, 192, 3), np.uint8)] * 2, faces.points[:2]
    with pytest.raises(ValueError, match="found none of the training faces"):
        tr.train(blank, faces, MCFG, cfg, tmp_path / "e", progress=False)


def test_take_gives_the_first_faces_and_refuses_more_than_there_are(faces):
    train, _ = faces
    sub = train.take(3)
    assert len(sub) == 3 and all(a is b for a, b in zip(sub.images, train.images[:3]))
    with pytest.raises(ValueError, match="asked for 9 faces of a set of 8"):
        train.take(9)


def test_frozen_norm_stats_keep_the_starting_statistics_and_train_the_rest(faces, tmp_path):
    train, val = faces
    tr.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "start", progress=False)
    start = load_file(str(tmp_path / "start" / "model.safetensors"))
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert stats
    for frozen in (True, False):
        out = tmp_path / f"ft_{frozen}"
        tr.train(train, val, MCFG, _cfg(steps=3, val_every=3, freeze_norm_stats=frozen), out,
                 init=tmp_path / "start", progress=False)
        tuned = load_file(str(out / "model.safetensors"))
        assert all(torch.equal(tuned[k], start[k]) for k in stats) is frozen
        assert any(not torch.equal(tuned[k], start[k]) for k in tuned if k not in stats)  # the weights trained
