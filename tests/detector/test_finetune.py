import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lib.core import crop as cr
from lib.data import datasets as ds
from lib.detector import model as det
from lib.detector import training as tr
from lib.detector.finetune import Recipe, choose_alpha, choose_mix, finetune, interpolate, recipes
from lib.detector.network import NetworkConfig

from tests.detector.conftest import MCFG


def test_finetune_trains_one_run_per_seed_with_its_own_order_and_held_out_part(samples, tmp_path):
    base = {"steps": 4, "batch_size": 4, "lr": 1e-3, "warmup": 1, "checkpoint_every": 2, "val_every": 2, "threads": 1}
    tr.train(tr.FaceSet(samples[:8]), tr.FaceSet(samples[8:]), MCFG, tr.TrainConfig.from_dict(base), tmp_path / "real",
             progress=False)
    runs = finetune(samples[:8], samples[8:], MCFG, base, tmp_path / "ft", tmp_path / "real", [0, 1, 2], 0.3,
                    progress=False)
    assert list(runs) == [0, 1, 2] and all(r.finished and r.steps_run == 4 for r in runs.values())
    weights = [load_file(str(tmp_path / "ft" / f"seed{k}" / "model.safetensors")) for k in runs]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # another order, another model
    # a rerun resumes every seed's finished run instead of training again
    again = finetune(samples[:8], samples[8:], MCFG, base, tmp_path / "ft", tmp_path / "real", [0, 1, 2], 0.3,
                     progress=False)
    assert all(r.steps_run == 0 for r in again.values())


def test_recipes_read_folders_with_the_shared_recipe_and_mappings_with_their_own(samples, tmp_path):
    # a synthetic set as notebook 04 exports it: images, 300-W .pts and a manifest
    folder = tmp_path / "generated" / "synthetic" / "two_stage"
    folder.mkdir(parents=True)
    for i, s in enumerate(samples[:3]):
        ds.save_image(folder / f"{i}.jpg", ds.load_image(s.image_path))
        ds.write_pts(folder / f"{i}.pts", s.landmarks)
    with open(folder / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "style"]] + [[f"{i}.jpg", "cartoon"] for i in range(3)])
    sets = {"ours": "synthetic/two_stage", "fewshot": None,
            "alone": {"path": "synthetic/two_stage", "fewshot": False, "mix": {}}}
    got = recipes(sets)
    assert got == {"ours": Recipe("synthetic/two_stage"), "fewshot": Recipe(None),
                   "alone": Recipe("synthetic/two_stage", fewshot=False, mix={})}
    fewshot = samples[5:7]
    faces = {name: r.samples(tmp_path / "generated", fewshot) for name, r in got.items()}
    assert [len(f) for f in faces.values()] == [5, 2, 3]
    assert faces["alone"][0].meta["style"] == "cartoon" and faces["fewshot"] == fewshot
    np.testing.assert_allclose(faces["alone"][1].landmarks, samples[1].landmarks, atol=1e-3)
    # the shared (chosen) mix unless the recipe names its own; the training settings are not changed in place
    train, chosen = {"steps": 4}, {"fewshot": 0.25}
    assert got["ours"].train_cfg(train, chosen) == {"steps": 4, "mix": {"fewshot": 0.25}}
    assert got["alone"].train_cfg(train, chosen) == {"steps": 4, "mix": {}} and train == {"steps": 4}


@pytest.mark.parametrize("entry, message", [
    ({"path": "x", "fewshots": False}, "unknown keys ['fewshots']"),
    ({"path": None, "fewshot": False}, "no faces to fine-tune on"),
    ({"path": "x", "mix": 0.25}, "expected a mapping of shares"),
    (3, "expected a folder, null or a mapping"),
])
def test_recipes_name_the_entry_and_the_problem(entry, message):
    with pytest.raises(ValueError, match=r"detector\.finetune\.sets\.bad") as e:
        recipes({"good": "x", "bad": entry})
    assert message in str(e.value)


def test_choose_mix_fine_tunes_each_candidate_and_picks_on_validation_only(samples, tmp_path):
    base = {"steps": 4, "batch_size": 4, "lr": 1e-3, "warmup": 1, "checkpoint_every": 2, "val_every": 2, "threads": 1}
    tr.train(tr.FaceSet(samples[:6]), tr.FaceSet(samples[6:8]), MCFG, tr.TrainConfig.from_dict(base), tmp_path / "real",
             progress=False)
    candidates = [{}, {"few": 0.5}]
    args = (samples[:6], samples[6:8], samples[8:], MCFG, base, candidates)
    kw = dict(out=tmp_path / "mix", init=tmp_path / "real", seed=0, holdout=0.3, progress=False,
              pools={"few": samples[8:]})
    mix, table = choose_mix(*args, tolerance=100.0, **kw)
    assert len(table) == 2 and table["chosen"].sum() == 1 and all((tmp_path / "mix" / f"mix{k}" / "seed0").is_dir()
                                                                   for k in range(2))
    # everything within tolerance: the lowest domain validation NME wins
    assert mix == candidates[int(table["domain val NME (%)"].idxmin())]
    assert table.loc[table["chosen"], "domain val NME (%)"].item() == table["domain val NME (%)"].min()
    # nothing within tolerance: the lowest real validation NME wins (the runs are resumed, not trained again)
    mix, strict = choose_mix(*args, tolerance=-100.0, **kw)
    assert mix == candidates[int(strict["real val NME (%)"].idxmin())] and not strict["within tolerance"].any()
    assert np.allclose(strict["real val NME (%)"], table["real val NME (%)"])
    with pytest.raises(ValueError, match="val_<domain>"):
        choose_mix(samples[:6], samples[6:8], [], MCFG, base, candidates, 0.1, **kw)


