import json

import numpy as np
import pandas as pd
import pytest

from lib.data import datasets as ds
from lib.evaluation import evaluate as ev
from lib.data.procedural import render_face
from tests.conftest import DATA_ROOT


@pytest.fixture
def caricature_folder(tmp_path):
    """Procedural caricatures in the Alive Caricature layout (N.jpg + N.txt)."""
    folder = tmp_path / "cari"
    folder.mkdir()
    for i in range(4):
        f = render_face(i, "caricature", 160)
        ds.save_image(folder / f"{i + 1}.jpg", f.image)
        np.savetxt(folder / f"{i + 1}.txt", f.landmarks, fmt="%.3f")
    return folder


def test_test_mode_writes_metrics_and_per_image(caricature_folder, tmp_path, capsys):
    train = tmp_path / "train"
    train.mkdir()
    for i in range(3):
        f = render_face(50 + i, "photo", 128)
        ds.save_image(train / f"{i}.jpg", f.image)
        ds.write_pts(train / f"{i}.pts", f.landmarks)
    out = tmp_path / "out"
    rc = ev.main(["--images", str(caricature_folder), "--predictor", "mean_shape", "--mean-from", str(train),
                  "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "NME=" in printed and "FR@10%=" in printed and "AUC@10%=" in printed
    m = json.loads((out / "metrics.json").read_text())
    per = pd.read_csv(out / "per_image.csv")
    assert m["n"] == len(per) == 4
    assert m["nme"] == pytest.approx(per["nme_inter_ocular"].mean() * 100)


def test_predict_mode_writes_pts_and_drawings(caricature_folder, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        ds.save_image(imgs / f"{i}.jpg", render_face(i, "photo", 256).image)
    rc = ev.main(["--images", str(imgs), "--predictor", "dlib", "--out", str(tmp_path / "o"), "--mode", "predict"])
    assert rc == 0
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert "0.pts" in written and "0_landmarks.jpg" in written
    assert ds.read_pts(tmp_path / "o" / "0.pts").shape == (68, 2)


def test_clear_errors(tmp_path, capsys):
    assert ev.main(["--images", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert ev.main(["--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    mism = tmp_path / "mism"
    mism.mkdir()
    ds.save_image(mism / "a.jpg", render_face(0, "photo", 96).image)
    (mism / "b.txt").write_text("1 2\n")
    assert ev.main(["--images", str(mism), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "none has a usable landmark file" in err and "a.jpg" in err


def test_markdown_table_is_wide():
    t = pd.DataFrame([
        {"method": "m", "test_set": "a", "n": 1, "nme": 1.0, "fr_10": 0.0, "auc_10": 0.9, "box": "landmarks"},
        {"method": "m", "test_set": "b", "n": 1, "nme": 2.0, "fr_10": 0.0, "auc_10": 0.8, "box": "landmarks"},
    ])
    md = ev.markdown_table(t)
    assert md.splitlines()[2] == "| m | 1.00 | 0.00 | 0.9000 | 2.00 | 0.00 | 0.8000 | landmarks |"


@pytest.mark.real_data
def test_cli_on_real_caricatures(tmp_path, capsys):
    assert ev.main(["--images", str(DATA_ROOT / "caricature"), "--predictor", "dlib", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n"] == 30 and 5 < m["nme"] < 25


