import itertools

import cv2
import numpy as np
import pandas as pd
import pytest

from lib.core.predictor import Prediction, Predictor
from lib.generator import autoencoder as ae
from lib.data import datasets as ds
from lib.generator import components, sampling
from lib.generator import edits
from lib.generator import styles as st
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
    sampling.save_generator(tmp_path / "gen", components.build_components(model, tmp_path / "ae"))
    pipe = sampling.load_generator(tmp_path / "gen")
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


def test_restyle_keeps_landmarks_and_geometric_and_shape_transfer_move_them(tmp_path):
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
    shapes = np.array([render_face(9, "caricature", 64).landmarks])  # a domain's few real faces
    rows = syn.restyle(samples, ["cartoon"], 2, tmp_path / "shapes", domain_shapes=shapes, strength=(1.0, 1.0))
    out = {s.meta["image"]: s for s in ds.read_dataset(tmp_path / "shapes", "synthetic")}
    assert all(r["edits"] == "tps_shape_transfer" for r in rows)
    for r in rows:
        moved = out[r["image"]].landmarks
        assert not np.allclose(moved, src[r["source"]].landmarks, atol=0.5)
        assert np.abs(moved - st._align_similarity(shapes[0], moved)).max() < 0.05  # the domain face's shape
    with pytest.raises(ValueError, match="not both"):
        syn.restyle(samples, ["cartoon"], 2, tmp_path / "both", mean_shape=mean, domain_shapes=shapes)


def _concat_generator(tmp_path, images, names):
    """Untrained concat generators (one per name, each from its own seed) over a 1-step autoencoder."""
    import torch
    ae.train(images, np.zeros((0, RES, RES, 3), np.uint8), {"block_out_channels": [8, 16, 16], "norm_num_groups": 8,
                                                            "resolution": RES},
             ae.AutoencoderTrainConfig(steps=1, batch_size=4, threads=1), tmp_path / "ae", progress=False)
    model = {"resolution": RES, "max_prompt_tokens": 8, "conditioning": "concat",
             "unet": {"block_out_channels": [16, 32], "norm_num_groups": 8, "attention_head_dim": 8}}
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        sampling.save_generator(tmp_path / name, components.build_components(model, tmp_path / "ae"))


def test_plan_draws_from_the_named_edits_with_exaggeration(train_points):
    items = syn.plan(train_points, ["photo"], 12, RES, seed=1, edits=["chubby", "open_eyes", "exaggeration"])
    used = {n for r in items for n in r["edits"].split("+")}
    assert used <= {"chubby", "open_eyes", "exaggeration"} and "exaggeration" in used
    # the default is the paper's seven, and the same plan as before the option existed
    default = syn.plan(train_points, ["photo"], 4, RES, seed=1)
    named = syn.plan(train_points, ["photo"], 4, RES, seed=1, edits=list(edits.EDITS))
    assert all(np.array_equal(a["points"], b["points"]) for a, b in zip(default, named))
    with pytest.raises(ValueError, match="unknown edit"):
        syn.plan(train_points, ["photo"], 1, RES, edits=["smile"])


def test_warp_first_synthesis_starts_from_the_warped_source_face(tmp_path, train_points):
    faces = [render_face(i, "photo", RES) for i in range(5)]
    images = np.array([f.image for f in faces])
    _concat_generator(tmp_path, images, ["gen"])
    pipe = sampling.load_generator(tmp_path / "gen")
    items = syn.plan(train_points, ["photo"], 3, RES)
    warped = syn.warped_sources(items, images, train_points)
    assert warped.shape == (3, RES, RES, 3)
    # the warp moves the source face's content to the edited landmarks
    it = items[0]
    again = edits.fit_in_image(it["points"], RES)
    assert np.allclose(again, it["points"]) and not np.array_equal(warped[0], images[it["source"]])
    rows = syn.synthesise(pipe, items, tmp_path / "set", RES, steps=4, guidance=1.0, progress=False, mode="warp",
                          sources=(images, train_points), strength=0.5)
    assert {r["mode"] for r in rows} == {"warp@0.5"}
    assert set(pd.read_csv(tmp_path / "set" / "manifest.csv")["mode"]) == {"warp@0.5"}
    with pytest.raises(ValueError, match="source training faces"):
        syn.synthesise(pipe, items, tmp_path / "other", RES, steps=2, guidance=1.0, progress=False, mode="warp")
    with pytest.raises(ValueError, match="synthesis mode"):
        syn.synthesise(pipe, items, tmp_path / "other", RES, steps=2, guidance=1.0, progress=False, mode="paint")


