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
