import numpy as np
import pytest
import torch

from lib.core import crop as cr
from lib.data import datasets as ds
from lib.detector import model as det
from lib.detector.network import build_network, for_inference
from lib.detector import training as tr
from lib.data.procedural import render_face

from tests.detector.conftest import INFERENCE_CASES, MCFG
from tests.detector.conftest import short_config as _cfg


def test_detector_folder_round_trip_and_predictor(faces, tmp_path):
    train, val = faces
    tr.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "d", progress=False)
    model, config = det.load_detector(tmp_path / "d")
    assert config["margin"] == 0.25
    f = render_face(300, "photo", 64)
    p = det.Detector(tmp_path / "d").predict(f.image, cr.box_from_landmarks(f.landmarks, 0.0))
    assert p.landmarks.shape == (68, 2) and np.isfinite(p.landmarks).all() and p.box == "landmarks"


def test_missing_detector_folder_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        det.load_detector(tmp_path)


def test_evaluation_command_accepts_a_detector_folder(faces, tmp_path, capsys, monkeypatch):
    from lib.evaluation import evaluate as ev
    train, val = faces
    tr.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "d", progress=False)
    folder = tmp_path / "cari"
    folder.mkdir()
    for i in range(3):
        f = render_face(400 + i, "caricature", 96)
        ds.save_image(folder / f"{i}.jpg", f.image)
        np.savetxt(folder / f"{i}.txt", f.landmarks)
    assert ev.main(["--images", str(folder), "--predictor", str(tmp_path / "d"), "--out", str(tmp_path / "o")]) == 0
    assert "n=3" in capsys.readouterr().out
    seen = []
    real = det.Detector.__init__

    def recording(self, *args, **kw):
        seen.append((kw.get("flip"), kw.get("refine")))
        real(self, *args, **kw)

    monkeypatch.setattr(det.Detector, "__init__", recording)
    assert ev.main(["--images", str(folder), "--predictor", str(tmp_path / "d"), "--out", str(tmp_path / "o2"),
                    "--refine", "--flip"]) == 0
    assert seen == [(True, True)] and "n=3" in capsys.readouterr().out
    assert ev.main(["--images", str(folder), "--predictor", "dlib", "--out", str(tmp_path / "o3"), "--refine"]) == 2
    assert "--refine are options of a trained detector folder" in capsys.readouterr().err


def test_image_only_mode_with_a_detector_folder(faces, tmp_path):
    """Whole images: dlib's detector finds the face, the detector predicts, points map back."""
    from lib.evaluation import evaluate as ev
    train, val = faces
    tr.train(train, val, MCFG, _cfg(steps=3, val_every=3), tmp_path / "d", progress=False)
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


# ------------------------------------------------------------------ detector folders are checked on load

@pytest.fixture
def folder(tmp_path):
    """A saved (untrained) detector folder."""
    torch.manual_seed(0)
    det.save_detector(tmp_path / "d", build_network(MCFG).eval(), 0.25, {"selected_step": 3})
    return tmp_path / "d"


def _edit_config(folder, edit):
    import json
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))


def test_folder_written_before_the_choice_of_network_loads_as_an_hourglass(folder):
    _edit_config(folder, lambda c: [c["model"].pop("arch"), c["model"].pop("pretrained")])
    model, _ = det.load_detector(folder)
    assert model.cfg.arch == "hourglass" and type(model).__name__ == "StackedHourglass"


def test_saved_folder_loads_and_predicts_with_its_own_normalisation(folder, monkeypatch):
    model, config = det.load_detector(folder)
    assert config["margin"] == 0.25 and config["training"] == {"selected_step": 3}
    _edit_config(folder, lambda c: c.update(mean=[10.0, 20.0, 30.0], std=[40.0, 50.0, 60.0]))
    seen = []
    real = det.to_tensor
    monkeypatch.setattr(det, "to_tensor", lambda images, mean=det.MEAN, std=det.STD: (
        seen.append((np.asarray(mean).tolist(), np.asarray(std).tolist())) or real(images, mean, std)))
    f = render_face(300, "photo", 64)
    p = det.Detector(folder).predict(f.image, cr.box_from_landmarks(f.landmarks, 0.0))
    assert p.landmarks.shape == (68, 2) and np.isfinite(p.landmarks).all()
    assert seen == [([10.0, 20.0, 30.0], [40.0, 50.0, 60.0])]


