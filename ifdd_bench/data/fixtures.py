"""Tiny datasets in the official DFEW, FERV39k and MAFW layouts (tests and ``data bench``).

Frames are smooth random colour fields with a moving bright square (so resizing, cropping and
frame order are visible), written as JPEG (DFEW, FERV39k) or PNG (MAFW). Each writer returns the
root folder. Quirks are opt-in so tests can exercise the documented rules.

Raw clips for the face cropper (tests and ``benchmarks/bench_faces.py``): :func:`face_clip_frames`
moves and scales a real face photograph that ships inside scikit-image's wheel, with its true
position per frame; :func:`scene_clip_frames` pans over a photograph without a face;
:func:`write_video` encodes frames with PyAV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ifdd_bench.data.labels import DFEW_CLASSES


def frame_image(index: int, size: tuple[int, int] = (64, 64), seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A deterministic test frame (``size`` = (width, height)); frame ``index`` moves the square."""
    w, h = size
    rng = np.random.default_rng([seed, index])
    base = rng.integers(40, 200, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        img[..., c] = base[c] + 30 * np.sin((xx + 7 * c) / max(w, 1) * 6.28) + 20 * np.cos(yy / max(h, 1) * 6.28)
    side = max(2, min(w, h) // 5)
    x0 = (index * 3) % max(1, w - side)
    img[h // 3:h // 3 + side, x0:x0 + side] = 250
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return out.convert(mode) if mode != "RGB" else out


def write_frames(folder: Path, count: int, *, size: tuple[int, int] = (64, 64), ext: str = ".jpg",
                 names: Sequence[str] | None = None, seed: int = 0, mode: str = "RGB") -> list[Path]:
    """Write ``count`` frames ``1.jpg .. count.jpg`` (or ``names``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else [f"{i + 1}{ext}" for i in range(count)]
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        img = frame_image(i, size, seed, mode)
        if path.suffix.lower() in (".jpg", ".jpeg"):
            img.save(path, quality=90)
        else:
            img.save(path)
        paths.append(path)
    return paths


def write_dfew(root: Path, clips: Sequence[tuple[int, int, int]], *, fold: int = 1,
               test: Sequence[tuple[int, int, int]] = (), official_names: bool = True, frames_dir: str = "16f",
               size: int = 64, label0: Sequence[int] = ()) -> Path:
    """DFEW layout: ``clips`` / ``test`` are ``(clip number, 1-based label, frame count)``.

    ``label0`` adds rows with label 0 (skipped by the reader, no folder written).
    ``official_names``: ``train(single-labeled)`` folders; otherwise ``train_single-labeled``.
    """
    clip_dir = root / "Clip" / ("clip_224x224_16f" if frames_dir == "16f" else "clip_224x224")
    fmt = "{}(single-labeled)" if official_names else "{}_single-labeled"
    for split, rows in (("train", clips), ("test", test)):
        split_dir = root / "EmoLabel_DataSplit" / fmt.format(split)
        split_dir.mkdir(parents=True, exist_ok=True)
        lines = ["video_name,label"] + [f"{num},{label}" for num, label, _ in rows]
        if split == "train":
            lines += [f"{num},0" for num in label0]
        (split_dir / f"set_{fold}.csv").write_text("\n".join(lines) + "\n")
        for num, _, count in rows:
            write_frames(clip_dir / f"{num:05d}", count, size=(size, size), seed=num)
    return root


def balanced_dfew_rows(per_class: int, frames: int = 16, start: int = 1) -> list[tuple[int, int, int]]:
    """``per_class`` clips of each DFEW class as ``(number, 1-based label, frames)`` rows."""
    rows, num = [], start
    for label in range(1, len(DFEW_CLASSES) + 1):
        for _ in range(per_class):
            rows.append((num, label, frames))
            num += 1
    return rows


def write_ferv39k(root: Path, train: Sequence[tuple[str, str, int]], test: Sequence[tuple[str, str, int]] = (),
                  *, setups_dir: bool = True, size: int = 64, test_name: str = "test_All.csv") -> Path:
    """FERV39k layout: rows ``(scene, emotion word, frame count)``; clip ids numbered per row."""
    list_dir = root / ("4_setups/All_scenes" if setups_dir else "All_scenes")
    list_dir.mkdir(parents=True, exist_ok=True)
    num = 1
    for name, rows in (("train_All.csv", train), (test_name, test)):
        lines = []
        for scene, emotion, count in rows:
            rel = f"{scene}/{emotion}/{num:04d}"
            lines.append(f"{rel} {emotion}")
            write_frames(root / "2_ClipsforFaceCrop" / rel, count, size=(size, size), seed=num,
                         names=[f"{i + 1:04d}.jpg" for i in range(count)])
            num += 1
        (list_dir / name).write_text("\n".join(lines) + ("\n" if lines else ""))
    return root


def write_mafw(root: Path, train: Sequence[tuple[str, int]], test: Sequence[tuple[str, int]] = (), *,
               fold: int = 1, frame_dir: str = "frames", list_parent: str = "Train & Test Set/single/no_caption",
               size: tuple[int, int] = (80, 60)) -> Path:
    """MAFW layout: rows ``(label word, frame count)``; PNG frames of a non-square ``size``."""
    set_dir = root / list_parent / f"set_{fold}"
    set_dir.mkdir(parents=True, exist_ok=True)
    num = 1
    for name, rows in (("train.txt", train), ("test.txt", test)):
        lines = []
        for word, count in rows:
            lines.append(f"{num:05d}.mp4 {word}")
            write_frames(root / frame_dir / f"{num:05d}", count, size=size, ext=".png", seed=num)
            num += 1
        (set_dir / name).write_text("\n".join(lines) + ("\n" if lines else ""))
    return root


#: the astronaut's face in ``skimage.data.astronaut()`` (512 x 512): centre between the eyes and the
#: mouth, and the face's width cheek to cheek, in pixels, read off the photograph by hand
ASTRONAUT_FACE = (225.0, 118.0, 92.0)


def face_clip_frames(n: int = 24, size: tuple[int, int] = (320, 240)) -> tuple[list[np.ndarray], np.ndarray]:
    """A raw clip with one real face: the astronaut photograph moving right, bobbing and growing
    (face width 0.13 -> 0.17 of the frame width) over scikit-image's coffee photograph.

    Returns the RGB frames ``(H, W, 3)`` and the true face per frame ``(n, 3)`` = cx, cy, width.
    Needs scikit-image (test extra), whose wheel holds both photographs.
    """
    from skimage import data

    width, height = size
    photo = Image.fromarray(data.astronaut())
    background = Image.fromarray(data.coffee()).resize(size)
    fx, fy, fw = ASTRONAUT_FACE
    frames, truth = [], []
    for t in range(n):
        scale = (0.45 + 0.15 * t / max(n - 1, 1)) * width / 320
        cx, cy = width * (0.34 + 0.31 * t / max(n - 1, 1)), height * (0.5 + 0.08 * np.sin(t / 4))
        left, top = round(cx - fx * scale), round(cy - fy * scale)
        frame = background.copy()
        frame.paste(photo.resize((round(512 * scale),) * 2, Image.BILINEAR), (left, top))
        frames.append(np.asarray(frame))
        truth.append((left + fx * scale, top + fy * scale, fw * scale))
    return frames, np.array(truth)


def scene_clip_frames(name: str = "coffee", n: int = 12, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """A raw clip without a face: a slow pan over scikit-image's photograph ``name`` (coffee, rocket ...)."""
    from skimage import data

    photo = Image.fromarray(getattr(data, name)()).resize((size[0] + 2 * n, size[1]))
    return [np.asarray(photo.crop((2 * t, 0, 2 * t + size[0], size[1]))) for t in range(n)]


def write_video(path: Path, frames: Sequence[np.ndarray], *, rate: int = 10, rotation: int = 0) -> Path:
    """Encode RGB frames ``(H, W, 3)`` as MPEG-4 with PyAV; ``rotation``: the display rotation in
    degrees counter-clockwise (a phone clip stored sideways)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", 2_000_000
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


__all__ = ["frame_image", "write_frames", "write_dfew", "balanced_dfew_rows", "write_ferv39k", "write_mafw",
           "ASTRONAUT_FACE", "face_clip_frames", "scene_clip_frames", "write_video"]
