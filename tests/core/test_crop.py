import numpy as np
import pytest

from lib.core import crop as cr


def test_round_trip_is_exact(shape):
    box = cr.box_from_landmarks(shape, 0.25)
    m = cr.crop_matrix(box, 64)
    back = cr.apply(cr.invert(m), cr.apply(m, shape))
    np.testing.assert_allclose(back, shape, atol=1e-9)


def test_box_from_landmarks_contains_face_with_margin(shape):
    box = cr.box_from_landmarks(shape, 0.25)
    x0, y0, x1, y1 = box.xyxy
    w = np.ptp(shape, axis=0).max()
    assert box.size == pytest.approx(1.5 * w)
    assert x0 < shape[:, 0].min() and x1 > shape[:, 0].max()


def test_pixel_lands_where_its_point_maps():
    img = np.zeros((200, 300, 3), np.uint8)
    img[120, 170] = 255  # (x=170, y=120)
    box = cr.Box(160.0, 110.0, 100.0)  # 1:1 scale into a 100 px crop
    out, m, pts = cr.crop(img, box, 100, np.array([[170.0, 120.0]]))
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert (x, y) == tuple(np.round(pts[0]).astype(int)) == (60, 60)


def test_scaled_crop_keeps_point_on_blob():
    img = np.zeros((400, 400, 3), np.uint8)
    import cv2
    cv2.circle(img, (250, 150), 6, (255, 255, 255), -1)
    out, m, pts = cr.crop(img, cr.Box(200, 200, 300), 64, np.array([[250.0, 150.0]]))
    g = out[..., 0].astype(float)
    ys, xs = np.mgrid[:64, :64]
    centroid = np.array([(g * xs).sum(), (g * ys).sum()]) / g.sum()
    np.testing.assert_allclose(centroid, pts[0], atol=0.15)


def _crop_of_blurred_image(image, box, size, angle=0.0):
    """The crop as it was defined before it read only its region: blur the whole image, warp."""
    import cv2
    s = size / box.size
    src = cv2.GaussianBlur(image, (0, 0), 0.5 / s * 0.6)
    return cv2.warpAffine(src, cr.crop_matrix(box, size, angle), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(127, 127, 127))


@pytest.mark.parametrize("box,angle", [(cr.Box(300, 240, 200), 0.0), (cr.Box(300, 240, 200), 30.0),
                                       (cr.Box(40, 30, 180), 15.0),     # reads past the image's corner
                                       (cr.Box(600, 420, 400), 0.0)])   # larger than the image's edge
def test_shrinking_crop_blurs_only_its_region_with_the_same_result(box, angle):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out, _, _ = cr.crop(image, box, 64, angle=angle)
    diff = np.abs(out.astype(int) - _crop_of_blurred_image(image, box, 64, angle).astype(int))
    # the same up to OpenCV's fixed-point interpolation of a shifted matrix: at most 1 grey level
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005


def test_crop_wholly_outside_the_image_is_the_border_colour():
    image = np.zeros((100, 100, 3), np.uint8)
    out, _, _ = cr.crop(image, cr.Box(1000, 1000, 300), 32)
    assert out.shape == (32, 32, 3) and (out == 127).all()


def test_roi_covers_the_rotated_crop():
    box = cr.Box(300, 240, 200)
    m = cr.crop_matrix(box, 64, 45.0)
    x0, y0, x1, y1 = cr.roi((480, 640), m, 64)
    half_diag = 100 * np.sqrt(2)
    assert x0 <= 300 - half_diag and x1 >= 300 + half_diag and y0 <= 240 - half_diag and y1 >= 240 + half_diag


def _turned(points, degrees, centre=(0.0, 0.0)):
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - centre) @ rot.T + centre


@pytest.mark.parametrize("tilt", [-25.0, 12.0, 40.0])
def test_turned_box_frames_tilted_landmarks_as_the_plain_box_frames_upright_ones(shape, tilt):
    from lib.core import landmarks as lm
    upright = shape * 2.0 + [200.0, 150.0]
    tilted = _turned(upright, tilt, centre=(230.0, 160.0)) + [15.0, -7.0]
    angle = float(lm.eye_angle(tilted))
    assert angle == pytest.approx(tilt + float(lm.eye_angle(upright)), abs=1e-9)
    box = cr.box_from_landmarks(tilted, 0.1, angle)
    in_crop = cr.apply(cr.crop_matrix(box, 64, angle), tilted)
    # the eyes level, and the landmarks where the unturned crop of the upright face puts them
    assert float(lm.eye_angle(in_crop)) == pytest.approx(0.0, abs=1e-9)
    reference = cr.apply(cr.crop_matrix(cr.box_from_landmarks(_turned(upright, -lm.eye_angle(upright)), 0.1), 64),
                         _turned(upright, -lm.eye_angle(upright)))
    np.testing.assert_allclose(in_crop, reference, atol=1e-9)
    assert cr.box_from_landmarks(tilted, 0.1, 0.0) == cr.box_from_landmarks(tilted, 0.1)
