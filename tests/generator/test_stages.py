import numpy as np
import pytest

from lib.data import datasets as ds
from lib.data.procedural import render_face
from lib.generator import stages
from lib.generator.pairs import resize_pair


def _faces(folder, n=6, size=96):
    samples = []
    for i in range(n):
        f = render_face(i, "photo", size)
        ds.save_image(folder / f"{i:03d}.jpg", f.image)
        ds.write_pts(folder / f"{i:03d}.pts", f.landmarks)
    return ds.read_dataset(folder, "300w")


def test_restyled_copies_restyle_a_share_of_the_faces_at_the_model_resolution(tmp_path):
    samples = _faces(tmp_path)
    out = stages.restyled_copies(samples, 32, ["pencil sketch", "pop art"], 0.5, seed=0)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
    again = stages.restyled_copies(samples, 32, ["pencil sketch", "pop art"], 0.5, seed=0)
    np.testing.assert_array_equal(out, again)  # deterministic for a seed
    originals = np.stack([ds.load_image(s.image_path) for s in samples])
    small = np.stack([resize_pair(im, s.landmarks, 32)[0] for im, s in zip(originals, samples)])
    # each copy differs from every original at that size (it is restyled, not copied)
    assert min(np.abs(o.astype(int) - small.astype(int)).mean(axis=(1, 2, 3)).min() for o in out) > 5
    assert len(stages.restyled_copies(samples, 32, [], 0.5, 0)) == 0
    assert len(stages.restyled_copies(samples, 32, ["pop art"], 0.0, 0)) == 0


def test_restyled_copies_report_and_skip_a_bad_image(tmp_path):
    samples = _faces(tmp_path, n=4)
    samples[0].image_path.write_bytes(b"not an image")
    errors = []
    out = stages.restyled_copies(samples, 32, ["pop art"], 1.0, 0, errors=errors)
    assert len(out) == 3 and len(errors) == 1 and samples[0].image_path.name in errors[0]
    with pytest.raises(ds.BadInput):
        stages.restyled_copies(samples, 32, ["pop art"], 1.0, 0)


def test_make_multidomain_restyles_the_training_faces_and_adds_the_fewshot_domains(tmp_path):
    data = tmp_path / "data"
    _faces(data / "crops" / "train", n=5)
    (data / "manifests").mkdir(parents=True)
    for split, n in (("train", 5), ("fewshot_caricature", 2), ("fewshot_cartoon", 1), ("test_cartoon", 3)):
        (data / "manifests" / f"{split}.csv").write_text("image\n")
        if split != "train":
            _faces(data / "crops" / split, n=n)
    diffusion = {"multidomain": {"filter_styles": ["photo", "pencil sketch"], "per_style": 2, "seed": 0}}
    assert stages.fewshot_splits(data) == ["fewshot_caricature", "fewshot_cartoon"]
    errors = []
    rows = stages.make_multidomain(diffusion, data, tmp_path / "generated", errors)
    assert errors == [] and [r["style"] for r in rows] == ["photo"] * 2 + ["pencil sketch"] * 2 + ["caricature"] * 2 + ["cartoon"]
    out = tmp_path / "generated" / "multidomain"
    samples = ds.read_dataset(out, "synthetic")
    assert sorted(s.meta["style"] for s in samples) == sorted(r["style"] for r in rows)  # the manifest lists every row
    assert all((out / r["image"]).is_file() and (out / r["image"]).with_suffix(".pts").is_file() for r in rows)
    real = [r for r in rows if r["seed"] == ""]
    assert len(real) == 3 and all(r["image"].split("/")[1].startswith("real_") for r in real)
    # deterministic: built again (notebook 03 after `lib.launch multidomain`), the same set, files untouched
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert stages.make_multidomain(diffusion, data, tmp_path / "generated") == rows
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(FileNotFoundError, match="no prepared training faces"):
        stages.make_multidomain(diffusion, tmp_path / "nodata", tmp_path / "g2")
