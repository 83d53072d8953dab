"""The ``paper`` profile's code path end to end on a CPU, at a few steps each: the paper's
data layouts (300-W, ArtFace, CariFace) -> data prep -> stage 1 and stage 2 (and the one-step
ablation) as a ControlNet over a frozen Stable Diffusion from a local folder (here a tiny
random one, ``stable_diffusion_dir``) -> synthesis -> detector training and fine-tunes ->
evaluation. ``params/paper.yaml`` is read and only sizes, steps and paths are changed, so the
test follows the profile's real keys; a GPU user should never meet a crash a CPU could find."""
import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from diffusers import ControlNetModel

from lib import launch, pipeline
from lib.data import data_prep
from lib.data import datasets as ds
from lib.data.procedural import render_face
from lib.detector import training as det
from lib.detector.finetune import choose_alpha, finetune, interpolate, recipes
from lib.detector.network import NetworkConfig
from lib.evaluation import evaluate as ev
from lib.evaluation import predictors
from lib.generator import sampling
from lib.generator import synthesis as syn
from lib.generator.pairs import PairSet

PROFILE = "paper"
RES = 32  # the tiny Stable Diffusion's image size
FACES = {"300w/afw": 5, "300w/helen/trainset": 5, "300w/lfpw/trainset": 5, "300w/ibug": 2, "300w/helen/testset": 2,
         "300w/lfpw/testset": 2, "artface": 6, "cariface/testset": 3}


def _write_datasets(raw):
    """A few procedural faces in each source folder of paper.yaml, in the published layouts."""
    seed = 0
    for path, n in FACES.items():
        folder = raw / path
        for i in range(n):
            seed += 1
            style = {"artface": "painting", "cariface/testset": "caricature"}.get(path, "photo")
            face = render_face(seed, style, 96)
            if path.startswith("cariface"):  # test.txt ids, images/<id>.jpg, landmarks_gt/<id>.jpg.npy (0-based)
                ident = f"{i + 1:04d}"
                ds.save_image(folder / "images" / f"{ident}.jpg", face.image)
                (folder / "landmarks_gt").mkdir(parents=True, exist_ok=True)
                np.save(folder / "landmarks_gt" / f"{ident}.jpg.npy", face.landmarks.astype(np.float32))
                with open(folder / "test.txt", "a") as fh:
                    fh.write(ident + "\n")
            else:  # 300-W / ArtFace: NAME.jpg + NAME.pts (1-based)
                ds.save_image(folder / f"image_{i:03d}.jpg", face.image)
                ds.write_pts(folder / f"image_{i:03d}.pts", face.landmarks)


