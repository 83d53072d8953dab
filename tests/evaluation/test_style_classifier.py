"""Tests for lib.evaluation.style_classifier: the ImageNet backbone's answers, embeddings, the classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.evaluation import style_classifier as sc
from tests.conftest import write_synthetic_set
from lib.data.procedural import render_face

STYLES = ("photo", "sketch", "cartoon")
WINDOW_SCREEN, WINDOW_SHADE = 904, 905  # ImageNet-1k class indices


@pytest.fixture(scope="module")
def model() -> sc.MobileNetV2:
    return sc.load_mobilenet_v2()


@pytest.fixture(scope="module")
def style_data() -> dict:
    """Procedural faces in three styles: 8 per style to train, 8 other seeds per style held out."""
    def make(seeds):
        images = [render_face(s, st, 96).image for st in STYLES for s in seeds]
        return images, [st for st in STYLES for _ in seeds]
    train_x, train_y = make(range(8))
    test_x, test_y = make(range(100, 108))
    return dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)


@pytest.fixture(scope="module")
def fitted(style_data) -> sc.StyleClassifier:
    return sc.StyleClassifier().fit(style_data["train_x"], style_data["train_y"], seed=0)


def _blinds(size: int = 128, period: int = 16) -> np.ndarray:
    """Light horizontal slats on black: a venetian blind, which ImageNet calls 'window shade'."""
    img = np.zeros((size, size, 3), np.uint8)
    for y in range(0, size, period):
        img[y:y + period // 2] = 200
    return img


def test_imagenet_head_is_confident_and_sensible(model):
    x = torch.from_numpy(sc.preprocess(_blinds()))[None]
    with torch.inference_mode():
        logits = model(x)[0]
    assert torch.isfinite(logits).all()
    p = torch.softmax(logits, 0)
    entropy = float(-(p * p.clamp_min(1e-12).log()).sum())
    assert entropy < 0.5 * np.log(1000)  # far from flat (uniform would be log 1000 = 6.9)
    top2 = p.topk(2).indices.tolist()
    # a miswired port (skip connections, strides, BN) loses this; the real network says "window shade"
    assert top2[0] == WINDOW_SHADE and WINDOW_SCREEN in top2 and p.max() > 0.5


def test_untrained_network_is_flat_so_the_head_test_can_fail():
    x = torch.from_numpy(sc.preprocess(_blinds()))[None]
    with torch.inference_mode():
        p = torch.softmax(sc.MobileNetV2().eval()(x)[0], 0)
    assert p.max() < 0.05


def test_embed_any_sizes_and_batching():
    images = [render_face(1, "photo", 96).image, render_face(2, "sketch", 200).image[:, :150],
              np.full((64, 64, 3), 128, np.uint8)]
    feats = sc.embed(images)
    assert feats.shape == (3, sc.FEATURE_DIM) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and (feats >= 0).all()  # pooled ReLU6 outputs
    assert not np.allclose(feats[0], feats[1])
    np.testing.assert_allclose(sc.embed(images, batch_size=1), feats, rtol=1e-4, atol=1e-4)
    assert sc.embed(images[0]).shape == (1, sc.FEATURE_DIM)  # a single (H, W, 3) array
    assert sc.embed([]).shape == (0, sc.FEATURE_DIM)


def test_embed_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        sc.embed([np.zeros((32, 32, 3), np.float32)])


def test_classifier_separates_styles_on_held_out_faces(fitted, style_data):
    assert fitted.classes == sorted(STYLES)
    pred = fitted.predict(style_data["test_x"])
    assert set(pred) == set(STYLES)  # not collapsed onto one class
    acc = np.mean([p == t for p, t in zip(pred, style_data["test_y"])])
    assert acc >= 0.9
    proba = fitted.predict_proba(style_data["test_x"][:4])
    assert proba.shape == (4, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_save_load_round_trip(fitted, style_data, tmp_path):
    folder = fitted.save(tmp_path / "clf")
    assert (folder / sc.CLASSIFIER_FILE).is_file() and (folder / sc.CONFIG_FILE).is_file()
    loaded = sc.StyleClassifier.load(folder)
    assert loaded.classes == fitted.classes
    images = style_data["test_x"][::3]
    feats = sc.embed(images)
    assert np.array_equal(loaded.predict_proba_features(feats), fitted.predict_proba_features(feats))
    assert loaded.predict(images) == fitted.predict(images)
    assert loaded.accuracy(images, style_data["test_y"][::3]) == fitted.accuracy(
        images, style_data["test_y"][::3])


def test_fit_is_deterministic_and_labels_can_be_any_strings(rng):
    feats = np.concatenate([rng.normal(0, 1, (10, sc.FEATURE_DIM)),
                            rng.normal(0.5, 1, (10, sc.FEATURE_DIM))]).astype(np.float32)
    labels = ["油画 / oil, 1890"] * 10 + ['a "quoted" style'] * 10
    a = sc.StyleClassifier().fit_features(feats, labels, seed=3)
    b = sc.StyleClassifier().fit_features(feats, labels, seed=3)
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    assert a.classes == sorted(set(labels))
    assert a.predict_features(feats) == labels


def test_unicode_classes_survive_save_load(rng, tmp_path):
    feats = rng.normal(0, 1, (6, sc.FEATURE_DIM)).astype(np.float32)
    labels = ["ß-style", "漫画", "ß-style", "漫画", "ß-style", "漫画"]
    clf = sc.StyleClassifier().fit_features(feats, labels, steps=20)
    assert sc.StyleClassifier.load(clf.save(tmp_path)).classes == clf.classes


def test_fewer_than_two_classes_raises(style_data):
    with pytest.raises(ValueError, match="2 distinct"):
        sc.StyleClassifier().fit(style_data["train_x"][:3], ["photo"] * 3)
    with pytest.raises(ValueError, match="2 distinct"):
        sc.StyleClassifier().fit_features(np.zeros((0, sc.FEATURE_DIM)), [])
    with pytest.raises(ValueError, match="labels"):
        sc.StyleClassifier().fit(style_data["train_x"][:3], ["photo", "sketch"])


def test_unfitted_classifier_refuses_to_predict():
    with pytest.raises(RuntimeError, match="not fitted"):
        sc.StyleClassifier().predict_proba_features(np.zeros((1, sc.FEATURE_DIM)))


def test_load_missing_files_names_them(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match=sc.CLASSIFIER_FILE):
        sc.StyleClassifier.load(tmp_path)
    fitted.save(tmp_path)
    (tmp_path / sc.CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        sc.StyleClassifier.load(tmp_path)


def test_style_faces_bring_the_stage2_set_to_the_generator_resolution(tmp_path):
    faces = [render_face(i, "photo", 128) for i in range(20)]
    names = [f"{i:03d}.jpg" for i in range(20)]
    write_synthetic_set(tmp_path, faces, names, ["photo", "cartoon"] * 10)
    (kept, kept_styles), (held, held_styles) = sc.style_faces(tmp_path, 0.3, resolution=32)
    assert len(kept) + len(held) == 20 and 0 < len(held) < 20  # a split by name hash (data_prep.holdout)
    assert {im.shape for im in kept + held} == {(32, 32, 3)}
    assert sorted(kept_styles + held_styles) == sorted(["photo", "cartoon"] * 10)
    (full, _), _ = sc.style_faces(tmp_path, 0.3)
    assert {im.shape for im in full} == {(128, 128, 3)}  # no resolution: as stored


class _Blur:
    """A stand-in autoencoder whose round trip blurs: each 4x4 block to its mean."""

    def encode(self, x):
        import types
        return types.SimpleNamespace(latent_dist=types.SimpleNamespace(mode=lambda: torch.nn.functional.avg_pool2d(x, 4)))

    def decode(self, z):
        import types
        return types.SimpleNamespace(sample=torch.nn.functional.interpolate(z, scale_factor=4))


class _Identity(_Blur):
    def encode(self, x):
        import types
        return types.SimpleNamespace(latent_dist=types.SimpleNamespace(mode=lambda: x))

    def decode(self, z):
        import types
        return types.SimpleNamespace(sample=z)


def test_round_trip_faces_are_the_held_out_faces_as_the_autoencoder_keeps_them(fitted, tmp_path):
    faces = [render_face(100 + i, st, 96) for i in range(8) for st in STYLES]
    names = [f"{i:03d}.jpg" for i in range(len(faces))]
    write_synthetic_set(tmp_path, faces, names, [st for _ in range(8) for st in STYLES])
    (_, _), (held, held_styles) = sc.style_faces(tmp_path, 0.5)
    kept, styles = sc.round_trip_faces(_Identity(), tmp_path, 0.5)
    assert styles == held_styles and len(kept) == len(held)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(kept, held)) <= 1  # lossless up to 8-bit rounding
    blurred, _ = sc.round_trip_faces(_Blur(), tmp_path, 0.5)
    assert fitted.accuracy(blurred, styles) < fitted.accuracy(kept, styles)  # the blur loses style
