"""Find, follow and crop the face of a raw clip, so that it looks like the datasets' face crops.

DFEW, FERV39k and MAFW train and test on 224 x 224 face crops; a phone clip or a webcam recording
shows a whole scene. :func:`crop_clip` turns such a clip (a video file or a folder of frames) into a
folder of face-crop frames ``1.jpg .. N.jpg`` that the readers and ``predict`` take like a dataset
clip::

    result = crop_clip(Path("talk.mp4"), Path("crops/talk"))     # CropConfig() defaults
    result.frames, result.detected, result.examined                 # 120, 57, 60

Steps, each with its knob in :class:`CropConfig`:

1. **Detect** on every ``detect_every``-th frame, in a grayscale copy whose shorter side is scaled
   so that the smallest face looked for (``min_face`` of the shorter side) is the detector's
   24-pixel window: OpenCV's frontal-face Haar cascade ``haarcascade_frontalface_alt2.xml``, which
   ships inside ``opencv-python-headless`` 4.x (extra ``ifdd-bench[face]``; nothing is downloaded).
2. **Follow one face** (:func:`follow_face`): start at the largest face that the neighbouring
   detection confirms, then keep the detection that overlaps the followed box most; after
   ``reacquire`` examined frames without it, take the largest face again (a cut, a new speaker).
3. **Smooth** (:func:`smooth_track`): the box centre and side are interpolated linearly over the
   frames without a detection (held at the ends) and averaged over a centred window of ``smooth``
   frames, which removes the detector's jitter without lagging behind a moving head.
4. **Crop** (:func:`crop_boxes`): a square of side ``(1 + 2 * margin)`` times the box, its centre
   moved down by ``shift`` times the box (the cascade's box ends at the mouth; the chin belongs in),
   kept inside the frame (moved in, or shrunk to the frame's shorter side), resized to ``size``.

A clip in whose examined frames the face is found less often than ``min_detected`` raises
:class:`NoFaceError`, a :class:`~ifdd_bench.errors.DataError`: a clip without a face gets no emotion.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ifdd_bench.data.decode import _import_av, list_frames, upright_rgb
from ifdd_bench.errors import ConfigError, DataError

CASCADE = "haarcascade_frontalface_alt2.xml"
#: the cascade's detection window (pixels); faces smaller than this in the detection image are missed
WINDOW = 24
JPEG_QUALITY = 95


class NoFaceError(DataError):
    """A clip in which no face (or a face in too few frames) was found."""


@dataclass(frozen=True)
class CropConfig:
    """How a raw clip becomes a face crop (defaults: the datasets' 224 x 224 crops)."""

    size: int = 224  # output side in pixels; DFEW, FERV39k and MAFW ship 224 x 224 face crops
    margin: float = 0.2  # added on each side of the detected box, as a fraction of its side
    shift: float = 0.05  # crop centre moved down by this fraction of the box side
    detect_every: int = 2  # run the detector on every k-th frame (the track fills the others)
    min_face: float = 0.08  # smallest face looked for, as a fraction of the frame's shorter side
    smooth: int = 7  # centred moving-average window (frames) of the box centre and side
    min_detected: float = 0.25  # share of the examined frames that must show the face
    reacquire: int = 3  # examined frames without the followed face before the largest is taken

    def __post_init__(self) -> None:
        checks = [("size", 16 <= self.size <= 2048, "in [16, 2048]"),
                  ("margin", 0.0 <= self.margin <= 2.0, "in [0, 2]"),
                  ("shift", -0.5 <= self.shift <= 0.5, "in [-0.5, 0.5]"),
                  ("detect_every", 1 <= self.detect_every <= 100, "in [1, 100]"),
                  ("min_face", 0.01 <= self.min_face <= 1.0, "in [0.01, 1]"),
                  ("smooth", 1 <= self.smooth <= 301 and self.smooth % 2 == 1, "odd, in [1, 301] (a centred window)"),
                  ("min_detected", 0.0 < self.min_detected <= 1.0, "in (0, 1]"),
                  ("reacquire", 1 <= self.reacquire <= 1000, "in [1, 1000]")]
        for name, ok, valid in checks:
            if not ok:
                raise ConfigError(f"face crop setting {name}={getattr(self, name)!r} must be {valid}")

    def settings(self) -> dict[str, Any]:
        """The knobs as a plain dict (recorded next to the crops)."""
        return asdict(self)


@dataclass
class CropResult:
    """What :func:`crop_clip` did to one clip."""

    source: Path
    out_dir: Path | None
    frames: int  # frames written (all frames of the clip)
    examined: int  # frames the detector ran on
    detected: int  # examined frames in which the followed face was found
    width: int  # frame size the boxes refer to (upright)
    height: int
    boxes: np.ndarray = field(repr=False)  # (frames, 4) crop boxes x0, y0, x1, y1 in frame pixels

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: frames, examined, detected, median crop side in pixels."""
        side = float(np.median(self.boxes[:, 2] - self.boxes[:, 0])) if len(self.boxes) else 0.0
        return {"frames": self.frames, "examined": self.examined, "detected": self.detected,
                "frame_size": [self.width, self.height], "crop_side_px": round(side, 1)}


# --------------------------------------------------------------------------------------------
# detector


def import_cv2():
    """``cv2`` with its Haar cascades, or a DataError saying what to install."""
    try:
        import cv2
    except ImportError:
        raise DataError("face cropping needs OpenCV, which is not installed",
                        hint="pip install 'ifdd-bench[face]' (predict only: --no-crop skips cropping for "
                             "clips that are already face crops)") from None
    if not hasattr(cv2, "data") or not (Path(cv2.data.haarcascades) / CASCADE).is_file():
        raise DataError(f"OpenCV {cv2.__version__} has no {CASCADE} (OpenCV 5 wheels no longer ship the "
                        "Haar cascades)", hint="pip install 'opencv-python-headless>=4.5,<5'")
    return cv2


class FaceDetector:
    """OpenCV's frontal-face Haar cascade: ``detector(gray)`` -> ``int (N, 4)`` boxes x, y, w, h.

    ``scale_factor`` 1.2 (OpenCV's default is 1.1): 2.4x faster for 97 instead of 98 of the 100 LFW
    faces of ``benchmarks/bench_faces.py``. One detector per thread.
    """

    def __init__(self, scale_factor: float = 1.2, min_neighbors: int = 5):
        self.cv2 = import_cv2()
        self._cascade = self.cv2.CascadeClassifier(str(Path(self.cv2.data.haarcascades) / CASCADE))
        if self._cascade.empty():
            raise DataError(f"OpenCV could not load its {CASCADE}", hint="reinstall opencv-python-headless")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        """Faces in a uint8 grayscale image ``(H, W)`` -> ``(N, 4)`` int boxes x, y, w, h."""
        eq = self.cv2.equalizeHist(gray)
        found = self._cascade.detectMultiScale(eq, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(WINDOW, WINDOW))
        return np.asarray(found, dtype=np.int64).reshape(-1, 4)

    def describe(self) -> dict[str, Any]:
        """Which detector made the crops (recorded with them)."""
        return {"detector": f"opencv haar {CASCADE}", "opencv": self.cv2.__version__,
                "scale_factor": self.scale_factor, "min_neighbors": self.min_neighbors}


# --------------------------------------------------------------------------------------------
# following one face and smoothing its box (numpy only)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one x, y, w, h box with each of ``boxes`` ``(N, 4)`` -> ``(N,)``."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def _anchor(detections: Sequence[np.ndarray | None], min_iou: float) -> tuple[int, np.ndarray] | None:
    """The largest face that the nearest other examined frame with faces also shows (else the largest)."""
    found = [i for i, d in enumerate(detections) if d is not None and len(d)]
    if not found:
        return None
    best: tuple[float, bool, int, np.ndarray] | None = None
    for pos, i in enumerate(found):
        neighbours = [detections[j] for j in (found[pos - 1] if pos else None,
                                             found[pos + 1] if pos + 1 < len(found) else None) if j is not None]
        for box in detections[i]:
            confirmed = any(_iou(box, other).max() >= min_iou for other in neighbours)
            key = (confirmed, float(box[2] * box[3]))
            if best is None or key > best[:2]:
                best = (*key, i, box)
    return best[2], best[3]


def follow_face(detections: Sequence[np.ndarray | None], *, min_iou: float = 0.2,
                reacquire: int = 3) -> list[np.ndarray | None]:
    """The box of the followed face in each frame (``None`` where it was not found).

    ``detections[i]`` holds the ``(N, 4)`` x, y, w, h boxes found in frame ``i``, or ``None`` for a
    frame the detector did not run on. The track starts at :func:`_anchor`'s face and runs forwards
    and backwards from there; in each examined frame it keeps the box overlapping the previous one
    most (IoU >= ``min_iou``); after ``reacquire`` examined frames without such a box it takes the
    largest face there is.
    """
    chosen: list[np.ndarray | None] = [None] * len(detections)
    start = _anchor(detections, min_iou)
    if start is None:
        return chosen
    anchor, box = start
    chosen[anchor] = box
    for step, stop in ((1, len(detections)), (-1, -1)):
        current, missed = box, 0
        for i in range(anchor + step, stop, step):
            found = detections[i]
            if found is None:
                continue
            pick = None
            if len(found):
                overlap = _iou(current, found)
                if overlap.max() >= min_iou:
                    pick = found[int(overlap.argmax())]
                elif missed >= reacquire:
                    pick = found[int(np.argmax(found[:, 2] * found[:, 3]))]
            if pick is None:
                missed += 1
                continue
            chosen[i], current, missed = pick, pick, 0
    return chosen


def smooth_track(chosen: Sequence[np.ndarray | None], window: int) -> np.ndarray:
    """Per-frame box centre and side ``(T, 3)`` = cx, cy, side from the followed boxes.

    Frames without a box get the linear interpolation of their neighbours (the first and last box
    held at the ends); then a centred moving average over ``window`` frames (narrower near the
    clip's ends, so it stays centred) smooths centre and side. Raises ValueError when no frame has a box.
    """
    have = [i for i, b in enumerate(chosen) if b is not None]
    if not have:
        raise ValueError("no frame has a face box")
    boxes = np.stack([chosen[i] for i in have]).astype(np.float64)  # (K, 4) x, y, w, h
    known = np.stack([boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2,
                      np.sqrt(boxes[:, 2] * boxes[:, 3])], axis=1)  # (K, 3) cx, cy, side
    frames = np.arange(len(chosen))
    track = np.stack([np.interp(frames, have, known[:, k]) for k in range(3)], axis=1)  # (T, 3)
    # centred window of 2h+1 frames, narrowed near the ends so that it stays centred (no lag there)
    half = np.minimum(window // 2, np.minimum(frames, len(chosen) - 1 - frames))  # (T,)
    sums = np.vstack([np.zeros((1, 3)), np.cumsum(track, axis=0)])  # (T + 1, 3)
    return (sums[frames + half + 1] - sums[frames - half]) / (2 * half + 1)[:, None]


def crop_boxes(track: np.ndarray, width: int, height: int, *, margin: float, shift: float) -> np.ndarray:
    """Square crop boxes ``(T, 4)`` = x0, y0, x1, y1 (float pixels) inside a ``width x height`` frame.

    Side ``(1 + 2 margin) * side``, centre moved down by ``shift * side``; a box that would leave the
    frame is moved in, and one larger than the frame's shorter side is shrunk to it first.
    """
    side = np.minimum(track[:, 2] * (1 + 2 * margin), min(width, height))  # (T,)
    cx, cy = track[:, 0], track[:, 1] + shift * track[:, 2]
    x0 = np.clip(cx - side / 2, 0, width - side)
    y0 = np.clip(cy - side / 2, 0, height - side)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


# --------------------------------------------------------------------------------------------
# reading a clip's frames (video file or folder of images), upright


def _rgb_frames(path: Path) -> Iterator[np.ndarray]:
    """Upright RGB ``uint8 (H, W, 3)`` frames of a video file or a folder of images, in order."""
    if path.is_dir():
        from PIL import Image

        frames = list_frames(path)
        if not frames:
            raise DataError(f"{path} contains no image frames (.jpg/.png/...)")
        for f in frames:
            try:
                with Image.open(f) as img:
                    yield np.asarray(img.convert("RGB"))
            except OSError as err:
                raise DataError(f"cannot read frame {f}: {err}", hint="re-extract the clip's frames") from None
        return
    av = _import_av()
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield upright_rgb(frame)
    except (IndexError, av.error.FFmpegError, OSError) as err:
        raise DataError(f"cannot decode video {path}: {err}", hint="check the file plays, or re-encode it") from None


def _detection_gray(rgb: np.ndarray, scale: float, cv2) -> np.ndarray:
    """Grayscale copy of a frame scaled by ``scale`` (area interpolation) -> uint8 ``(h, w)``."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        h, w = gray.shape
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return gray


def detect_clip(source: Path, cfg: CropConfig, detector: FaceDetector) -> tuple[list[np.ndarray | None], int, int]:
    """Run the detector over a clip: ``(detections per frame in frame pixels, width, height)``.

    ``detections[i]`` is ``None`` for frames skipped by ``detect_every``. The detection image is
    scaled (never up) so that ``min_face`` of the shorter side is the cascade's window.
    """
    cv2 = detector.cv2
    detections: list[np.ndarray | None] = []
    width = height = 0
    scale = 1.0
    for i, rgb in enumerate(_rgb_frames(source)):
        if i == 0:
            height, width = rgb.shape[:2]
            scale = min(1.0, WINDOW / (cfg.min_face * min(width, height)))
        elif rgb.shape[:2] != (height, width):
            raise DataError(f"{source}: frame {i + 1} is {rgb.shape[1]}x{rgb.shape[0]}, the first is "
                            f"{width}x{height}", hint="the frames of one clip must share one size")
        if i % cfg.detect_every:
            detections.append(None)
            continue
        found = detector(_detection_gray(rgb, scale, cv2)).astype(np.float64) / scale  # (N, 4) frame pixels
        detections.append(found)
    if not detections:
        raise DataError(f"{source} has no decodable frames", hint="re-encode or remove the clip")
    return detections, width, height


def track_clip(source: Path, cfg: CropConfig, detector: FaceDetector) -> CropResult:
    """Detect, follow and smooth the face of a clip -> its crop boxes (nothing is written).

    Raises :class:`NoFaceError` when the followed face is in fewer than ``min_detected`` of the
    examined frames.
    """
    detections, width, height = detect_clip(source, cfg, detector)
    chosen = follow_face(detections, reacquire=cfg.reacquire)
    examined = sum(d is not None for d in detections)
    detected = sum(b is not None for b in chosen)
    if detected == 0 or detected < cfg.min_detected * examined:
        raise NoFaceError(f"no face found in {source}: a face was detected in {detected} of the {examined} "
                          f"frames examined (1 in {cfg.detect_every} of {len(detections)}); at least "
                          f"{cfg.min_detected:.0%} are needed",
                          hint="for a clip that is already a face crop pass --no-crop; the detector finds "
                               f"roughly frontal faces at least {cfg.min_face:.0%} of the frame's shorter side "
                               "(`data crop --min-face`)")
    boxes = crop_boxes(smooth_track(chosen, cfg.smooth), width, height, margin=cfg.margin, shift=cfg.shift)
    return CropResult(source=source, out_dir=None, frames=len(detections), examined=examined, detected=detected,
                      width=width, height=height, boxes=boxes)


def crop_clip(source: Path, out_dir: Path, cfg: CropConfig | None = None, *,
              detector: FaceDetector | None = None) -> CropResult:
    """Crop the face of ``source`` (video file or frame folder) into ``out_dir/1.jpg .. N.jpg``.

    Two passes over the clip: detection and tracking (:func:`track_clip`), then cropping every
    frame at ``cfg.size`` (bilinear, antialiased), JPEG quality 95. The frames are written into a
    hidden sibling folder that is renamed to ``out_dir`` at the end, so ``out_dir`` holds all
    frames or does not exist; ``out_dir`` must not exist yet. Raises :class:`NoFaceError` (nothing
    written) when the clip shows no face.
    """
    from PIL import Image

    cfg = cfg or CropConfig()
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DataError(f"{out_dir} already exists", hint="remove it, or choose another output folder")
    result = track_clip(Path(source), cfg, detector or FaceDetector())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        written = 0
        for i, rgb in enumerate(_rgb_frames(Path(source))):
            if i >= len(result.boxes):
                break
            box = tuple(float(v) for v in result.boxes[i])
            face = Image.fromarray(rgb).resize((cfg.size, cfg.size), Image.BILINEAR, box=box)
            face.save(tmp / f"{i + 1}.jpg", quality=JPEG_QUALITY)
            written += 1
        if written != result.frames:
            raise DataError(f"{source} gave {written} frames on the second read, {result.frames} on the first",
                            hint="check the file plays, or re-encode it")
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.out_dir = out_dir
    return result