@pytest.mark.parametrize("edit, says", [
    (lambda c: c.update(colour="red"), "unknown keys ['colour']"),
    (lambda c: c.pop("std"), "missing keys ['std']"),
    (lambda c: c.update(margin="0.25"), "'margin' is '0.25', expected a float"),
    (lambda c: c.update(margin=5), "margin 5 outside [0.0, 1.0]"),
    (lambda c: c.update(margin=-0.1), "outside [0.0, 1.0]"),
    (lambda c: c.update(mean=[1, 2]), "'mean' is [1, 2], expected 3 numbers"),
    (lambda c: c.update(std=[1, 0, 1]), "'std' [1, 0, 1] must be positive"),
    (lambda c: c["model"].pop("depth"), "missing ['depth']"),
    (lambda c: c["model"].update(channels=16.5), "model.channels is 16.5, expected a positive int"),
    (lambda c: c["model"].update(heatmap_size=12), "input_size / heatmap_size"),
    (lambda c: c["model"].update(stacks=2), "does not fit the network"),
    (lambda c: c["model"].update(channels=8), "has shape (16,), the network of config.json expects (8,)"),
    (lambda c: c["model"].update(points=5), "model.points is 5; a detector predicts 68 (iBUG) or 257"),
    (lambda c: c["model"].update(arch="resnet"), "model.arch is 'resnet', expected one of ['hourglass', 'mobilenet', 'regression', 'transfer']"),
    (lambda c: c["model"].update(pretrained="yes"), "model.pretrained is 'yes', expected true or false"),
    (lambda c: c["model"].update(arch="mobilenet"), "mobilenet: input_size / heatmap_size must be 8, 16 or 32"),
])
def test_config_off_the_schema_is_one_clear_error(folder, edit, says):
    _edit_config(folder, edit)
    with pytest.raises(det.BadDetectorFolder) as exc:
        det.load_detector(folder)
    assert str(folder) in str(exc.value) and says in str(exc.value)


def test_unreadable_or_broken_weights_are_one_clear_error(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(det.BadDetectorFolder, match="config.json unreadable"):
        det.load_detector(folder)
    det.save_detector(folder, build_network(MCFG), 0.25)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:len(good) // 2])
    with pytest.raises(det.BadDetectorFolder, match="model.safetensors unreadable"):
        det.load_detector(folder)
    model = build_network(MCFG)
    with torch.no_grad():
        model.heads[0].bias[3] = float("nan")
    det.save_detector(folder, model, 0.25)
    with pytest.raises(det.BadDetectorFolder, match=r"heads\.0\.bias holds NaN"):
        det.load_detector(folder)
    weights.unlink()
    with pytest.raises(det.BadDetectorFolder, match="model.safetensors: missing") as exc:
        det.load_detector(folder)
    assert isinstance(exc.value, FileNotFoundError)


def test_evaluation_command_reports_a_bad_detector_folder(folder, tmp_path, capsys):
    from lib.evaluation import evaluate as ev
    _edit_config(folder, lambda c: c.update(margin=3))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    ds.save_image(imgs / "a.jpg", render_face(7, "photo", 128).image)
    for mode in ("test", "predict"):
        rc = ev.main(["--images", str(imgs), "--predictor", str(folder), "--out", str(tmp_path / "o"), "--mode", mode])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"error: {folder}: config.json: margin 3") and "Traceback" not in err


def test_test_time_flip_averages_the_crop_and_its_mirror_image(folder):
    from lib.core import landmarks as lm
    model, _ = det.load_detector(folder)
    crops = np.stack([render_face(s, "photo", 32).image for s in (1, 2, 3)])
    plain = det.predict_crops(model, crops)
    mirrored = det.predict_crops(model, np.ascontiguousarray(crops[:, :, ::-1]))
    expected = (plain + np.stack([lm.flip_landmarks(q, 32) for q in mirrored])) / 2
    np.testing.assert_allclose(det.predict_crops(model, crops, batch_size=2, flip=True), expected, atol=1e-4)
    f = render_face(300, "photo", 64)
    box = cr.box_from_landmarks(f.landmarks, 0.0)
    a, b = det.Detector(folder).predict(f.image, box), det.Detector(folder, flip=True).predict(f.image, box)
    assert a.landmarks.shape == b.landmarks.shape == (68, 2) and not np.allclose(a.landmarks, b.landmarks)