class _DotReader(Predictor):
    """Reads landmark i as the centroid of the pixels near its colour (the test images draw each point as a dot)."""

    def predict(self, image, gt_box=None):
        ys, xs = np.nonzero(image.sum(-1) > 100)  # the dots; the background is black
        dist = np.linalg.norm(image[ys, xs].astype(np.float64)[:, None] - np.stack([_dot_colour(i) for i in range(68)]),
                              axis=-1)
        out = np.zeros((68, 2))
        for i in range(68):
            near = dist[:, i] < 10
            out[i] = (xs[near].mean(), ys[near].mean()) if near.any() else (0.0, 0.0)
        return Prediction(out, "landmarks")


def _dot_colour(i):
    return np.array([30 + 25 * (i % 9), 30 + 25 * (i // 9), 200.0])


def test_edit_control_reads_real_faces_and_the_same_faces_warped_onto_their_edits():
    size = 384
    # faces whose 68 dots do not touch (closed eyes or lips put two points on one pixel)
    faces = (render_face(seed, "photo", size // 4).landmarks * 4 + 1.5 for seed in range(100))
    apart = (p for p in faces if np.sort(np.linalg.norm(p[:, None] - p[None], axis=-1), axis=1)[:, 1].min() > 4)
    points = np.array(list(itertools.islice(apart, 3)))
    images = np.zeros((3, size, size, 3), np.uint8)
    for k, pts in enumerate(points):
        for i, (x, y) in enumerate(pts):
            cv2.circle(images[k], (int(round(x)), int(round(y))), 2, _dot_colour(i).tolist(), -1)
    edited = np.stack([edits.random_edits(p, np.random.default_rng(k), size, 2)[0] for k, p in enumerate(points)])
    assert np.abs(edited - points).max() > 3  # the edits move points by several pixels
    plain, warped = syn.edit_control(_DotReader(), images, points, edited)
    assert plain.shape == warped.shape == (3,)
    # the dots move with the warp: read against the edited landmarks they stay close, as the real ones do
    assert plain.max() < 1.5 and warped.max() < 2.5
    moved_away = syn.edit_control(_DotReader(), images, edited, points)[0]  # unwarped faces against the edits
    assert moved_away.min() > 2 * warped.max()
    same = syn.edit_control(_DotReader(), images, points, points)
    np.testing.assert_allclose(same[0], same[1], atol=0.5)  # no edit: the warp changes nothing that matters
    # by default it draws the edits itself, as synthesis does, the same for the same seed
    drawn = syn.edit_control(_DotReader(), images, points, k=2, seed=5)
    np.testing.assert_array_equal(drawn[0], plain)
    np.testing.assert_array_equal(drawn[1], syn.edit_control(_DotReader(), images, points, k=2, seed=5)[1])
    assert drawn[1].max() < 2.5 and not np.array_equal(drawn[1], warped)
    with pytest.raises(ValueError, match="edited sets"):
        syn.edit_control(_DotReader(), images, points, edited[:2])


def test_choose_strength_takes_the_largest_that_keeps_the_labels():
    table = pd.DataFrame({"strength": [0.0, 0.2, 0.4, 0.6, 0.8], "alignment_nme": [4.0, 4.5, 5.5, 7.0, 9.0],
                          "style_accuracy": [10, 20, 30, 40, 50]})
    assert syn.choose_strength(table, 4.0, 1.5) == 0.4  # 5.5 <= 6.0 < 7.0
    assert syn.choose_strength(table, 4.0, 3.0) == 0.8
    assert syn.choose_strength(table, 1.0, 1.5) == 0.2  # none qualifies: the smallest


class _ShiftedJudge:
    """A landmark judge that finds `points`, shifted by one pixel, in every image."""
    def __init__(self, points):
        self.points = np.asarray(points)

    def predict(self, image, box):
        from lib.core.predictor import Prediction
        return Prediction(self.points + 1.0, "landmarks")


class _OneStyle:
    """A style judge that sees `style` in every image."""
    def __init__(self, style):
        self.style = style

    def predict(self, images):
        return [self.style] * len(images)


def test_strength_sweep_scores_each_strength_on_validation_items(tmp_path, train_points):
    faces = [render_face(i, "photo", RES) for i in range(5)]
    images = np.array([f.image for f in faces])
    _concat_generator(tmp_path, images, ["gen"])
    items = syn.sweep_items(train_points, ["photo", "cartoon"], 4, RES, seed=0)
    assert [it["style"] for it in items] == ["photo", "cartoon"] * 2 and len({it["seed"] for it in items}) == 4
    table, drawn = syn.strength_sweep(sampling.load_generator(tmp_path / "gen"), items[:1], images, train_points,
                                      [0.5, 1.0], _ShiftedJudge(items[0]["points"]), _OneStyle("photo"), RES,
                                      steps=2, guidance=1.0)
    assert list(table["strength"]) == [0.0, 0.5, 1.0] and set(drawn) == {0.0, 0.5, 1.0}
    assert table["style_accuracy"].tolist() == [100.0] * 3  # item 0 asks for photo
    assert np.allclose(table["alignment_nme"], table["alignment_nme"].iloc[0]) and table["alignment_nme"].iloc[0] > 0
    assert drawn[0.0].shape == (1, RES, RES, 3)


def test_choose_guidance_takes_the_most_style_the_labels_allow():
    table = pd.DataFrame({"guidance": [1.0, 3.0, 5.0, 7.5], "alignment_nme": [6.0, 6.3, 6.9, 9.0],
                          "style_accuracy": [10.0, 30.0, 40.0, 60.0]})
    assert syn.choose_guidance(table, 3.3, 2.0) == 3.0  # 6.3 <= 6.6 < 6.9
    assert syn.choose_guidance(table, 3.5, 2.0) == 5.0
    assert syn.choose_guidance(table, 3.0, 3.0) == 7.5
    tied = table.assign(style_accuracy=[10.0, 30.0, 30.0, 30.0])
    assert syn.choose_guidance(tied, 3.0, 3.0) == 3.0  # a tie goes to the smaller scale
    assert syn.choose_guidance(table, 1.0, 2.0) == 1.0  # none within the bound: the best-aligned scale


def test_guidance_sweep_draws_the_same_items_at_each_scale(tmp_path, train_points):
    _concat_generator(tmp_path, np.array([render_face(i, "photo", RES).image for i in range(4)]), ["gen"])
    items = syn.sweep_items(train_points, ["photo", "cartoon"], 2, RES, seed=0)
    table, drawn = syn.guidance_sweep(sampling.load_generator(tmp_path / "gen"), items, [1.0, 4.0],
                                      _ShiftedJudge(items[0]["points"]), _OneStyle("cartoon"), RES, steps=2)
    assert table["guidance"].tolist() == [1.0, 4.0] and table["faces"].tolist() == [2, 2]
    assert table["style_accuracy"].tolist() == [50.0, 50.0]  # item 1 asks for cartoon
    assert set(drawn) == {1.0, 4.0} and drawn[1.0].shape == (2, RES, RES, 3)
    assert not np.array_equal(drawn[1.0], drawn[4.0])  # the scale reaches the sampler


def test_a_set_drawn_by_another_generator_is_set_aside_not_resumed(tmp_path, train_points):
    _concat_generator(tmp_path, np.array([render_face(i, "photo", RES).image for i in range(4)]), ["a", "b"])
    items = syn.plan(train_points, ["photo"], 2, RES)
    first, second = (tmp_path / "set" / it["image"] for it in items)
    syn.synthesise(sampling.load_generator(tmp_path / "a"), items, tmp_path / "set", RES, 2, 1.0, progress=False)
    stamp = first.stat().st_mtime_ns
    second.unlink()  # as if interrupted before the second face
    # the same generator and plan: the set resumes (the drawn face is kept, the missing one drawn)
    syn.synthesise(sampling.load_generator(tmp_path / "a"), items, tmp_path / "set", RES, 2, 1.0, progress=False)
    assert first.stat().st_mtime_ns == stamp and second.exists()
    # another generator: the old set is moved aside and the faces are drawn anew
    syn.synthesise(sampling.load_generator(tmp_path / "b"), items, tmp_path / "set", RES, 2, 1.0, progress=False)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("set.stale-")]
    assert len(aside) == 1 and (aside[0] / items[0]["image"]).exists()
    assert first.exists() and first.stat().st_mtime_ns != stamp


def test_the_sampler_precision_is_part_of_a_sets_fingerprint(tmp_path, train_points):
    _concat_generator(tmp_path, np.array([render_face(i, "photo", RES).image for i in range(4)]), ["gen"])
    pipe, items = sampling.load_generator(tmp_path / "gen"), syn.plan(train_points, ["photo"], 2, RES)
    plain = syn.set_fingerprint(pipe, items, RES, 2, 1.0, "noise")
    assert syn.set_fingerprint(pipe, items, RES, 2, 1.0, "noise", "no") == plain  # float32 sets keep their fingerprint
    assert syn.set_fingerprint(pipe, items, RES, 2, 1.0, "noise", "bf16") != plain
