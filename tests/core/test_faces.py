import cv2
import numpy as np
import pytest

from lib.core import crop as cr
from lib.core.faces import FaceFinder, box_errors, box_from_rect, rect_from_box
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


def test_box_errors_measure_the_finder_against_the_landmark_box():
    faces = [render_face(i, "photo", 256) for i in range(6)]
    blank = np.zeros((256, 256, 3), np.uint8)  # no face: no row
    images = [f.image for f in faces] + [blank]
    points = [f.landmarks for f in faces] + [faces[0].landmarks]
    rows = box_errors(FaceFinder(), images, points)
    assert rows.shape[1] == 3 and 3 <= len(rows) <= 6
    assert np.abs(rows[:, :2]).max() < 0.3 and np.abs(rows[:, 2]).max() < 0.5  # the finder frames the face
    # the errors are what the finder's box is: the landmark box displaced and scaled by them
    truth = cr.box_from_landmarks(points[0], 0.0)
    found = FaceFinder().find(images[0], truth)
    assert found is not None  # the first rendered face is found, so the check below always runs
    np.testing.assert_allclose(box_errors(FaceFinder(), images[:1], points[:1])[0],
                               [(found.cx - truth.cx) / truth.size, (found.cy - truth.cy) / truth.size,
                                np.log(found.size / truth.size)])
    assert len(box_errors(FaceFinder(), images, points, limit=2)) <= 2
