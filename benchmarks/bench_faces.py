"""The face cropper of raw clips (``ifdd_bench.data.faces``): how often it finds real faces, how often
it finds faces that are not there, how closely the crop follows a moving face, and how fast it is.

* **Recall**: the 100 LFW faces of ``skimage.data.lfw_subset()`` (25 x 25, upscaled to 96 px) pasted
  on a photograph without a face; a hit is a box centred within 20 px of the face.
* **False detections**: the subset's 100 patches without a face, pasted the same way, and
  scikit-image photographs without a face (coffee, rocket, cat, camera, ...).
* **Tracking**: the astronaut clip of :func:`ifdd_bench.data.fixtures.face_clip_frames` at 640 x 480,
  the crop centre against the true face centre, in face widths.
* **Speed**: detector milliseconds per frame at 640 x 360, 1280 x 720 and 1920 x 1080 (the detection
  image is scaled to a 300 px shorter side first, ``min_face=0.08``), and ``crop_clip`` frames per
  second on a 48-frame 640 x 360 clip (two decodes, detection every 2nd frame, cropping and JPEG
  writing), with one OpenCV thread.

Example::

    python benchmarks/bench_faces.py            # ~45 s on 2 cores
    python benchmarks/bench_faces.py --scale-factor 1.1   # OpenCV's default pyramid step
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from ifdd_bench.data.faces import CropConfig, FaceDetector, WINDOW, _detection_gray, crop_clip
from ifdd_bench.data.fixtures import face_clip_frames, write_video

NON_FACE_PHOTOS = ("coffee", "rocket", "chelsea", "cat", "camera", "immunohistochemistry", "hubble_deep_field",
                   "coins", "page", "text", "retina", "brick", "grass", "gravel", "colorwheel", "horse")


def lfw_rates(detector: FaceDetector) -> tuple[int, int]:
    """(faces found of 100, non-face patches with a detection of 100)."""
    lfw = data.lfw_subset()  # (200, 25, 25) in [0, 1]: 100 faces, then 100 patches without a face
    background = np.asarray(Image.fromarray(data.coffee()).convert("L").resize((240, 180)))

    def hit(i: int) -> bool:
        face = Image.fromarray((lfw[i] * 255).astype(np.uint8)).resize((96, 96), Image.BICUBIC)
        gray = background.copy()
        gray[40:136, 100:196] = np.asarray(face)  # centre (148, 88)
        return any(abs(x + w / 2 - 148) < 20 and abs(y + h / 2 - 88) < 20 for x, y, w, h in detector(gray))

    return sum(hit(i) for i in range(100)), sum(hit(i) for i in range(100, 200))


def photo_false_detections(detector: FaceDetector) -> dict[str, int]:
    out = {}
    for name in NON_FACE_PHOTOS:
        img = getattr(data, name)()
        if img.dtype != np.uint8:
            img = (img / max(img.max(), 1) * 255).astype(np.uint8)
        gray = np.asarray(Image.fromarray(img[..., :3] if img.ndim == 3 else img).convert("L"))
        out[name] = len(detector(gray))
    return out


def tracking_error(tmp: Path) -> tuple[float, float, int, int]:
    """(mean, max) crop-centre error in face widths on the 640 x 480 astronaut clip; detected/examined."""
    frames, truth = face_clip_frames(n=48, size=(640, 480))
    clip = write_video(tmp / "track.mp4", frames)
    cfg = CropConfig()
    result = crop_clip(clip, tmp / "track", cfg)
    b = result.boxes
    cx, cy, side = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0]
    face_cy = cy - cfg.shift * side / (1 + 2 * cfg.margin)
    err = np.hypot(cx - truth[:, 0], face_cy - truth[:, 1]) / truth[:, 2]
    return float(err.mean()), float(err.max()), result.detected, result.examined


def detect_ms(detector: FaceDetector, size: tuple[int, int], repeats: int) -> float:
    frames, _ = face_clip_frames(n=1, size=size)
    scale = min(1.0, WINDOW / (CropConfig().min_face * min(size)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        detector(_detection_gray(frames[0], scale, detector.cv2))
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def crop_fps(tmp: Path, repeats: int) -> float:
    frames, _ = face_clip_frames(n=48, size=(640, 360))
    clip = write_video(tmp / "speed.mp4", frames)
    detector = FaceDetector()
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        crop_clip(clip, tmp / f"speed{k}", detector=detector)
        times.append(time.perf_counter() - t0)
    return 48 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats (median reported).")
    parser.add_argument("--scale-factor", type=float, default=FaceDetector().scale_factor,
                        help="Detector pyramid step (OpenCV's default is 1.1; the cropper uses 1.2).")
    args = parser.parse_args()
    detector = FaceDetector(scale_factor=args.scale_factor)
    detector.cv2.setNumThreads(1)
    print(f"detector: {detector.describe()}")
    found, false = lfw_rates(detector)
    print(f"LFW subset: {found}/100 faces found, {false}/100 non-face patches with a detection")
    photos = photo_false_detections(detector)
    print(f"photographs without a face: {sum(photos.values())} detections in {len(photos)} "
          f"({', '.join(f'{k} {v}' for k, v in photos.items() if v) or 'none anywhere'})")
    with tempfile.TemporaryDirectory() as tmp:
        mean, worst, detected, examined = tracking_error(Path(tmp))
        print(f"tracking (640x480, 48 frames): face found in {detected}/{examined} examined frames; crop centre "
              f"error {mean:.3f} face widths mean, {worst:.3f} max")
        for size in ((640, 360), (1280, 720), (1920, 1080)):
            print(f"detect {size[0]}x{size[1]}: {detect_ms(detector, size, args.repeats):.1f} ms/frame")
        print(f"crop_clip 640x360, 48 frames: {crop_fps(Path(tmp), args.repeats):.0f} frames/s")


if __name__ == "__main__":
    main()
