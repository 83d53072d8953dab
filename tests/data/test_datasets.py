import cv2
import numpy as np
import pytest

from lib.data import datasets as ds
from lib.core import landmarks as lm
from lib.data.procedural import render_face
from tests.conftest import DATA_ROOT


def _write_face(folder, name, layout, seed=0, size=96):
    f = render_face(seed, "photo", size)
    img = folder / f"{name}.jpg"
    ds.save_image(img, f.image)
    if layout == "300w":
        ds.write_pts(img.with_suffix(".pts"), f.landmarks)
    elif layout == "caricature":
        np.savetxt(img.with_suffix(".txt"), f.landmarks, fmt="%.3f")
    return img, f.landmarks


def test_pts_is_one_based(tmp_path):
    p = tmp_path / "a.pts"
    rows = "\n".join(f"{i + 1} {i + 2}" for i in range(68))
    p.write_text("version: 1\nn_points:  68\n{\n" + rows + "\n}\n")
    pts = ds.read_pts(p)
    assert pts[0].tolist() == [0.0, 1.0] and pts[67].tolist() == [67.0, 68.0]


def test_pts_round_trip(tmp_path, shape):
    ds.write_pts(tmp_path / "a.pts", shape)
    np.testing.assert_allclose(ds.read_pts(tmp_path / "a.pts"), shape, atol=5e-4)


@pytest.mark.parametrize("layout", ["300w", "caricature"])
def test_layouts_beside_images(tmp_path, layout):
    _, pts = _write_face(tmp_path, "7", layout)
    assert ds.detect_format(tmp_path) == layout
    [s] = ds.read_dataset(tmp_path)
    np.testing.assert_allclose(s.landmarks, pts, atol=5e-4)


def test_cariface_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "landmarks_gt").mkdir()
    f = render_face(1, "caricature", 96)
    ds.save_image(tmp_path / "images" / "abc.jpg", f.image)
    np.save(tmp_path / "landmarks_gt" / "abc.jpg.npy", f.landmarks.astype(np.float32))
    (tmp_path / "test.txt").write_text("abc\nmissing\n")
    errors = []
    samples = ds.read_dataset(tmp_path, errors=errors)
    assert len(samples) == 1 and samples[0].meta["split"] == "test"
    np.testing.assert_allclose(samples[0].landmarks, f.landmarks, atol=1e-4)
    assert len(errors) == 1 and "missing" in errors[0]


def test_wflw_layout_maps_98_to_68(tmp_path):
    f = render_face(2, "photo", 96)
    pts98 = np.zeros((98, 2))
    pts98[lm.WFLW_TO_68] = f.landmarks
    (tmp_path / "WFLW_images" / "0--Parade").mkdir(parents=True)
    ds.save_image(tmp_path / "WFLW_images" / "0--Parade" / "x.jpg", f.image)
    ann = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    line = " ".join(f"{v:.4f}" for v in pts98.ravel()) + " 1 2 90 95 0 1 0 0 0 1 0--Parade/x.jpg"
    (ann / "list_98pt_rect_attr_test.txt").write_text(line + "\n" + "1 2 3\n")
    errors = []
    [s] = ds.read_dataset(tmp_path, errors=errors)
    np.testing.assert_allclose(s.landmarks, f.landmarks, atol=1e-3)
    assert s.meta["expression"] == 1 and s.meta["blur"] == 1
    assert "3 fields, expected 207" in errors[0]


def test_synthetic_layout_reads_manifest(tmp_path):
    img, _ = _write_face(tmp_path / "cartoon", "0001", "300w")
    (tmp_path / "manifest.csv").write_text("image,style,prompt,edits,seed\ncartoon/0001.jpg,cartoon,"
                                           "a portrait of cartoon style,chubby;open eyes,1\n")
    [s] = ds.read_dataset(tmp_path)
    assert s.dataset == "synthetic" and s.meta["prompt"] == "a portrait of cartoon style"


def test_bad_files_are_reported_and_skipped(tmp_path, shape):
    _write_face(tmp_path, "good", "300w")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    ds.write_pts(tmp_path / "broken.pts", shape)
    _write_face(tmp_path, "short", "300w")
    ds.write_pts(tmp_path / "short.pts", shape[:67])
    _write_face(tmp_path, "nan", "300w")
    bad = shape.copy()
    bad[5] = np.nan
    ds.write_pts(tmp_path / "nan.pts", bad)
    _write_face(tmp_path, "orphan", "300w")
    (tmp_path / "orphan.pts").unlink()
    errors = []
    samples = ds.read_dataset(tmp_path, "300w", errors)
    names = sorted(s.name for s in samples)
    assert "good" in names and "short" not in names and "nan" not in names and "orphan" not in names
    text = "\n".join(errors)
    assert "short.pts: 67 points, expected 68" in text
    assert "nan.pts: NaN" in text
    assert "orphan.jpg: no landmark file" in text
    with pytest.raises(ds.BadInput, match="broken.jpg: not a readable image"):
        ds.load_image(tmp_path / "broken.jpg")


def test_image_kinds_become_8bit_rgb(tmp_path):
    gray = np.full((8, 8), 100, np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA
    rgba[..., 3] = 0  # fully transparent: composited on white
    rgba[0, 0, 3] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((8, 8, 3), 65535, np.uint16))
    g, a, d = (ds.load_image(tmp_path / n) for n in ("g.png", "a.png", "d.png"))
    assert g.shape == (8, 8, 3) and g.dtype == np.uint8 and (g == 100).all()
    assert a[0, 0].tolist() == [255, 0, 0] and a[1, 1].tolist() == [255, 255, 255]
    assert d.dtype == np.uint8 and (d == 255).all()


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(FileNotFoundError):
        ds.detect_format(tmp_path / "nope")
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(ds.BadInput, match="no landmark files"):
        ds.detect_format(tmp_path)


