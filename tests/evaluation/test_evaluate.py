import json

import numpy as np
import pandas as pd
import pytest

from lib.data import datasets as ds
from lib.evaluation import evaluate as ev
from lib.data.procedural import render_face
from tests.conftest import DATA_ROOT, write_synthetic_set


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
    t["nme_ci_low"], t["nme_ci_high"], t["seeds"], t["nme_seed_sd"] = [0.5, 1.5], [1.5, 2.5], [3, 3], [0.1, 0.2]
    assert ev.markdown_table(t).splitlines()[2].startswith("| m | 1.00 [0.50, 1.50] ± 0.10 (3 seeds) | 0.00 |")


@pytest.mark.real_data
def test_cli_on_real_caricatures(tmp_path, capsys):
    assert ev.main(["--images", str(DATA_ROOT / "caricature"), "--predictor", "dlib", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n"] == 30 and 5 < m["nme"] < 25




# ------------------------------------------------------------------ issue 9: bad input on the command line

def _photos(folder, names, size=256):
    for i, name in enumerate(names):
        ds.save_image(folder / name, render_face(i, "photo", size).image)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_output_names_mirror_folders_and_keep_suffixes_of_shared_stems(tmp_path):
    root = tmp_path / "imgs"
    paths = [root / n for n in ("a/face.jpg", "face.jpg", "face.png", "face.jpg.png", "other.jpg")]
    names = {p.relative_to(root).as_posix(): n.as_posix() for p, n in ev.output_names(paths, root).items()}
    assert names == {"a/face.jpg": "a/face", "face.jpg": "face.jpg", "face.png": "face.png",
                     "face.jpg.png": "face.jpg.png", "other.jpg": "other"}


def test_predict_mode_loses_no_image(tmp_path, capsys):
    imgs, out = tmp_path / "imgs", tmp_path / "o"
    (imgs / "a").mkdir(parents=True)
    _photos(imgs, ["a/face.jpg", "face.jpg", "face.png"])
    assert ev.main(["--images", str(imgs), "--predictor", "dlib", "--out", str(out), "--mode", "predict"]) == 0
    assert _files(out) == ["a/face.pts", "a/face_landmarks.jpg", "face.jpg.pts", "face.jpg_landmarks.jpg",
                           "face.png.pts", "face.png_landmarks.jpg", ev.RECORD]
    assert "wrote landmarks of 3 images" in capsys.readouterr().out


def test_predict_mode_never_overwrites_without_overwrite(tmp_path, capsys):
    imgs, out = tmp_path / "imgs", tmp_path / "o"
    imgs.mkdir()
    _photos(imgs, ["0.jpg", "1.jpg"])
    args = ["--images", str(imgs), "--predictor", "dlib", "--out", str(out), "--mode", "predict"]
    assert ev.main(args) == 0
    (out / "0.pts").write_text("mine")
    capsys.readouterr()
    assert ev.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "exist already" in err and "--overwrite" in err
    assert (out / "0.pts").read_text() == "mine"
    assert ev.main(args + ["--overwrite"]) == 0
    assert ds.read_pts(out / "0.pts").shape == (68, 2)


def test_predict_mode_refuses_the_input_folder(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _photos(imgs, ["0.jpg"])
    for out in (imgs, imgs / "preds"):
        args = ["--images", str(imgs), "--predictor", "dlib", "--out", str(out), "--mode", "predict"]
        assert ev.main(args) == 2
        assert "inside it" in capsys.readouterr().err
        assert _files(imgs) == ["0.jpg"]
    # explicitly asked for: outputs beside the inputs, and a second run does not read them as inputs
    args = ["--images", str(imgs), "--predictor", "dlib", "--out", str(imgs), "--mode", "predict", "--overwrite"]
    assert ev.main(args) == 0
    assert ev.main(args) == 0
    assert _files(imgs) == ["0.jpg", "0.pts", "0_landmarks.jpg", ev.RECORD]
    assert "0_landmarks.jpg: an output of this command" in capsys.readouterr().err


def test_predict_mode_counts_and_fails_when_nothing_is_written(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    ds.save_image(imgs / "blank.jpg", np.full((120, 120, 3), 128, np.uint8))
    (imgs / "broken.png").write_bytes(b"not an image")
    args = ["--images", str(imgs), "--predictor", "dlib", "--out", str(tmp_path / "o"), "--mode", "predict"]
    assert ev.main(args) == 1
    captured = capsys.readouterr()
    assert "wrote landmarks of 0 images" in captured.out and "skipped 2" in captured.out
    assert "blank.jpg: no face found" in captured.err and "broken.png: not a readable image" in captured.err
    _photos(imgs, ["face.jpg"])
    assert ev.main(args) == 0
    assert "wrote landmarks of 1 images" in capsys.readouterr().out


def test_test_mode_skips_bad_faces_and_names_them(caricature_folder, tmp_path):
    f = render_face(9, "caricature", 160)
    bad = {"far.jpg": f.landmarks.copy(), "eyes.jpg": f.landmarks.copy()}
    bad["far.jpg"][3, 0] = 99999
    bad["eyes.jpg"][45] = bad["eyes.jpg"][36]
    for name, pts in bad.items():
        ds.save_image(caricature_folder / name, f.image)
        np.savetxt((caricature_folder / name).with_suffix(".txt"), pts)
    ds.save_image(caricature_folder / "tiny.jpg", f.image[:20, :20])
    np.savetxt(caricature_folder / "tiny.txt", f.landmarks / 10)
    out = tmp_path / "out"
    assert ev.main(["--images", str(caricature_folder), "--predictor", "dlib_box", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 4 and 0 < m["nme"] < 50
    skipped = "\n".join(m["skipped"])
    assert "far.jpg: coordinates outside the 160x160 image" in skipped
    assert "eyes.jpg: inter-ocular distance 0.00 px" in skipped
    assert "tiny.jpg: image 20x20 is smaller than 32x32" in skipped
    with pytest.raises(ds.BadInput, match=r"(eyes|far|tiny)\.jpg"):  # without an errors list, evaluate raises
        ev.evaluate(ev.pr.MeanShape(np.zeros((68, 2))), ds.read_dataset(caricature_folder, "caricature",
                                                                         errors=[]))


def test_out_is_checked_before_any_work(caricature_folder, tmp_path, capsys, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("work started before --out was checked")
    monkeypatch.setattr(ev, "_load_predictor", no_work)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, says in ((a_file, "an existing file"), (a_file / "sub", "is a file")):
        for mode in ("test", "predict"):
            assert ev.main(["--images", str(caricature_folder), "--out", str(out), "--mode", mode]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: --out") and says in err and "Traceback" not in err


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root may write anywhere")
def test_unwritable_out_is_refused(caricature_folder, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert ev.main(["--images", str(caricature_folder), "--out", str(locked / "o")]) == 2
    assert "not writable" in capsys.readouterr().err


class _FixedStyle:
    classes = ["photo", "cartoon"]

    def predict(self, images):
        return ["photo"] * len(images)



def test_alignment_reports_edited_and_matched_unedited_faces(tmp_path):
    from lib.data.procedural import render_face
    from lib.evaluation.predictors import MeanShape
    faces = [render_face(i, "photo", 64) for i in range(6)]
    names = [f"{st}/{i:06d}.jpg" for i, st in enumerate(["photo", "photo", "photo", "cartoon", "cartoon", "ink"])]
    styles = [n.split("/")[0] for n in names]
    write_synthetic_set(tmp_path / "edited", faces, names, styles)
    write_synthetic_set(tmp_path / "unedited", [render_face(i + 10, "photo", 64) for i in (0, 3)], [names[0], names[3]],
                   [styles[0], styles[3]])
    det = MeanShape.fit(np.array([f.landmarks for f in faces]))
    table = ev.alignment(det, _FixedStyle(), {"g": tmp_path / "edited"}, {"g": tmp_path / "unedited"})
    everything = table[table["style"] == "all"].iloc[0]
    per = ev.evaluate(det, ds.read_dataset(tmp_path / "edited", "synthetic")).per_image
    per_c = ev.evaluate(det, ds.read_dataset(tmp_path / "unedited", "synthetic")).per_image
    assert everything["n"] == 6 and everything["n_unedited"] == 2
    assert np.isclose(everything["alignment_nme"], per["nme_inter_ocular"].mean() * 100)
    assert np.isclose(everything["alignment_nme_unedited"], per_c["nme_inter_ocular"].mean() * 100)
    matched = per[per["image"].str.contains("000000|000003")]["nme_inter_ocular"].mean() * 100
    assert np.isclose(everything["alignment_nme_edited_matched"], matched)
    # style accuracy only over styles the classifier knows: 3 of 5 known faces are "photo"
    assert np.isclose(everything["style_accuracy"], 60.0)
    assert table.set_index("style").loc["ink", "n_unedited"] == 0
    # 95% bootstrap intervals over the faces around each figure; none for a style the classifier does not know
    from lib.evaluation.statistics import bootstrap_ci
    assert np.allclose([everything["alignment_nme_ci_low"], everything["alignment_nme_ci_high"]],
                       bootstrap_ci(per["nme_inter_ocular"].to_numpy() * 100))
    assert np.allclose([everything["style_accuracy_ci_low"], everything["style_accuracy_ci_high"]],
                       bootstrap_ci([100, 100, 100, 0, 0]))
    assert everything["style_accuracy_ci_low"] < 60 < everything["style_accuracy_ci_high"]
    by_style = table.set_index("style")
    assert by_style.loc["photo", "style_accuracy_ci_low"] == by_style.loc["photo", "style_accuracy_ci_high"] == 100
    assert np.isnan(by_style.loc["ink", "style_accuracy_ci_low"])



def test_style_confusion_gives_per_requested_style_the_shares_judged_as_each():
    faces = [np.zeros((8, 8, 3), np.uint8)] * 5
    table = ev.style_confusion(_FixedStyle(), faces, ["cartoon", "photo", "photo", "cartoon", "ink"])
    assert list(table.index) == ["photo", "cartoon"] and list(table.columns) == ["photo", "cartoon"]  # "ink" unknown
    assert table.loc["photo", "photo"] == 100.0 and table.loc["cartoon", "photo"] == 100.0
    assert table.loc["cartoon", "cartoon"] == 0.0  # a style never judged still has its column
    with pytest.raises(ValueError, match="no face of a style the classifier knows"):
        ev.style_confusion(_FixedStyle(), faces[:1], ["ink"])


# ------------------------------------------------------------------ issue 51: bad input, round two

def _face(folder, name, seed=0, size=160, points=None):
    f = render_face(seed, "photo", size)
    ds.save_image(folder / name, f.image)
    ds.write_pts((folder / name).with_suffix(".pts"), f.landmarks if points is None else points)
    return f


def test_predict_into_the_images_folder_never_replaces_ground_truth_or_a_users_image(tmp_path, capsys):
    """Item 1: --out the images folder with --overwrite replaced the ground-truth .pts files, uncounted and
    unnamed, and a user's own face_landmarks.jpg, taken for an output."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _face(imgs, "0.jpg", 0, 256)
    _photos(imgs, ["1.jpg"])
    ds.save_image(imgs / "1_landmarks.jpg", np.full((64, 64, 3), 200, np.uint8))  # the user's own picture
    before = {p: (imgs / p).read_bytes() for p in _files(imgs)}
    args = ["--images", str(imgs), "--predictor", "dlib", "--out", str(imgs), "--mode", "predict", "--overwrite"]
    assert ev.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "2 files there" in err and "were not written by this command" in err
    assert "0.pts" in err and "1_landmarks.jpg" in err and "never replaced" in err
    assert {p: (imgs / p).read_bytes() for p in _files(imgs)} == before  # nothing written, nothing replaced
    # elsewhere: the command's own outputs are recorded, and only they are replaced (with --overwrite)
    out = tmp_path / "o"
    assert ev.main(["--images", str(imgs), "--predictor", "dlib", "--out", str(out), "--mode", "predict"]) == 0
    # the user's grey picture has no face: its outputs were never written, so they are not recorded
    assert (out / ev.RECORD).read_text().splitlines()[1:] == ["0.pts", "0_landmarks.jpg", "1.pts", "1_landmarks.jpg"]
    assert ev.main(["--images", str(imgs), "--predictor", "dlib", "--out", str(out), "--mode", "predict",
                    "--overwrite"]) == 0
    (out / "1_landmarks.pts").write_text("mine")  # where an output would go, but not written by the command
    capsys.readouterr()
    assert ev.main(["--images", str(imgs), "--predictor", "dlib", "--out", str(out), "--mode", "predict",
                    "--overwrite"]) == 2
    assert "1 files there (landmark files)" in capsys.readouterr().err
    assert (out / "1_landmarks.pts").read_text() == "mine"


def test_test_mode_never_replaces_metrics_silently(caricature_folder, tmp_path, capsys):
    """Item 2: test mode replaced an existing metrics.json / per_image.csv without a word, also in the data folder."""
    for out in (tmp_path / "out", caricature_folder):
        args = ["--images", str(caricature_folder), "--predictor", "dlib_box", "--out", str(out)]
        assert ev.main(args) == 0
        first = (out / "metrics.json").read_text()
        (out / "metrics.json").write_text(first + " ")
        capsys.readouterr()
        assert ev.main(args) == 2
        err = capsys.readouterr().err
        assert "2 output files exist already" in err and "--overwrite" in err
        assert (out / "metrics.json").read_text() == first + " "
        assert ev.main(args + ["--overwrite"]) == 0 and (out / "metrics.json").read_text() == first
    # a metrics.json this command did not write is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text("{}")
    assert ev.main(["--images", str(caricature_folder), "--predictor", "dlib_box", "--out", str(mine),
                    "--overwrite"]) == 2
    assert "not written by this command" in capsys.readouterr().err and (mine / "metrics.json").read_text() == "{}"


def test_eye_corners_close_for_the_face_are_skipped_and_named(caricature_folder, tmp_path):
    """Item 3: outer eye corners 1.5 px apart in a normal-size face passed the flat 1 px check (NME ~95%)."""
    f = render_face(9, "caricature", 160)
    pts = f.landmarks.copy()
    pts[45] = pts[36] + [1.5, 0.0]
    ds.save_image(caricature_folder / "eyes.jpg", f.image)
    np.savetxt(caricature_folder / "eyes.txt", pts)
    out = tmp_path / "out"
    assert ev.main(["--images", str(caricature_folder), "--predictor", "dlib_box", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 4 and m["nme"] < 50
    assert any("eyes.jpg: inter-ocular distance 1.50 px" in e for e in m["skipped"])


def test_an_outlying_point_does_not_widen_its_own_tolerance(tmp_path):
    """Item 4: the out-of-image slack was a tenth of a box that includes the outlying point."""
    f = render_face(1, "photo", 160)
    big = np.full((2000, 2000, 3), 127, np.uint8)
    big[100:260, 100:260] = f.image
    pts = f.landmarks + 100
    pts[8] = [-180.0, 1900.0]  # the chin point ~1,800 px off: with it, the box's diagonal is ~1,850 px
    ds.save_image(tmp_path / "far.jpg", big)
    ds.write_pts(tmp_path / "far.pts", pts)
    errors = []
    assert ev.evaluate(ev.pr.MeanShape(np.zeros((68, 2))), ds.read_dataset(tmp_path), errors=errors).per_image.empty
    assert len(errors) == 1 and "far.jpg: coordinates outside the 2000x2000 image" in errors[0]


def test_a_photo_stored_turned_with_an_orientation_tag_is_read_upright(tmp_path):
    """Item 5: the EXIF orientation tag was ignored: no face found in predict mode, NME 16% instead of ~2%."""
    from PIL import Image
    upright, tagged = tmp_path / "upright", tmp_path / "tagged"
    upright.mkdir(), tagged.mkdir()
    f = render_face(4, "photo", 256)
    Image.fromarray(f.image).save(upright / "face.jpg", quality=98)
    ds.write_pts(upright / "face.pts", f.landmarks)
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn it 90 degrees clockwise to show it": stored turned counter-clockwise
    Image.fromarray(f.image).transpose(Image.Transpose.ROTATE_90).save(tagged / "face.jpg", quality=98, exif=exif)
    ds.write_pts(tagged / "face.pts", f.landmarks)  # annotated on the picture as seen
    nme = {}
    for folder in (upright, tagged):
        assert ev.main(["--images", str(folder), "--predictor", "dlib_box", "--out", str(tmp_path / f"o_{folder.name}")]) == 0
        nme[folder.name] = json.loads((tmp_path / f"o_{folder.name}" / "metrics.json").read_text())["nme"]
    assert nme["tagged"] == pytest.approx(nme["upright"], abs=0.5) and nme["upright"] < 10
    (tagged / "face.pts").unlink()
    out = tmp_path / "pred"
    assert ev.main(["--images", str(tagged), "--predictor", "dlib", "--out", str(out), "--mode", "predict"]) == 0
    got = ds.read_pts(out / "face.pts")
    assert np.abs(got - f.landmarks).mean() < 10  # found, and in the upright picture's coordinates


def test_a_full_disk_leaves_no_truncated_drawing_and_names_the_file(tmp_path, capsys, full_disk):
    """Item 9: a failed write left a truncated drawing behind and the error named no file."""
    imgs, out = tmp_path / "imgs", tmp_path / "o"
    imgs.mkdir()
    _photos(imgs, ["0.jpg"])
    full_disk(lambda path, mode: "_landmarks.jpg" in path)  # the drawing's temporary name included
    assert ev.main(["--images", str(imgs), "--predictor", "dlib", "--out", str(out), "--mode", "predict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err and str(out / "0_landmarks.jpg") in err
    assert _files(out) == ["0.pts", ev.RECORD]  # no drawing, no temporary file
    assert (out / ev.RECORD).read_text().splitlines()[1:] == ["0.pts"]
    assert ds.read_pts(out / "0.pts").shape == (68, 2)


def test_out_a_parent_of_images_writes_beside_them(tmp_path, capsys):
    """Item 10: --out a parent of --images wrote nothing and said the images were under --out."""
    imgs = tmp_path / "p" / "imgs"
    imgs.mkdir(parents=True)
    _photos(imgs, ["0.jpg"])
    assert ev.main(["--images", str(imgs), "--predictor", "dlib", "--out", str(tmp_path / "p"), "--mode", "predict"]) == 0
    captured = capsys.readouterr()
    assert "wrote landmarks of 1 images" in captured.out and "under --out" not in captured.err
    assert _files(tmp_path / "p") == ["0.pts", "0_landmarks.jpg", "imgs/0.jpg", ev.RECORD]


def test_mean_shape_without_usable_faces_is_a_clear_error(caricature_folder, tmp_path, capsys):
    """Item 11: --mean-from with no usable face gave numpy's 'axis 1 is out of bounds' and a raw warning;
    without --mean-from the exit code was 1, not the documented 2."""
    bad = tmp_path / "bad"
    bad.mkdir()
    ds.save_image(bad / "a.jpg", render_face(0, "photo", 96).image)
    (bad / "a.pts").write_text("version: 1\n{\nx y\n}\n")
    args = ["--images", str(caricature_folder), "--predictor", "mean_shape", "--out", str(tmp_path / "o")]
    assert ev.main(args + ["--mean-from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--mean-from" in err and "no usable annotated face" in err and "a.pts: non-numeric" in err
    assert "axis" not in err and "Warning" not in err
    assert ev.main(args) == 2
    assert "needs --mean-from" in capsys.readouterr().err


def test_minor_messages(tmp_path, capsys):
    """Item 13: a bad .pts listed twice, an orphan .pts never mentioned, an empty 'first problems:' for
    --format cariface on a 300-W folder, and 'no landmark box given' in predict mode."""
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(2):
        _face(folder, f"{i}.jpg", i)
    _photos(folder, ["bad.jpg"])
    (folder / "bad.pts").write_text("version: 1\n{\nx y\n}\n")
    ds.write_pts(folder / "orphan.pts", render_face(0, "photo", 160).landmarks)
    out = tmp_path / "o"
    assert ev.main(["--images", str(folder), "--predictor", "dlib_box", "--out", str(out)]) == 0
    skipped = json.loads((out / "metrics.json").read_text())["skipped"]
    assert sum("bad" in e for e in skipped) == 1 and any("bad.pts: non-numeric" in e for e in skipped)
    assert any("orphan.pts: landmark file without an image" in e for e in skipped)
    assert ev.main(["--images", str(folder), "--predictor", "dlib_box", "--out", str(tmp_path / "o2"),
                    "--format", "cariface"]) == 2
    err = capsys.readouterr().err
    assert "no test.txt or train.txt" in err and not err.rstrip().endswith("first problems:")
    blank = tmp_path / "blank"
    blank.mkdir()
    ds.save_image(blank / "blank.jpg", np.full((120, 120, 3), 128, np.uint8))
    assert ev.main(["--images", str(blank), "--predictor", "dlib", "--out", str(tmp_path / "o3"), "--mode", "predict"]) == 1
    err = capsys.readouterr().err
    assert "blank.jpg: no face found" in err and "landmark box" not in err
