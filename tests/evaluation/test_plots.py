"""Tests for lib.evaluation.plots: images shown in notebooks are embedded as JPEG."""
import matplotlib.pyplot as plt
import numpy as np

from lib.evaluation import plots


def test_show_image_embeds_a_jpeg_and_leaves_no_figure_open():
    open_before = plt.get_fignums()
    noisy = np.random.default_rng(0).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    shown = plots.show_image(noisy, "a grid", width=4)
    assert shown.data[:2] == b"\xff\xd8" and shown.format == "jpeg"
    assert plt.get_fignums() == open_before
    low = plots.show_image(noisy, "a grid", width=4, quality=30)
    assert len(low.data) < len(shown.data)


def test_show_figure_writes_the_jpeg_it_embeds_and_closes_the_figure(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    shown = plots.show_figure(fig, tmp_path / "faces.jpg", dpi=50)
    assert (tmp_path / "faces.jpg").read_bytes() == shown.data and shown.data[:2] == b"\xff\xd8"
    assert fig.number not in plt.get_fignums()
