import numpy as np
import pytest
import torch

from lib.core import crop as cr
from lib.data import datasets as ds
from lib.detector import model as det
from lib.detector.hourglass import HourglassConfig
from lib.data.procedural import render_face

MCFG = HourglassConfig(stacks=1, channels=16, depth=2, input_size=32, heatmap_size=8, sigma=1.0)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    samples = []
    for i in range(10):
        f = render_face(200 + i, "photo", 64)
        ds.save_image(d / f"{i}.jpg", f.image)
        samples.append(ds.Sample(d / f"{i}.jpg", f.landmarks))
    return det.FaceSet(samples[:8]), det.FaceSet(samples[8:])


def _cfg(**kw):
    base = dict(steps=6, batch_size=4, lr=1e-3, warmup=2, checkpoint_every=3, val_every=3, threads=1)
    base.update(kw)
    return det.TrainConfig.from_dict(base)


def test_interrupted_and_resumed_run_matches_uninterrupted(faces, tmp_path):
    train, val = faces
    det.train(train, val, MCFG, _cfg(), tmp_path / "a", progress=False)
    det.train(train, val, MCFG, _cfg(), tmp_path / "b", stop_at=3, progress=False)
    det.train(train, val, MCFG, _cfg(), tmp_path / "b", progress=False)  # resumes at step 3
    ta = det.load_file(str(tmp_path / "a" / "checkpoints" / "last.safetensors"))
    tb = det.load_file(str(tmp_path / "b" / "checkpoints" / "last.safetensors"))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.allclose(ta[k].float(), tb[k].float(), atol=1e-6), k


def test_training_lowers_the_loss_and_selects_on_validation(faces, tmp_path):
    train, val = faces
    hist = det.train(train, val, MCFG, _cfg(steps=30, lr=3e-3, val_every=10, checkpoint_every=10),
                     tmp_path / "d", progress=False)
    assert hist["loss"].iloc[-5:].mean() < hist["loss"].iloc[:5].mean()
    cfg = (tmp_path / "d" / "config.json").read_text()
    assert "selected_step" in cfg and set(hist["val_nme"].dropna().index) != set()


def test_detector_folder_round_trip_and_predictor(faces, tmp_path):
    train, val = faces
    det.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "d", progress=False)
    model, config = det.load_detector(tmp_path / "d")
    assert config["margin"] == 0.25
    f = render_face(300, "photo", 64)
    p = det.Detector(tmp_path / "d").predict(f.image, cr.box_from_landmarks(f.landmarks, 0.0))
    assert p.landmarks.shape == (68, 2) and np.isfinite(p.landmarks).all() and p.box == "landmarks"


def test_missing_detector_folder_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        det.load_detector(tmp_path)


def test_evaluation_command_accepts_a_detector_folder(faces, tmp_path, capsys):
    from lib.evaluation import evaluate as ev
    train, val = faces
    det.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "d", progress=False)
    folder = tmp_path / "cari"
    folder.mkdir()
    for i in range(3):
        f = render_face(400 + i, "caricature", 96)
        ds.save_image(folder / f"{i}.jpg", f.image)
        np.savetxt(folder / f"{i}.txt", f.landmarks)
    assert ev.main(["--images", str(folder), "--predictor", str(tmp_path / "d"), "--out", str(tmp_path / "o")]) == 0
    assert "n=3" in capsys.readouterr().out


def test_checkpoint_of_other_settings_is_not_resumed(faces, tmp_path, capsys):
    train, val = faces
    det.train(train, val, MCFG, _cfg(), tmp_path / "d", stop_at=3, progress=False)
    hist = det.train(train, val, MCFG, _cfg(lr=5e-4), tmp_path / "d", progress=False)
    assert "starting afresh" in capsys.readouterr().out
    assert hist["step"].tolist() == list(range(1, 7))


def test_image_only_mode_with_a_detector_folder(faces, tmp_path):
    """Whole images: dlib's detector finds the face, the detector predicts, points map back."""
    from lib.evaluation import evaluate as ev
    train, val = faces
    det.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "d", progress=False)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    f = render_face(7, "photo", 256)
    ds.save_image(imgs / "a.jpg", f.image)
    assert ev.main(["--images", str(imgs), "--predictor", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                    "--mode", "predict"]) == 0
    pts = ds.read_pts(tmp_path / "o" / "a.pts")
    # an untrained network is imprecise, but its points land on the face the detector found
    lo, hi = f.landmarks.min(0), f.landmarks.max(0)
    margin = (hi - lo).max() * 0.5
    assert ((pts > lo - margin) & (pts < hi + margin)).all()
