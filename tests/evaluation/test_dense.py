"""Tests for lib.evaluation.dense: dense labels of rendered faces, the rows' settings, unlabelled
target crops, and every row trained at tiny scale."""
import numpy as np
import pytest

from lib.core import landmarks as lm
from lib.data import datasets as ds
from lib.data import procedural as pg
from lib.evaluation import dense as study

AUG = {"rotate": 10, "scale": 0.1, "translate": 0.05, "flip": 0.5, "blur": 0.2, "occlusion": 0.3, "colour": 0.3}
CFG = {"rendered_faces": 4, "model": {"stacks": 1, "channels": 8, "depth": 2, "input_size": 32, "heatmap_size": 8,
                                      "sigma": 1.0},
       "train": {"steps": 2, "batch_size": 2, "lr": 1e-2, "warmup": 1, "ema_decay": 0.9, "margin": 0.1,
                 "checkpoint_every": 1, "val_every": 1, "seed": 0, "threads": 1, "augment": AUG},
       "transfer": {"frozen": {"steps": 2, "lr": 1e-3, "warmup": 1, "freeze": ["dense"]},
                    "joint": {"steps": 2, "lr": 1e-4, "warmup": 1}},
       "adaptation": {"daln": {"weight": 10.0}, "discriminator": {"weight": 1.0}}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("r")
    return {part: ds.read_dataset(pg.write_set(d / part, n, seed, "photo", 96, progress=False)[0].parent, "300w")
            for part, n, seed in (("train", 5, 0), ("val", 2, 100), ("test", 3, 200))}


def test_rendered_faces_get_their_exact_dense_labels(rendered):
    faces = study.dense_faces(rendered["train"][:2])
    assert faces.points[0].shape == (lm.N_DENSE, 2)
    np.testing.assert_allclose(faces.points[0][lm.IBUG_IN_DENSE], rendered["train"][0].landmarks, atol=1e-9)


def test_each_part_of_the_recipe_takes_its_own_keys():
    assert study.train_config(CFG).steps == 2 and study.train_config(CFG).freeze == []
    frozen = study.train_config(CFG, "transfer.frozen")
    assert frozen.freeze == ["dense"] and frozen.lr == 1e-3 and frozen.augment.rotate == 10
    assert study.network(CFG, points=lm.N_DENSE).points == 257 and study.network(CFG, "transfer").arch == "transfer"
    rows = study.settings_table(CFG)
    assert [r["row"] for r in rows] == list(study.ROWS)


def test_target_crops_come_from_the_face_finder_not_the_labels(rendered, monkeypatch):
    crops = study.target_crops(rendered["train"], 32, 0.1, progress=False)
    assert crops.dtype == np.uint8 and crops.shape[1:] == (32, 32, 3) and 1 <= len(crops) <= 5

    class Blind:
        def find(self, image, near=None):
            return None
    assert study.target_crops(rendered["train"], 32, 0.1, finder=Blind(), progress=False).shape == (0, 32, 32, 3)


def test_every_row_trains(rendered, tmp_path):
    real = {"train": rendered["test"], "val": rendered["val"]}  # rendered faces stand in for real ones here
    folders = study.train_rows(CFG, rendered, real, tmp_path, progress=False)
    assert list(folders) == list(study.ROWS)
    assert all((f / "model.safetensors").is_file() for f in folders.values())


def test_the_table_has_one_line_per_row_and_a_dash_for_a_missing_test_set():
    import pandas as pd
    rows = pd.DataFrame([{"method": "real only", "test_set": "a", "nme": 5.0, "nme_ci_low": 4.5, "nme_ci_high": 5.5,
                          "nme_inter_pupil": 7.0, "fr_10": 2.0, "auc_10": 0.5}])
    text = study.table_markdown(rows, ["a", "b"])
    assert text.splitlines()[2] == "| real only | 7.00 | 5.00 [4.50, 5.50] | 2.00 | 0.5000 | - | - | - | - |"
