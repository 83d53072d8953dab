"""Tests for lib.evaluation.plots: images shown in notebooks are embedded as JPEG."""
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lib.evaluation import plots


@pytest.fixture
def shown(monkeypatch):
    """What the notebook would display."""
    import IPython.display
    out = []
    monkeypatch.setattr(IPython.display, "display", out.append)
    return out


def test_show_image_embeds_a_jpeg_once_and_leaves_no_figure_open(shown):
    open_before = plt.get_fignums()
    noisy = np.random.default_rng(0).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    assert plots.show_image(noisy, "a grid", width=4) is None  # nothing for the cell to show a second time
    assert len(shown) == 1 and shown[0].data[:2] == b"\xff\xd8" and shown[0].format == "jpeg"
    assert plt.get_fignums() == open_before
    plots.show_image(noisy, "a grid", width=4, quality=30)
    assert len(shown[1].data) < len(shown[0].data)


def test_show_figure_writes_the_jpeg_it_embeds_and_closes_the_figure(tmp_path, shown):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    plots.show_figure(fig, tmp_path / "faces.jpg", dpi=50)
    assert (tmp_path / "faces.jpg").read_bytes() == shown[0].data and shown[0].data[:2] == b"\xff\xd8"
    assert fig.number not in plt.get_fignums()


def test_save_curve_keeps_the_validation_steps_or_thins_the_loss(tmp_path):
    import pandas as pd
    steps = np.arange(1, 1001)
    history = pd.DataFrame({"step": steps, "loss": 1.0 / steps, "seconds": steps * 0.1,
                            "val_nme": np.where(steps % 250 == 0, 5.0 - steps / 1000, np.nan)})
    curve = plots.save_curve(history, tmp_path / "plots" / "detector.csv", window=10)
    assert list(curve.columns) == ["step", "loss", "val_nme"] and curve["step"].tolist() == [250, 500, 750, 1000]
    assert curve["loss"].iloc[-1] == pytest.approx(np.mean(1.0 / steps[-10:]), rel=1e-4)  # the smoothed loss
    assert pd.read_csv(tmp_path / "plots" / "detector.csv").equals(curve)
    generator = plots.save_curve(history.drop(columns="val_nme"), tmp_path / "g.csv", points=100)
    assert list(generator.columns) == ["step", "loss"] and 100 <= len(generator) <= 101
    assert generator["step"].iloc[-1] == 1000 and generator["step"].is_monotonic_increasing
    assert not pd.read_csv(tmp_path / "g.csv").isna().any().any()
