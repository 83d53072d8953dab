from lib.core.naming import slug


def test_slug_makes_file_names():
    assert slug("real only (dlib detector box)") == "real_only_dlib_detector_box"
    assert slug("mean_shape") == "mean_shape"