@pytest.mark.real_data
def test_real_data_layouts():
    assert len(ds.read_dataset(DATA_ROOT / "300w" / "afw")) == 337
    assert len(ds.read_dataset(DATA_ROOT / "300w" / "lfpw" / "testset")) == 224
    assert len(ds.read_dataset(DATA_ROOT / "caricature")) == 30
    assert len(ds.read_dataset(DATA_ROOT / "cariface" / "testset")) == 5


def _bad(shape, edit):
    pts = shape.copy()
    edit(pts)
    return pts


@pytest.mark.parametrize("image_hw, edit, says", [
    ((20, 20), lambda p: None, "image 20x20 is smaller than 32x32"),
    ((128, 128), lambda p: p.__setitem__((3, 0), 99999), "coordinates outside the 128x128 image"),
    ((128, 128), lambda p: p.__setitem__((3, 0), np.inf), "NaN or infinite"),
    ((128, 128), lambda p: p.__setitem__(45, p[36]), "inter-ocular distance 0.00 px"),
])
def test_check_face_rejects_what_cannot_be_scored(shape, image_hw, edit, says):
    with pytest.raises(ds.BadInput, match="face.jpg: " + __import__("re").escape(says)):
        ds.check_face(_bad(shape, edit), image_hw, "face.jpg")


def test_check_face_accepts_points_just_outside_the_frame(shape):
    pts = shape.copy()
    pts[8, 1] = 127 + 5  # an occluded chin point a little below the frame
    np.testing.assert_array_equal(ds.check_face(pts, (128, 128, 3), "face.jpg"), pts)
    with pytest.raises(ds.BadInput, match="67 points"):
        ds.check_face(shape[:67], (128, 128), "face.jpg")


# ------------------------------------------------------------------ issue 51

@pytest.mark.parametrize("edit, says", [
    # item 3: outer eye corners 1.5 px apart in a face of ~100 px passed the flat 1 px minimum
    (lambda p: p.__setitem__(45, p[36] + [1.5, 0.0]), "inter-ocular distance 1.50 px (outer eye corners 36 and 45)"),
    # a point inside the image but far off the face: implausible for a face
    (lambda p: p.__setitem__(30, [395.0, 395.0]), "point 30 lies"),
])
def test_implausible_faces_are_skipped_relative_to_the_face(shape, edit, says):
    pts = _bad(shape + 20, edit)  # a ~100 px face in a 400 px image
    with pytest.raises(ds.BadInput, match="face.jpg: " + __import__("re").escape(says)):
        ds.check_face(pts, (400, 400), "face.jpg")
    ds.check_face(shape + 20, (400, 400), "face.jpg")  # the face itself passes


def test_eye_corner_check_scales_with_the_face(shape):
    """The same 12 px between the outer eye corners: implausible in a large face, plausible in a small one."""
    small = shape * 0.3 + 40
    small[45] = small[36] + [12.0, 0.0]
    large = shape * 1.5
    large[45] = large[36] + [12.0, 0.0]
    ds.check_face(small, (256, 256), "small.jpg")
    with pytest.raises(ds.BadInput, match="large.jpg: inter-ocular distance 12.00 px"):
        ds.check_face(large, (256, 256), "large.jpg")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_images_are_read_upright_whatever_their_orientation_tag(tmp_path, orientation):
    """Item 5: EXIF orientation was ignored (IMREAD_UNCHANGED). An image stored turned or mirrored, with the
    tag that says so, reads as PIL shows it after ``ImageOps.exif_transpose``: upright."""
    from PIL import Image, ImageOps
    y, x = np.mgrid[:24, :40]
    stored = np.stack([x * 6, y * 10, 255 - x * 3], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it closely
    stored[:8, :8] = 255  # a corner that tells the turns apart
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "x.png", exif=exif)  # lossless: pixels compare exactly
    Image.fromarray(stored).save(tmp_path / "x.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "x.png") as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(ds.load_image(tmp_path / "x.png"), upright)
    got = ds.load_image(tmp_path / "x.jpg")
    assert got.shape == upright.shape and np.abs(got.astype(int) - upright).mean() < 3


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, full_disk):
    """Item 9: every file is written to a temporary name and renamed into place."""
    target = tmp_path / "a.pts"
    ds.write_pts(target, np.zeros((68, 2)))
    old = target.read_bytes()
    full_disk()
    with pytest.raises(OSError, match="No space left on device") as exc:
        ds.write_pts(target, np.ones((68, 2)))
    assert str(target) in str(exc.value)
    with pytest.raises(OSError, match="b.jpg"):
        ds.save_image(tmp_path / "b.jpg", np.zeros((8, 8, 3), np.uint8))
    assert target.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["a.pts"]


def test_orphan_landmark_files_and_empty_layouts_are_named(tmp_path):
    """Item 13: a .pts without an image was never mentioned; a layout with nothing to read said nothing."""
    _write_face(tmp_path, "good", "300w")
    ds.write_pts(tmp_path / "sub" / "orphan.pts", np.zeros((68, 2)))
    errors = []
    assert [s.name for s in ds.read_dataset(tmp_path, "300w", errors)] == ["good"]
    assert errors == [f"{tmp_path / 'sub' / 'orphan.pts'}: landmark file without an image beside it "
                      f"(.jpg, .jpeg, .png, .bmp)"]
    for fmt, says in (("cariface", "no test.txt or train.txt"), ("wflw", "no list_98pt_rect_attr_*.txt")):
        errors = []
        assert ds.read_dataset(tmp_path, fmt, errors) == [] and len(errors) == 1 and says in errors[0]
