import json

import cv2
import numpy as np
import pytest

from lib.data import data_prep as dp
from lib.data import datasets as ds
from lib.data.procedural import render_face
from tests.conftest import DATA_ROOT

SMOKE = {"root": None, "redistributable": True, "crop_size": 48, "margin": 0.25, "val_fraction": 0.2,
         "procedural": {"size": 96, "seed": 0, "train": 10, "test": 3, "fewshot": 2, "domains": ["sketch"]}}


def test_validation_rule_is_fixed():
    ids = [f"face_{i}" for i in range(2000)]
    val = [i for i in ids if dp.is_validation(i, 0.1)]
    assert val == [i for i in ids if dp.is_validation(i, 0.1)]
    assert 150 < len(val) < 250


def test_holdout_seed_draws_another_part_of_the_same_size():
    from pathlib import Path
    samples = [ds.Sample(Path(f"s/{i}.jpg"), np.zeros((68, 2))) for i in range(3000)]
    parts = {seed: {s.image_path.name for s in dp.holdout(samples, 0.1, seed)[1]} for seed in (0, 1, 2)}
    assert parts[0] == {s.image_path.name for s in samples if dp.is_validation(s.image_path.name, 0.1)}
    assert all(240 < len(p) < 360 for p in parts.values())
    assert len(parts[0] & parts[1]) < 0.3 * len(parts[0]) and len(parts[1] & parts[2]) < 0.3 * len(parts[1])
    kept, held = dp.holdout(samples, 0.1, 1)
    assert len(kept) + len(held) == len(samples) and parts[1] == {s.image_path.name for s in held}


def test_fewshot_rule_takes_every_second_face():
    samples = [ds.Sample(__import__("pathlib").Path(f"{n}.jpg"), np.zeros((68, 2))) for n in range(1, 21)]
    src = {"path": "caricature", "split": "test_caricature", "domain": "caricature", "fewshot": 10}
    splits = {s.name: sp for s, sp, _ in dp._assign(samples, src, 0.1)}
    assert [n for n, sp in splits.items() if sp == "fewshot_caricature"] == [str(n) for n in range(2, 21, 2)]


def test_domain_validation_rule_takes_evenly_spaced_faces_few_shot_left():
    samples = [ds.Sample(__import__("pathlib").Path(f"{n}.jpg"), np.zeros((68, 2))) for n in range(1, 31)]
    src = {"path": "caricature", "split": "test_caricature", "domain": "caricature", "fewshot": 10, "val": 5}
    splits = {s.name: sp for s, sp, _ in dp._assign(samples, src, 0.1)}
    fewshot = [n for n, sp in splits.items() if sp == "fewshot_caricature"]
    assert fewshot == [str(n) for n in range(3, 31, 3)]  # unchanged by the val rule
    left = [n for n in splits if n not in fewshot]  # 20 faces: every fourth goes to validation
    assert [n for n, sp in splits.items() if sp == "val_caricature"] == left[3::4]
    assert sum(sp == "test_caricature" for sp in splits.values()) == 15
    with pytest.raises(ValueError, match="caricature: fewshot 10 \\+ val 25 faces asked of 30"):
        list(dp._assign(samples, {**src, "val": 25}, 0.1))


def test_procedural_profile(tmp_path):
    summary = dp.prepare(SMOKE, tmp_path)
    assert summary["skipped"] == 0
    assert summary["splits"]["train"] + summary["splits"].get("val", 0) == 10
    assert summary["splits"]["fewshot_sketch"] == 2 and summary["splits"]["test_sketch"] == 5
    crops = ds.read_dataset(tmp_path / "crops" / "test_photo")
    assert len(crops) == 3 and ds.load_image(crops[0].image_path).shape == (48, 48, 3)
    s = dp.load_split(tmp_path, "test_photo")[0]
    assert s.landmarks.shape == (68, 2) and s.meta["domain"] == "photo"


def test_bad_input_is_counted_and_good_work_kept(tmp_path):
    root = tmp_path / "root"
    folder = root / "faces"
    folder.mkdir(parents=True)
    for i in range(3):
        f = render_face(i, "photo", 96)
        ds.save_image(folder / f"ok{i}.jpg", f.image)
        ds.write_pts(folder / f"ok{i}.pts", f.landmarks)
    f = render_face(9, "photo", 96)
    gray = cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(folder / "gray.png"), gray)
    ds.write_pts(folder / "gray.pts", f.landmarks)
    cv2.imwrite(str(folder / "deep.png"), (f.image.astype(np.uint16) * 257)[..., ::-1])
    ds.write_pts(folder / "deep.pts", f.landmarks)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    ds.write_pts(folder / "corrupt.pts", f.landmarks)
    ds.save_image(folder / "outside.jpg", f.image)
    ds.write_pts(folder / "outside.pts", f.landmarks + 500)
    cfg = {"root": str(root), "crop_size": 32, "margin": 0.25, "val_fraction": 0.0,
           "sources": [{"path": "faces", "format": "300w", "split": "test_x"}, {"path": "gone", "format": "300w",
                                                                                 "split": "test_x"}]}
    summary = dp.prepare(cfg, tmp_path / "out", show_progress=False)
    assert summary["splits"]["test_x"] == 5  # 3 good + grayscale + 16-bit
    assert summary["skipped"] == 3
    text = "\n".join(summary["errors"])
    assert "corrupt.jpg: not a readable image" in text
    assert "outside.jpg: coordinates outside" in text
    assert "gone: source folder missing" in text
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["skipped"] == 3


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data root .* not found"):
        dp.prepare({"root": str(tmp_path / "nowhere"), "sources": []}, tmp_path / "o")


