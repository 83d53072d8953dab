import numpy as np
import pytest

from lib.core import landmarks as lm
from lib.generator.condition import PART_COLOURS, PARTS, render_batch, render_landmarks, render_parts, render_parts_batch


def test_each_part_is_drawn_in_its_colour_where_the_landmarks_are(shape):
    img = render_landmarks(shape, 128)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    for part, idx in lm.GROUPS.items():
        if part == "inner_lips":  # a closed mouth's inner lips lie on the outer ones
            continue
        x, y = np.round(shape[idx[len(idx) // 2]]).astype(int)
        patch = img[max(0, y - 1):y + 2, max(0, x - 1):x + 2].reshape(-1, 3).astype(int)
        # the brightest pixel near a part's middle point is that part's colour (anti-aliasing dims it)
        best = patch[patch.sum(1).argmax()]
        colour = np.array(PART_COLOURS[part])
        assert np.abs(best / max(best.max(), 1) - colour / 255).max() < 0.35, part


def test_background_is_black_and_drawing_is_sparse(shape):
    img = render_landmarks(shape, 128)
    assert img[0, 0].tolist() == [0, 0, 0]
    assert 0.02 < (img.max(2) > 0).mean() < 0.25


def test_subpixel_shift_changes_the_image(shape):
    a, b = render_landmarks(shape, 64), render_landmarks(shape + 0.25, 64)
    assert np.abs(a.astype(int) - b).sum() > 0


def test_bad_landmarks_raise():
    with pytest.raises(ValueError, match="68, 2"):
        render_landmarks(np.zeros((67, 2)), 64)
    with pytest.raises(ValueError):
        render_landmarks(np.full((68, 2), np.nan), 64)


def test_batch(shape):
    assert render_batch(np.stack([shape, shape]), 32).shape == (2, 32, 32, 3)


def test_parts_are_one_channel_each_where_their_landmarks_are(shape):
    img = render_parts(shape, 128)
    assert img.shape == (128, 128, len(PARTS)) and img.dtype == np.uint8
    rgb = render_landmarks(shape, 128)
    assert ((img.max(2) > 0) == (rgb.max(2) > 0)).mean() > 0.99  # the same strokes, split by part
    for k, part in enumerate(PARTS):
        x, y = np.round(shape[lm.GROUPS[part][0]]).astype(int)
        assert img[max(0, y - 1):y + 2, max(0, x - 1):x + 2, k].max() > 100, part
        others = np.delete(img, k, axis=2).max(2)
        assert (img[..., k] > 0).sum() > (others[img[..., k] > 0] > 0).sum()  # mostly its own pixels


def test_parts_batch_and_bad_input(shape):
    assert render_parts_batch(np.stack([shape, shape]), 32).shape == (2, 32, 32, len(PARTS))
    assert render_parts_batch(np.zeros((0, 68, 2)), 32).shape == (0, 32, 32, len(PARTS))
    with pytest.raises(ValueError, match="68, 2"):
        render_parts(np.zeros((3, 2)), 32)