@pytest.fixture(scope="module")
def start_and_tuned(samples, tmp_path_factory):
    d = tmp_path_factory.mktemp("interp")
    base = {"steps": 4, "batch_size": 4, "lr": 1e-3, "warmup": 1, "checkpoint_every": 2, "val_every": 2, "threads": 1}
    tr.train(tr.FaceSet(samples[:6]), tr.FaceSet(samples[6:8]), MCFG, tr.TrainConfig.from_dict(base), d / "real",
             progress=False)
    finetune(samples[:6], samples[6:8], MCFG, {**base, "lr": 1e-2}, d / "ft", d / "real", [0, 1], 0.3, progress=False)
    return d


def test_interpolate_mixes_the_weights_and_keeps_both_ends_exact(start_and_tuned, tmp_path):
    d = start_and_tuned
    start, tuned = load_file(str(d / "real" / "model.safetensors")), load_file(str(d / "ft" / "seed0" / "model.safetensors"))
    for alpha in (0.0, 0.5, 1.0):
        folder = interpolate(d / "real", d / "ft" / "seed0", alpha, tmp_path / f"a{alpha}")
        got = load_file(str(folder / "model.safetensors"))
        for k, v in got.items():
            if not v.is_floating_point():
                assert torch.equal(v, tuned[k])
            elif alpha in (0.0, 1.0):
                assert torch.equal(v, start[k] if alpha == 0.0 else tuned[k]), k
            else:
                torch.testing.assert_close(v, (start[k] + tuned[k]) / 2)
        config = json.loads((folder / "config.json").read_text())
        assert config["training"]["interpolated"]["alpha"] == alpha
        assert det.Detector(folder).predict(np.zeros((64, 64, 3), np.uint8), cr.Box(32, 32, 40)).landmarks.shape == (68, 2)
    assert any(not torch.equal(start[k], tuned[k]) for k in start)  # the ends differ, so the test means something
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        interpolate(d / "real", d / "ft" / "seed0", 1.5, tmp_path / "bad")


def test_interpolate_refuses_another_network(start_and_tuned, samples, tmp_path):
    other = NetworkConfig(stacks=1, channels=8, depth=2, input_size=32, heatmap_size=8, sigma=1.0)
    cfg = tr.TrainConfig.from_dict({"steps": 2, "batch_size": 4, "warmup": 1, "val_every": 2, "threads": 1})
    tr.train(tr.FaceSet(samples[:4]), tr.FaceSet(samples[4:6]), other, cfg, tmp_path / "other", progress=False)
    with pytest.raises(ValueError, match="cannot interpolate"):
        interpolate(start_and_tuned / "real", tmp_path / "other", 0.5, tmp_path / "out")


def test_choose_alpha_scores_every_weight_on_validation_and_follows_the_rule(start_and_tuned, samples):
    d = start_and_tuned
    runs = {k: d / "ft" / f"seed{k}" for k in (0, 1)}
    real, domain = tr.FaceSet(samples[6:8]), tr.FaceSet(samples[8:])
    alphas = [0.0, 0.5, 1.0]
    alpha, table = choose_alpha(d / "real", runs, real, domain, alphas, tolerance=100.0)
    assert list(table["alpha"]) == alphas and table["chosen"].sum() == 1 and table["within tolerance"].all()
    assert alpha == alphas[int(table["domain val NME (%)"].idxmin())]
    # alpha 0 is the starting detector itself
    assert np.isclose(table.loc[0, "real val NME (%)"], table.attrs["initial real val NME (%)"])
    # nothing within tolerance: the lowest real NME
    alpha, strict = choose_alpha(d / "real", runs, real, domain, alphas, tolerance=-100.0)
    assert alpha == alphas[int(strict["real val NME (%)"].idxmin())] and not strict["within tolerance"].any()
    with pytest.raises(ValueError, match="val_<domain>"):
        choose_alpha(d / "real", runs, real, tr.FaceSet([]), alphas, 0.1)
    # one weight needs no domain faces: the plain fine-tune
    assert choose_alpha(d / "real", runs, real, tr.FaceSet([]), [1.0], 0.1)[0] == 1.0
