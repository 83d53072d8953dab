import numpy as np
import pandas as pd
import pytest

from lib.generator import autoencoder as ae
from lib.data import datasets as ds
from lib.generator import diffusion as dm
from lib.generator import edits
from lib.generator import synthesis as syn
from lib.data.procedural import render_face

RES = 32


@pytest.fixture(scope="module")
def train_points():
    return np.array([render_face(i, "photo", RES).landmarks for i in range(5)])


def test_plan_is_deterministic_edited_and_inside_the_image(train_points):
    a = syn.plan(train_points, ["photo", "ink drawing"], 3, RES, seed=4)
    b = syn.plan(train_points, ["photo", "ink drawing"], 3, RES, seed=4)
    c = syn.plan(train_points, ["photo", "ink drawing"], 3, RES, seed=5)
    assert len(a) == 6 and [r["style"] for r in a] == ["photo"] * 3 + ["ink drawing"] * 3
    assert all(np.array_equal(x["points"], y["points"]) and x["edits"] == y["edits"] for x, y in zip(a, b))
    assert any(not np.array_equal(x["points"], y["points"]) for x, y in zip(a, c))
    for r in a:
        names = r["edits"].split("+")
        assert len(names) == 2 and len(set(names)) == 2 and set(names) <= set(edits.EDITS)
        assert not np.allclose(r["points"], train_points[r["source"]])
        assert r["points"].min() >= 0 and r["points"].max() <= RES - 1
        assert r["prompt"] == f"a portrait of {r['style']} style"
    assert len({r["seed"] for r in a}) == 6 and a[0]["image"] == "photo/000000.jpg"
    with pytest.raises(ValueError):
        syn.plan(train_points[:0], ["photo"], 1, RES)


def test_synthesise_writes_300w_layout_with_manifest_and_resumes(tmp_path, train_points):
    ae.train(np.array([render_face(i, "photo", RES).image for i in range(4)]), np.zeros((0, RES, RES, 3), np.uint8),
             {"block_out_channels": [8, 16, 16], "norm_num_groups": 8, "resolution": RES},
             ae.AutoencoderTrainConfig(steps=1, batch_size=4, threads=1), tmp_path / "ae", progress=False)
    model = {"resolution": RES, "max_prompt_tokens": 8,
             "unet": {"block_out_channels": [16, 32], "norm_num_groups": 8, "attention_head_dim": 8}}
    dm.save_generator(tmp_path / "gen", dm.build_components(model, tmp_path / "ae"))
    pipe = dm.load_generator(tmp_path / "gen")
    items = syn.plan(train_points, ["photo", "pop art"], 2, RES)
    rows = syn.synthesise(pipe, items, tmp_path / "set", RES, steps=2, guidance=2.0, batch_size=3, progress=False)
    assert len(rows) == 4
    samples = ds.read_dataset(tmp_path / "set")  # detected as the synthetic layout
    assert len(samples) == 4 and {s.meta["style"] for s in samples} == {"photo", "pop art"}
    for s, it in zip(sorted(samples, key=lambda s: s.image_path), items):
        assert np.allclose(s.landmarks, it["points"], atol=1e-3) and s.meta["edits"] == it["edits"]
    manifest = pd.read_csv(tmp_path / "set" / "manifest.csv")
    assert list(manifest.columns) == syn.MANIFEST_FIELDS
    # a damaged file is drawn again, the others are kept as they are
    first = tmp_path / "set" / items[0]["image"]
    first.unlink()
    kept = (tmp_path / "set" / items[1]["image"]).stat().st_mtime_ns
    syn.synthesise(pipe, items, tmp_path / "set", RES, steps=2, guidance=2.0, progress=False)
    assert first.exists() and (tmp_path / "set" / items[1]["image"]).stat().st_mtime_ns == kept
    grid = syn.style_grid(tmp_path / "set", [r for r in rows if r["style"] == "photo"], per_row=4)
    assert grid.shape == (2 * RES, 4 * 2 * RES, 3)


def test_restyle_keeps_landmarks_and_geometric_transfer_moves_them(tmp_path):
    faces = [render_face(i, "photo", 64) for i in range(3)]
    samples = []
    for i, f in enumerate(faces):
        ds.save_image(tmp_path / "src" / f"{i}.jpg", f.image)
        ds.write_pts(tmp_path / "src" / f"{i}.pts", f.landmarks)
    samples = ds.read_dataset(tmp_path / "src", "300w")
    rows = syn.restyle(samples, ["photo", "cartoon"], 2, tmp_path / "plain")
    out = {s.meta["image"]: s for s in ds.read_dataset(tmp_path / "plain", "synthetic")}
    assert len(out) == 4
    src = {s.name: s for s in samples}
    for r in rows:
        assert np.allclose(out[r["image"]].landmarks, src[r["source"]].landmarks, atol=1e-3)
    mean = np.mean([s.landmarks for s in samples], axis=0)
    rows = syn.restyle(samples, ["cartoon"], 2, tmp_path / "foa", mean_shape=mean)
    out = {s.meta["image"]: s for s in ds.read_dataset(tmp_path / "foa", "synthetic")}
    assert all(r["edits"] == "tps_exaggeration" for r in rows)
    assert all(not np.allclose(out[r["image"]].landmarks, src[r["source"]].landmarks, atol=0.5) for r in rows)
