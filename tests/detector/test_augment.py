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
