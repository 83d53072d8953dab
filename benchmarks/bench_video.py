"""Real-time landmarks on video: renders a clip of one procedural person turning their
head, talking and blinking (640 x 480, exact landmarks per frame), then runs
``lib.evaluation.video`` over it with the profile's real-only detector, end to end
(decode, track, predict, draw, encode). Prints fps, the time per frame of detection,
landmarks and drawing, and the NME against the rendered landmarks. Asserts nothing.

    ./study run python -m benchmarks.bench_video --profile cpu [--frames 300] [--keep out.mp4]

Uses models/<profile>/detector_real if it exists, else the profile's network with random
weights (same speed; the NME is then meaningless)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from lib import pipeline
from lib.data.procedural import talking_head
from lib.detector import model as det
from lib.detector.network import NetworkConfig, build_network
from lib.evaluation import video as vd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", default=None, help="also write the annotated video here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp())
    folder = pipeline.models_dir(a.profile) / "detector_real"
    if not (folder / "model.safetensors").exists():
        folder = work / "untrained"
        cfg = NetworkConfig(**pipeline.load_params(a.profile)["detector"]["model"])
        det.save_detector(folder, build_network(cfg, pretrained=False).eval(), 0.25)
        print("(no trained detector for this profile: timing its network with random weights)")
    clip = work / "talking_head.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    truth = []
    for frame, pts in talking_head(0, a.frames, 640, 480):
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
        truth.append(pts)
    writer.release()
    tracker = vd.FaceTracker(det.Detector(folder, box="landmarks"))
    cap = vd.open_source(clip)
    report = vd.run(tracker, cap, a.keep or work / "annotated.mp4", source=str(clip), truth=np.array(truth))
    cap.release()
    print(f"{a.frames} frames of 640x480 from {folder}, {torch.get_num_threads()} torch thread(s)")
    print(f"end to end: {report['fps']:.1f} fps (read, track, predict, draw, write); "
          f"per frame: detection {report['detection_ms']:.2f} ms, landmarks {report['landmarks_ms']:.2f} ms, "
          f"drawing + writing {report['drawing_ms']:.2f} ms")
    print(f"frames with a face: {report['frames_with_face']}/{report['frames']}; "
          f"NME against the rendered landmarks: {report['nme']:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
