import cv2
import numpy as np
import pytest

from lib.core import crop as cr
from lib.core.faces import FaceFinder, box_from_rect, rect_from_box
from lib.data.procedural import render_face


@pytest.mark.parametrize("rect", [(10, 20, 110, 120), (0, 0, 57, 57), (300, 41, 1300, 1041)])
def test_rect_box_round_trip(rect):
    box = box_from_rect(*rect)
    assert box.size == rect[2] - rect[0] and box.cy > (rect[1] + rect[3]) / 2  # landmark box sits lower
    assert rect_from_box(box) == rect


def test_box_rect_round_trip_within_rounding():
    box = cr.Box(123.4, 98.7, 80.3)
    back = box_from_rect(*rect_from_box(box))
    assert abs(back.cx - box.cx) <= 1 and abs(back.cy - box.cy) <= 1 and abs(back.size - box.size) <= 1


def test_large_image_is_downscaled_and_box_mapped_back():
    f = render_face(7, "photo", 256)
    scale = 3000 / 256
    big = cv2.resize(f.image, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    finder = FaceFinder(max_side=1024)
    seen = []
    real = finder._detector
    finder._detector = lambda img, up: seen.append(img.shape) or real(img, up)
    box = finder.find(big)
    assert seen == [(1024, 1024, 3)]  # detection ran on the downscaled image
    truth = cr.box_from_landmarks(f.landmarks * scale, 0.0)
    # full-resolution coordinates: a box left in the 1024 px image's coordinates would be ~3x too small
    assert box is not None
    assert 0.7 < box.size / truth.size < 1.4
    assert np.hypot(box.cx - truth.cx, box.cy - truth.cy) < 0.15 * truth.size