def test_refine_reads_the_upright_crop_the_first_pass_frames(folder, monkeypatch):
    """An oracle network that knows the true landmarks but errs by its crop's tilt (0.05
    crop pixels per degree, along x): the second pass sees the face upright, so it is exact."""
    from lib.core import landmarks as lm
    f = render_face(301, "photo", 128)
    import cv2
    turn = cv2.getRotationMatrix2D((64.0, 64.0), -25.0, 1.0)  # clockwise on screen: eye_angle reads about +25
    image = cv2.warpAffine(f.image, turn, (128, 128), borderValue=(127, 127, 127))
    truth = cr.apply(turn, f.landmarks)
    crops = []  # the true landmarks in each crop read
    real_crop = cr.crop

    def recording_crop(img, box, size, points=None, **kw):
        out, m, _ = real_crop(img, box, size, **kw)
        crops.append(cr.apply(m, truth))
        return out, m, None

    def oracle(graph, images, **kw):
        q = crops[-1]
        return (q + [0.05 * float(lm.eye_angle(q)), 0.0])[None]

    monkeypatch.setattr(det.cr, "crop", recording_crop)
    monkeypatch.setattr(det, "predict_crops", oracle)
    box = cr.box_from_landmarks(truth, 0.0)
    plain = det.Detector(folder).predict(image, box).landmarks
    assert len(crops) == 1
    refined = det.Detector(folder, refine=True).predict(image, box).landmarks
    assert len(crops) == 3
    upright = crops[-1]
    assert abs(float(lm.eye_angle(upright))) < 1e-6  # the second crop levels the eyes
    # and frames the landmarks as training frames them (their box grown by the margin, 0.25 here)
    np.testing.assert_allclose(np.ptp(upright, axis=0).max() * 1.5, MCFG.input_size, rtol=1e-6)
    err = lambda p: float(np.linalg.norm(p - truth, axis=1).mean())
    assert err(plain) > 0.5 and err(refined) < 1e-6


@pytest.mark.parametrize("cfg", INFERENCE_CASES, ids=lambda c: f"{c.arch}-{c.backbone}")
def test_landmark_graph_gives_the_eager_landmarks_bit_for_bit(cfg):
    torch.manual_seed(0)
    model = build_network(cfg)
    for m in model.modules():  # batch norms that do something
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fast = for_inference(model)
    graph = det.LandmarkGraph(fast)
    for n in (1, 3, 1):  # a graph per input shape, made on its first batch and reused
        crops = np.random.default_rng(n).integers(0, 256, (n, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
        eager = det.predict_crops(fast, crops, channels_last=True)
        traced = det.predict_crops(graph, crops, channels_last=True)
        assert eager.shape == (n, cfg.points, 2) and np.array_equal(traced, eager)
    assert len(graph._graphs) == 2


def test_detector_predicts_through_its_landmark_graph(folder):
    f = render_face(301, "photo", 64)
    box = cr.box_from_landmarks(f.landmarks, 0.0)
    detector = det.Detector(folder)
    got = detector.predict(f.image, box).landmarks
    assert len(detector.graph._graphs) == 1
    detector.graph = detector.model  # the same folded copy, run layer by layer
    assert np.array_equal(detector.predict(f.image, box).landmarks, got)


def test_a_detector_of_another_point_count_is_refused_on_load_naming_the_folder(tmp_path, capsys):
    """Issue 51, item 12: a folder whose network and weights agree on 5 points loaded, then failed at
    prediction without naming the folder; the config check now checks ``points``."""
    from dataclasses import replace

    from lib.evaluation import evaluate as ev
    folder = tmp_path / "five"
    det.save_detector(folder, build_network(replace(MCFG, points=5)), 0.25)
    with pytest.raises(det.BadDetectorFolder, match=r"five: config\.json: model\.points is 5"):
        det.load_detector(folder)
    images = tmp_path / "imgs"
    ds.save_image(images / "0.jpg", render_face(0, "photo", 96).image)
    assert ev.main(["--images", str(images), "--predictor", str(folder), "--out", str(tmp_path / "o"),
                    "--mode", "predict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(folder) in err and "model.points is 5" in err and "Traceback" not in err