def _small_paper_params(raw, sd_dir, root) -> dict:
    """params/paper.yaml with sizes, steps and paths shrunk; every other value as in the profile."""
    p = pipeline.load_params(PROFILE)
    assert p["profile"] == PROFILE and p["diffusion"]["model"]["pretrained"]  # the paper path: a pretrained base
    p = copy.deepcopy(p)
    d = p["data"]
    d.update(root=str(raw), crop_size=64, val_fraction=0.25)
    assert {s["path"] for s in d["sources"]} == set(FACES), "paper.yaml's sources changed: update FACES"
    for s in d["sources"]:
        if s.get("fewshot"):
            s["fewshot"] = 2
    small = {"steps": 2, "batch_size": 2, "checkpoint_every": 2, "sample_every": 2, "sample_steps": 2, "threads": 1,
             "mixed_precision": "no"}  # fp16 autocast needs a GPU; everything else as in the profile
    diff = p["diffusion"]
    diff["model"].update(pretrained=str(sd_dir), resolution=RES)
    for name in ("stage1", "stage2", "onestep"):
        assert diff[name]["train_unet"] is False  # ControlNet only, the base frozen
        diff[name].update(small)
    diff["multidomain"].update(per_style=1)
    syn_cfg = p["synthesis"]
    syn_cfg.update(styles=syn_cfg["styles"][:2] + ["caricature"], per_style=1, steps=2, batch_size=4)
    det_cfg = p["detector"]
    det_cfg["model"].update(stacks=1, channels=16, depth=2, input_size=32, heatmap_size=8)
    train_small = {"steps": 3, "batch_size": 4, "warmup": 1, "checkpoint_every": 2, "val_every": 2, "threads": 1}
    det_cfg["train"].update(train_small)
    det_cfg["finetune"]["train"].update(train_small)
    det_cfg["finetune"]["geometric_style"].update(per_style=1)
    det_cfg["finetune"]["holdout"] = 0.25
    for d_ in p["evaluate"]["detectors"]:
        d_["path"] = str(root / d_["path"])  # the profile's paths are relative to the project folder
    (root / "params").mkdir(parents=True)
    (root / "params" / f"{PROFILE}.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return p


@pytest.mark.slow
def test_paper_profile_code_path(tmp_path, stable_diffusion_dir):
    raw, root = tmp_path / "datasets", tmp_path / "project"
    _write_datasets(raw)
    params = _small_paper_params(raw, stable_diffusion_dir, root)
    data_dir, generated = pipeline.data_dir(PROFILE, root), pipeline.generated_dir(PROFILE, root)
    models = pipeline.models_dir(PROFILE, root)
    torch.set_num_threads(1)

    # ---- 01 data prep
    summary = data_prep.prepare(params["data"], data_dir, show_progress=False)
    assert summary["errors"] == [], summary["errors"]
    splits = summary["splits"]
    assert {"train", "val", "test_300w_challenging", "test_300w_common", "test_artface", "fewshot_art",
            "test_cariface"} == set(splits), splits
    assert splits["fewshot_art"] == 2 and splits["test_artface"] == 4 and splits["test_cariface"] == 3
    assert splits["train"] + splits["val"] == 15 and splits["val"] > 0

    # ---- 02 / 03 generators, through the launcher's code path (one process): ControlNet over the frozen base
    assert launch.run("autoencoder", PROFILE, root, progress=False) is None  # the base's own autoencoder
    with pytest.raises(launch.LaunchError, match="notebook 03 makes it"):
        launch.run("stage2", PROFILE, root, progress=False)
    assert launch.run("stage1", PROFILE, root, progress=False) == models / "stage1"
    md = params["diffusion"]["multidomain"]
    errors = []
    train = ds.read_dataset(data_dir / "crops" / "train", "300w", errors)
    rows = syn.restyle(train, md["filter_styles"], md["per_style"], generated / "multidomain", md["seed"], errors=errors)
    for split in (s for s in data_prep.splits(data_dir) if s.startswith("fewshot_")):
        rows += syn.add_real(ds.read_dataset(data_dir / "crops" / split, "300w", errors), split.removeprefix("fewshot_"),
                             generated / "multidomain")
    syn.write_manifest(generated / "multidomain", rows)
    assert errors == [] and len(rows) == len(md["filter_styles"]) * md["per_style"] + 2
    for name in ("stage2", "onestep"):
        assert launch.run(name, PROFILE, root, progress=False) == models / name
    base = str(stable_diffusion_dir.resolve())
    for name in ("stage1", "stage2", "onestep"):
        folder = models / name
        info = json.loads((folder / "generator.json").read_text())
        assert info["base"] == base and info["steps"] == 2
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["checkpoints", "controlnet", "samples"]
        assert len(pd.read_csv(folder / "history.csv")) == 2
    assert json.loads((models / "stage2" / "generator.json").read_text())["init"] == str(models / "stage1")
    # stage 2 went on from stage 1's ControlNet (a few steps at lr 1e-5 away); one-step started from a new one
    nets = {n: ControlNetModel.from_pretrained(models / n / "controlnet").state_dict() for n in ("stage1", "stage2", "onestep")}

    def dist(a, b):
        return sum(float((nets[a][k] - nets[b][k]).abs().sum()) for k in nets[a])
    assert 0 < dist("stage1", "stage2") < 0.1 * dist("stage1", "onestep")

    # ---- 04 synthesis, each generator
    s = params["synthesis"]
    points = PairSet(train, RES).points
    items = syn.plan(points, s["styles"], s["per_style"], RES, s["seed"], s["edits_per_face"])
    for gen, folder in s["generators"].items():
        pipe = sampling.load_generator(models / folder)
        out = generated / "synthetic" / gen
        written = syn.synthesise(pipe, items, out, RES, s["steps"], s["guidance"]["values"][-1], s["batch_size"], progress=False)
        assert len(written) == len(items) == len(ds.read_dataset(out, "synthetic"))
        assert ds.load_image(out / items[0]["image"]).shape == (RES, RES, 3)
    # warp-first sets: image-to-image through diffusers' ControlNet img2img pipeline on the same components
    warp, pairs = s["warp_first"], PairSet(train, RES)
    pipe = sampling.load_generator(models / s["generators"][warp["generator"]])
    for name, names in warp["sets"].items():
        w_items = syn.plan(points, s["styles"], s["per_style"], RES, s["seed"], s["edits_per_face"],
                           names if names is not None else s["edits"], s["exaggeration"])
        written = syn.synthesise(pipe, w_items, generated / "synthetic" / name, RES, s["steps"], s["guidance"]["values"][-1],
                                 s["batch_size"], progress=False, mode="warp", sources=(pairs.images, pairs.points),
                                 strength=warp["strengths"][0])
        assert len(written) == len(w_items) and {r["mode"] for r in written} == {f"warp@{warp['strengths'][0]:g}"}

    # ---- 05 detector: real faces, then every fine-tune of the profile
    d = params["detector"]
    mcfg = NetworkConfig(**d["model"])
    val_samples = ds.read_dataset(data_dir / "crops" / "val", "300w")
    train_faces, val_faces = det.FaceSet(train), det.FaceSet(val_samples)
    r = det.train(train_faces, val_faces, mcfg, det.TrainConfig.from_dict(d["train"]), models / "detector_real",
                  progress=False)
    assert r.finished and (models / "detector_real" / "model.safetensors").exists()
    ft = d["finetune"]
    gs = ft["geometric_style"]
    mean = predictors.mean_shape(np.array([x.landmarks for x in train]))
    syn.restyle(train, gs["styles"], gs["per_style"], generated / "geometric_style", gs.get("seed", 0),
                mean_shape=mean, strength=tuple(gs["strength"]))
    fewshot = ds.read_dataset(data_dir / "crops" / "fewshot_art", "300w")
    for name, recipe in recipes(ft["sets"]).items():
        runs = finetune(recipe.samples(generated, fewshot), val_samples, mcfg,
                        recipe.train_cfg(ft["train"], ft["mix"]["candidates"][0]), models / f"detector_{name}",
                        models / "detector_real", ft["seeds"], ft["holdout"], progress=False)
        assert list(runs) == ft["seeds"] and all(r.finished for r in runs.values()), name
        assert all((models / f"detector_{name}" / f"seed{k}" / "model.safetensors").exists() for k in runs), name
        # the paper's plain fine-tune: one interpolation weight, 1.0, written where the evaluation reads it
        ip = ft["interpolate"]
        alpha, _ = choose_alpha(models / "detector_real", {k: models / f"detector_{name}" / f"seed{k}" for k in runs},
                                val_faces, det.FaceSet([]), ip["alphas"], ip["tolerance"])
        assert alpha == 1.0, name
        for k in runs:
            interpolate(models / "detector_real", models / f"detector_{name}" / f"seed{k}", alpha,
                        models / f"detector_{name}" / "interpolated" / f"seed{k}")

    # ---- 06 evaluation: every predictor and detector of the profile on every test set
    e = params["evaluate"]
    train_shapes = np.array([x.landmarks for x in data_prep.load_split(data_dir, "train")])
    methods = ev.build_methods(e, PROFILE, train_shapes)
    table = []
    per_image = {}
    for test_set in e["test_sets"]:
        samples = data_prep.load_split(data_dir, test_set)
        for name, runs in methods.items():
            res = per_image[test_set, name] = ev.evaluate_runs(runs, samples, desc=f"{name} / {test_set}").per_image
            assert len(res) == len(samples) * len(runs) and np.isfinite(res["nme_inter_ocular"]).all()
            table.append(ev.table_row(name, test_set, res, e["thresholds"], resamples=200))
    table = pd.DataFrame(table)
    assert len(table) == len(e["test_sets"]) * (len(e["predictors"]) + len(e["detectors"]))
    assert set(ev.TABLE_COLUMNS) <= set(table.columns)
    assert set(table[table.method == "ours (two-stage synthetic)"].seeds) == {len(ft["seeds"])}
    assert ev.markdown_table(table)
    comparisons = {b: e["paired"]["methods"] for b in e["paired"]["baselines"]}
    paired = ev.paired_table(per_image, comparisons, resamples=200)
    assert len(paired) == len(e["test_sets"]) * (2 * len(e["paired"]["methods"]) - 1)
