"""Tests for lib.evaluation.video: tracking through a rendered clip, frames without a face,
and clear errors for sources that cannot be read."""
import cv2
import numpy as np
import pytest

from lib.core.predictor import Prediction, Predictor
from lib.data.procedural import talking_head
from lib.evaluation import video as vd


class Truth(Predictor):
    """Returns the clip's exact landmarks for the frame being processed, so the tracker alone
    is under test; `boxes` holds the box it was given in each frame."""
    needs_box = True

    def __init__(self, truth):
        self.truth, self.frame, self.boxes = truth, -1, {}

    def predict(self, image, gt_box=None):
        self.boxes[self.frame] = gt_box
        return Prediction(self.truth[self.frame], "landmarks")


class TruthFinder:
    """Finds the face where the clip's landmarks are, counting its calls."""

    def __init__(self, truth, predictor):
        self.truth, self.predictor, self.calls = truth, predictor, 0

    def find(self, image, near=None):
        from lib.core import crop as cr
        self.calls += 1
        return cr.box_from_landmarks(self.truth[self.predictor.frame], 0.0)


class Counting(vd.FaceTracker):
    def process(self, frame):
        self.predictor.frame += 1
        return super().process(frame)


def _clip(path, frames, blank_from=None):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (160, 120))
    truth = []
    for t, (frame, pts) in enumerate(talking_head(3, frames, 160, 120)):
        if blank_from is not None and t >= blank_from:
            frame = np.zeros_like(frame)
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
        truth.append(pts)
    writer.release()
    return np.array(truth)


def test_talking_head_moves_and_stays_in_frame():
    frames = list(talking_head(1, 8, 200, 150))
    assert all(f.shape == (150, 200, 3) for f, _ in frames)
    pts = np.array([p for _, p in frames])
    assert (pts[..., 0] > 0).all() and (pts[..., 0] < 200).all() and (pts[..., 1] < 150).all()
    assert np.ptp(pts[:, 30, 0]) > 5  # the nose tip moves as the head turns


def test_tracks_with_the_last_landmarks_and_writes_every_frame(tmp_path):
    truth = _clip(tmp_path / "in.mp4", 12)
    predictor = Truth(truth)
    finder = TruthFinder(truth, predictor)
    tracker = Counting(predictor, finder, redetect_every=5)
    cap = vd.open_source(tmp_path / "in.mp4")
    report = vd.run(tracker, cap, tmp_path / "out.mp4", source="in.mp4", truth=truth)
    cap.release()
    assert report["frames"] == 12 and report["frames_with_face"] == 12
    assert report["nme"] == pytest.approx(0.0, abs=1e-9)
    assert finder.calls == 3  # frames 0, 5 and 10: the first box and the periodic checks
    # after the first frame, the box is the tight box of the previous frame's landmarks
    from lib.core import crop as cr
    k = 3
    assert predictor.boxes[k] == cr.box_from_landmarks(truth[k - 1], 0.0)
    out = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(out.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    for stage in vd.STAGES:
        assert report[f"{stage}_ms"] >= 0


def test_frames_without_a_face_do_not_crash(tmp_path):
    truth = _clip(tmp_path / "in.mp4", 6, blank_from=0)

    class Nothing(Predictor):
        needs_box = True

        def predict(self, image, gt_box=None):
            raise AssertionError("no face was found, so nothing should be predicted")

    cap = vd.open_source(tmp_path / "in.mp4")
    report = vd.run(vd.FaceTracker(Nothing()), cap, tmp_path / "out.mp4")
    assert report["frames"] == 6 and report["frames_with_face"] == 0 and len(truth) == 6


def test_lost_track_looks_again():
    from lib.core import crop as cr
    frame, pts = next(talking_head(2, 1, 160, 120))
    collapsed = np.full((68, 2), 5.0) + np.random.default_rng(0).normal(0, 0.1, (68, 2))

    class Jumpy(Predictor):
        needs_box = True
        calls = 0

        def predict(self, image, gt_box=None):
            self.calls += 1
            return Prediction(collapsed if self.calls == 1 else pts, "landmarks")

    class Finder:
        def find(self, image, near=None):
            return cr.box_from_landmarks(pts, 0.0)

    predictor = Jumpy()
    tracker = vd.FaceTracker(predictor, Finder())
    result = tracker.process(frame)  # the finder's box, then landmarks collapsed to a point: lost
    assert predictor.calls == 1 and result.landmarks is None and tracker.box is None
    result = tracker.process(frame)  # so the next frame asks the finder again, and tracks
    assert result.detected and result.landmarks is not None and tracker.box == cr.box_from_landmarks(pts, 0.0)


def test_unreadable_sources_are_clear_errors(tmp_path):
    with pytest.raises(vd.VideoError, match="no such video file"):
        vd.open_source(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(vd.VideoError, match="junk.mp4"):
        cap = vd.open_source(tmp_path / "junk.mp4")
        vd.run(vd.FaceTracker(Truth([]), TruthFinder([], None)), cap, source=str(tmp_path / "junk.mp4"))
    with pytest.raises(vd.VideoError, match="camera 99: cannot be opened"):
        vd.open_source(camera=99)
    with pytest.raises(SystemExit, match="error: camera 99"):
        from lib.detector import model as det
        from lib.detector.network import build_network
        from tests.detector.conftest import MCFG
        det.save_detector(tmp_path / "d", build_network(MCFG).eval(), 0.25)
        vd.main(["--camera", "99", "--detector", str(tmp_path / "d")])


def test_a_track_that_outgrows_the_frame_is_lost():
    from lib.core import crop as cr
    frame, pts = next(talking_head(2, 1, 160, 120))
    huge = (pts - pts.mean(0)) * 8 + pts.mean(0)  # 8x the face: wider than the frame

    class Growing(Predictor):
        needs_box = True

        def predict(self, image, gt_box=None):
            return Prediction(huge, "landmarks")

    class Finder:
        def find(self, image, near=None):
            return cr.box_from_landmarks(pts, 0.0)

    tracker = vd.FaceTracker(Growing(), Finder(), max_jump=100)
    assert tracker.process(frame).landmarks is None and tracker.box is None
