import numpy as np

from lib.core import crop as cr
from lib.detector.augment import AugmentConfig, augment
from lib.data.procedural import render_face


def test_augmented_landmarks_follow_the_picture():
    """Geometric augmentation moves points with pixels: re-render the exact
    eye corner as a bright dot and check it lands on the augmented point."""
    f = render_face(1, "photo", 128)
    img = np.zeros_like(f.image)
    x, y = np.round(f.landmarks[36]).astype(int)
    img[y - 1:y + 2, x - 1:x + 2] = 255
    pts = f.landmarks.copy()
    pts[36] = [x, y]
    cfg = AugmentConfig(blur=0, occlusion=0, colour=0, flip=1.0)
    out, p = augment(img, pts, cr.box_from_landmarks(pts, 0.25), 64, np.random.default_rng(3), cfg)
    # after a flip, point 45 is the mirrored 36
    yy, xx = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert np.hypot(xx - p[45, 0], yy - p[45, 1]) < 1.5


def test_augment_is_deterministic():
    f = render_face(2, "photo", 96)
    box = cr.box_from_landmarks(f.landmarks, 0.25)
    a = augment(f.image, f.landmarks, box, 48, np.random.default_rng(7), AugmentConfig())
    b = augment(f.image, f.landmarks, box, 48, np.random.default_rng(7), AugmentConfig())
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_detector_boxes_displace_the_crop_by_a_measured_error():
    import pytest
    f = render_face(3, "photo", 128)
    box = cr.box_from_landmarks(f.landmarks, 0.25)
    tight = cr.box_from_landmarks(f.landmarks, 0.0).size
    still = AugmentConfig(rotate=0, scale=0, translate=0, flip=0, blur=0, occlusion=0, colour=0)
    moved = AugmentConfig(**{**still.__dict__, "detector_boxes": 1.0})
    _, plain = augment(f.image, f.landmarks, box, 64, np.random.default_rng(0), still)
    errors = np.array([[0.1, -0.05, np.log(1.2)]])
    _, shifted = augment(f.image, f.landmarks, box, 64, np.random.default_rng(0), moved, errors)
    # the crop's box: centre moved by (0.1, -0.05) tight sides, side x1.2; points move the other way
    s = 64 / box.size
    expect = (plain - 31.5) / 1.2 + 31.5 - np.array([0.1, -0.05]) * tight * s / 1.2
    np.testing.assert_allclose(shifted, expect, atol=1e-6)
    with pytest.raises(ValueError, match="box errors"):
        augment(f.image, f.landmarks, box, 64, np.random.default_rng(0), moved)
