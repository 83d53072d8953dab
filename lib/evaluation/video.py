"""Landmarks on video, frame by frame: the face finder gives the first box, the
landmarks of each frame give the next frame's box (tracking), and the finder looks
again when the track is lost (the landmarks leave the frame or jump in size) or every
``redetect_every`` frames. Writes an annotated video (landmarks, box, fps) with OpenCV.

    python -m lib.evaluation.video --detector models/cpu/detector_real --video in.mp4 --out annotated.mp4
    python -m lib.evaluation.video --detector models/cpu/detector_real --camera 0 --out webcam.mp4

A missing camera or an unreadable video is one clear error; frames without a face are
written unannotated ("no face") and the run goes on. Prints frames, fps and the time
per frame of detection, landmarks and drawing.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..core import crop as cr
from ..core.faces import FaceFinder
from ..core.predictor import Predictor

STAGES = ("detection", "landmarks", "drawing")


class VideoError(RuntimeError):
    """A video source that cannot be opened or read, or an output that cannot be written."""


@dataclass
class FrameResult:
    landmarks: np.ndarray | None  # (68, 2) in frame pixels; None: no face in this frame
    box: cr.Box | None            # the tight landmark box the landmarks were predicted in
    detected: bool                # the finder ran on this frame
    seconds: dict = field(default_factory=dict)  # per stage


class FaceTracker:
    """Per-frame landmarks of one face. `predictor` takes a tight landmark box (a trained
    detector folder in the landmark-box protocol); `finder` finds the face when there is
    no track. The track is the tight box of the last landmarks; it is lost when that box's
    centre leaves the frame, it shrinks below `min_size` pixels or grows beyond the frame,
    or its size changes by more than `max_jump` times between frames."""

    def __init__(self, predictor: Predictor, finder: FaceFinder | None = None, redetect_every: int = 30,
                 min_size: float = 24.0, max_jump: float = 1.5):
        self.predictor = predictor
        self.finder = finder or FaceFinder(upsample=0, max_side=320)
        self.redetect_every = redetect_every
        self.min_size, self.max_jump = min_size, max_jump
        self.box: cr.Box | None = None
        self.since_detection = 0

    def _lost(self, box: cr.Box, shape) -> bool:
        h, w = shape[:2]
        if not self.min_size <= box.size <= max(h, w) or not (0 <= box.cx < w and 0 <= box.cy < h):
            return True
        return self.box is not None and not 1 / self.max_jump < box.size / self.box.size < self.max_jump

    def process(self, frame: np.ndarray) -> FrameResult:
        """Landmarks of the face in an RGB frame (or None)."""
        seconds = dict.fromkeys(STAGES[:2], 0.0)
        detected = False
        if self.box is None or (self.redetect_every and self.since_detection >= self.redetect_every):
            t0 = time.perf_counter()
            found = self.finder.find(frame, self.box)
            seconds["detection"] = time.perf_counter() - t0
            detected, self.since_detection = True, 0
            if found is not None:
                self.box = found
            elif self.box is None:
                return FrameResult(None, None, True, seconds)
            # the finder missed a face the track still holds (profile views): keep tracking
        self.since_detection += 1
        t0 = time.perf_counter()
        box = self.box
        points = self.predictor.predict(frame, box).landmarks
        seconds["landmarks"] = time.perf_counter() - t0
        nxt = cr.box_from_landmarks(points, 0.0)
        if self._lost(nxt, frame.shape):
            self.box = None  # look again on the next frame
            return FrameResult(None, None, detected, seconds)
        self.box = nxt
        return FrameResult(points, box, detected, seconds)


def draw(frame_bgr: np.ndarray, result: FrameResult, fps: float | None) -> np.ndarray:
    """Landmarks, box and the fps on a BGR frame (in place; returned)."""
    if result.landmarks is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in result.box.xyxy)
        cv2.rectangle(frame_bgr, (x0, y0), (x1, y1), (255, 200, 0), 1, cv2.LINE_AA)
        for x, y in result.landmarks:
            cv2.circle(frame_bgr, (int(round(x)), int(round(y))), 2, (0, 255, 0), -1, cv2.LINE_AA)
    else:
        cv2.putText(frame_bgr, "no face", (10, frame_bgr.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 0, 255), 1, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(frame_bgr, f"{fps:.0f} fps", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2,
                    cv2.LINE_AA)
    return frame_bgr


def open_source(video: str | Path | None = None, camera: int | None = None) -> cv2.VideoCapture:
    """An opened capture of a video file or a camera, or VideoError saying which failed."""
    if (video is None) == (camera is None):
        raise ValueError("give exactly one of a video file or a camera index")
    if video is not None:
        if not Path(video).is_file():
            raise VideoError(f"{video}: no such video file")
        cap = cv2.VideoCapture(str(video))
        if not cap.isOpened():
            raise VideoError(f"{video}: OpenCV cannot read it as a video")
        return cap
    cap = cv2.VideoCapture(int(camera))
    if not cap.isOpened():
        raise VideoError(f"camera {camera}: cannot be opened (no such device, or it is in use)")
    return cap


def run(tracker: FaceTracker, cap: cv2.VideoCapture, out: str | Path | None = None, max_frames: int | None = None,
        source: str = "video", truth=None) -> dict:
    """Track through `cap`, writing the annotated frames to `out` (mp4) when given.
    Returns frames, frames with a face, fps end to end and mean milliseconds per frame
    of each stage. `truth`: optional per-frame (68, 2) landmarks; adds the mean NME."""
    from ..core import metrics
    writer, n, with_face, nmes = None, 0, 0, []
    totals = dict.fromkeys(STAGES, 0.0)
    fps, start = None, time.perf_counter()
    try:
        while max_frames is None or n < max_frames:
            t_frame = time.perf_counter()
            ok, frame_bgr = cap.read()
            if not ok:
                if n == 0:
                    raise VideoError(f"{source}: no frame could be read")
                break
            result = tracker.process(np.ascontiguousarray(frame_bgr[..., ::-1]))
            t0 = time.perf_counter()
            draw(frame_bgr, result, fps)
            if out is not None:
                if writer is None:
                    h, w = frame_bgr.shape[:2]
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"),
                                             cap.get(cv2.CAP_PROP_FPS) or 30.0, (w, h))
                    if not writer.isOpened():
                        raise VideoError(f"{out}: cannot be written as an mp4 video")
                writer.write(frame_bgr)
            result.seconds["drawing"] = time.perf_counter() - t0
            for k in STAGES:
                totals[k] += result.seconds.get(k, 0.0)
            if result.landmarks is not None:
                with_face += 1
                if truth is not None:
                    nmes.append(float(metrics.nme_per_image(result.landmarks[None], truth[n][None])[0]) * 100)
            n += 1
            fps = 1.0 / max(time.perf_counter() - t_frame, 1e-9) if fps is None else \
                0.9 * fps + 0.1 / max(time.perf_counter() - t_frame, 1e-9)
    finally:
        if writer is not None:
            writer.release()
    seconds = time.perf_counter() - start
    report = {"frames": n, "frames_with_face": with_face, "fps": n / seconds if seconds else 0.0,
              **{f"{k}_ms": totals[k] / max(n, 1) * 1000 for k in STAGES}}
    if truth is not None:
        report["nme"] = float(np.mean(nmes)) if nmes else float("nan")
    return report


def main(argv=None) -> int:
    from ..detector.model import BadDetectorFolder, Detector
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="a video file")
    src.add_argument("--camera", type=int, help="a camera index (0: the first)")
    ap.add_argument("--detector", required=True, help="a trained detector folder (models/<profile>/detector_real)")
    ap.add_argument("--out", help="the annotated video to write (.mp4)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--redetect-every", type=int, default=30, help="frames between checks by the face finder")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (batch 1: one is fastest)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        tracker = FaceTracker(Detector(a.detector, box="landmarks"), redetect_every=a.redetect_every)
        cap = open_source(a.video, a.camera)
    except (BadDetectorFolder, VideoError) as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        report = run(tracker, cap, a.out, a.max_frames, a.video or f"camera {a.camera}")
    except VideoError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        cap.release()
    print(", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
