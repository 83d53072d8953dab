import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lib.detector import training as tr
from lib.detector.finetune import choose_mix, finetune

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
