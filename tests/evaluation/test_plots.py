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
