"""Tests for lib.evaluation.rendered: the grid, its rendered sets (disjoint, nested), the settings
of a cell, and one cell trained, scored and fine-tuned on real faces at tiny scale."""
import numpy as np
import pandas as pd
import pytest

from lib.data import procedural as pg
from lib.detector import training as det
from lib.evaluation import rendered as rs

AUG = {"none": {"rotate": 0, "scale": 0, "translate": 0, "flip": 0, "blur": 0, "occlusion": 0, "colour": 0},
       "all": {"rotate": 30, "scale": 0, "translate": 0.05, "flip": 0, "blur": 0.2, "occlusion": 0.3, "colour": 0}}
CFG = {"render": {"size": 64, "seed": 3, "val": 2, "test": 2, "processes": 1}, "sizes": [2, 4], "augment": AUG,
       "models": {"heatmap": {"model": {"arch": "hourglass", "stacks": 1, "channels": 8, "depth": 2, "input_size": 32,
                                        "heatmap_size": 8, "sigma": 1.0}, "lr": 1e-2},
                  "resnet_regression": {"model": {"arch": "regression", "backbone": "resnet18", "pretrained": False,
                                                  "input_size": 32}, "lr": 1e-3}},
       "train": {"steps": 2, "batch_size": 2, "warmup": 1, "ema_decay": 0.9, "margin": 0.1, "checkpoint_every": 1,
                 "val_every": 1, "seed": 0, "threads": 1},
       "finetune": {"steps": 2, "augment": "all"}}
EVAL = {"thresholds": [0.10, 0.08], "bootstrap": {"resamples": 200, "seed": 0}}


def test_the_grid_crosses_every_model_size_and_augmentation():
    grid = rs.cells(CFG)
    assert len(grid) == 2 * 2 * 2 and len({c.name for c in grid}) == 8
    assert grid[0] == rs.Cell("heatmap", 2, "none") and grid[0].name == "heatmap_2_none"


def test_a_cells_settings_take_the_models_rate_and_the_named_augmentation():
    cfg = rs.train_config(CFG, "resnet_regression", "all")
    assert cfg.lr == 1e-3 and cfg.augment.rotate == 30 and cfg.augment.flip == 0 and cfg.steps == 2
    assert rs.train_config(CFG, "heatmap", "none", {"steps": 5}).steps == 5
    with pytest.raises(KeyError, match="no setting 'some'"):
        rs.train_config(CFG, "heatmap", "some")
    with pytest.raises(KeyError, match="no model 'vit'"):
        rs.network(CFG, "vit")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return rs.render(CFG, tmp_path_factory.mktemp("rendered"), progress=False)


def test_rendered_sets_are_disjoint_and_the_training_set_is_the_largest_size(sets):
    assert {k: len(v) for k, v in sets.items()} == {"train": 4, "val": 2, "test": 2}
    first = pg.render_face(3 * 1_000_000, "photo", 64).landmarks
    np.testing.assert_allclose(sets["train"][0].landmarks, first, atol=1e-3)
    shapes = [tuple(np.round(s.landmarks.ravel(), 2)) for v in sets.values() for s in v]
    assert len(set(shapes)) == len(shapes)  # no face in two sets


def test_rendering_reports_what_it_drew_this_run_and_what_it_reused(tmp_path, capsys):
    cfg = {**CFG, "sizes": [2], "render": {**CFG["render"], "val": 1, "test": 1}}
    rs.render(cfg, tmp_path)
    first = capsys.readouterr().out
    assert "rendered train: 2 faces this run, 0 already on disk" in first
    (tmp_path / "train" / "train_00001.pts").unlink()  # an interrupted set
    rs.render(cfg, tmp_path)
    again = capsys.readouterr().out
    assert "rendered train: 1 faces this run, 1 already on disk" in again
    assert "rendered val: 0 faces this run, 1 already on disk" in again


def test_a_cell_trains_scores_and_fine_tunes_on_real_faces(sets, tmp_path):
    train, val = det.FaceSet(sets["train"]), det.FaceSet(sets["val"])
    cell = rs.Cell("resnet_regression", 2, "all")
    result = rs.train_cell(cell, CFG, train, val, tmp_path)
    assert result.finished and (tmp_path / cell.name / "model.safetensors").is_file()
    summary = rs.training_summary(cell, CFG, tmp_path / cell.name)
    assert summary["init"] == "from scratch" and summary["steps"] == 2 and summary["training_faces"] == 2
    rows, per_image = rs.score(tmp_path / cell.name, cell.name, {"rendered_test": sets["test"]}, EVAL)
    assert rows[0]["n"] == 2 and rows[0]["nme_ci_low"] <= rows[0]["nme"] <= rows[0]["nme_ci_high"]
    assert len(per_image["rendered_test"]) == 2
    # the test faces stand in for real ones here
    runs = rs.finetune_real(cell, CFG, det.FaceSet(sets["test"]), val, tmp_path)
    assert set(runs) == {"rendered, then real", "real only"} and all(r.finished for r in runs.values())
    table = pd.DataFrame([{**rows[0], **summary}])
    text = rs.grid_markdown(table, ["rendered_test", "missing"])
    assert text.count("\n") == 3 and "| resnet_regression | from scratch | 2 | all |" in text and "| - | - | - |" in text