@pytest.mark.real_data
def test_real_caricature_split():
    cfg = {"root": str(DATA_ROOT), "crop_size": 32, "margin": 0.25, "val_fraction": 0.1,
           "sources": [{"path": "caricature", "format": "caricature", "split": "test_caricature",
                        "domain": "caricature", "fewshot": 10, "val": 5}]}
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        s = dp.prepare(cfg, d, show_progress=False)
    assert s["splits"] == {"fewshot_caricature": 10, "test_caricature": 15, "val_caricature": 5}


def test_same_stem_files_get_unique_ids(tmp_path):
    root = tmp_path / "root"
    folder = root / "faces"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    for i, name in enumerate(["x.jpg", "x.png", "y.jpg", "a/z.jpg", "b/z.jpg"]):
        f = render_face(i, "photo", 96)
        ds.save_image(folder / name, f.image)
        ds.write_pts((folder / name).with_suffix(".pts"), f.landmarks)
    cfg = {"root": str(root), "crop_size": 32, "margin": 0.25, "val_fraction": 0.0,
           "sources": [{"path": "faces", "format": "300w", "split": "test_x"}]}
    summary = dp.prepare(cfg, tmp_path / "out", show_progress=False)
    ids = [s.meta["id"] for s in dp.load_split(tmp_path / "out", "test_x")]
    assert sorted(ids) == ["faces_x.jpg", "faces_x.png", "faces_y", "faces_z.jpg"]
    assert len(list((tmp_path / "out" / "crops" / "test_x").glob("*.jpg"))) == 4
    assert summary["skipped"] == 1 and "b/z.jpg: id faces_z.jpg already used by" in summary["errors"][0]


def test_data_prep_and_evaluation_share_one_face_check(tmp_path):
    from lib.evaluation import evaluate as ev
    from lib.evaluation.predictors import MeanShape
    root = tmp_path / "root"
    folder = root / "faces"
    folder.mkdir(parents=True)
    f = render_face(0, "photo", 96)
    pts = f.landmarks.copy()
    pts[45] = pts[36]
    ds.save_image(folder / "eyes.jpg", f.image)
    ds.write_pts(folder / "eyes.pts", pts)
    cfg = {"root": str(root), "crop_size": 32, "margin": 0.25, "val_fraction": 0.0,
           "sources": [{"path": "faces", "format": "300w", "split": "test_x"}]}
    prep_errors = dp.prepare(cfg, tmp_path / "out", show_progress=False)["errors"]
    eval_errors = []
    ev.evaluate(MeanShape(np.zeros((68, 2))), ds.read_dataset(folder), errors=eval_errors)
    assert prep_errors == eval_errors and "eyes.jpg: inter-ocular distance 0.00 px" in eval_errors[0]


def test_data_prep_skips_implausible_faces_and_names_them(tmp_path):
    """Issue 51, items 3 and 4: eye corners 1.5 px apart in a normal face, and a point off the face that
    widened its own tolerance, were cropped; data prep now skips and names them, as evaluation does."""
    root = tmp_path / "root"
    folder = root / "faces"
    folder.mkdir(parents=True)
    f = render_face(0, "photo", 160)
    big = np.full((2000, 2000, 3), 127, np.uint8)  # the face in the corner of a large photo
    big[100:260, 100:260] = f.image
    ok = f.landmarks + 100
    eyes, far = ok.copy(), ok.copy()
    eyes[45] = eyes[36] + [1.5, 0.0]
    far[8] = [-180.0, 1900.0]  # 180 px left of the image, inside a tenth of the ~1,850 px box it widens
    for name, pts in (("ok", ok), ("eyes", eyes), ("far", far)):
        ds.save_image(folder / f"{name}.jpg", big)
        ds.write_pts(folder / f"{name}.pts", pts)
    cfg = {"root": str(root), "crop_size": 32, "margin": 0.25, "val_fraction": 0.0,
           "sources": [{"path": "faces", "format": "300w", "split": "test_x"}]}
    summary = dp.prepare(cfg, tmp_path / "out", show_progress=False)
    assert summary["splits"] == {"test_x": 1} and summary["skipped"] == 2
    text = "\n".join(summary["errors"])
    assert "eyes.jpg: inter-ocular distance 1.50 px" in text and "far.jpg: coordinates outside the 2000x2000 image" in text
