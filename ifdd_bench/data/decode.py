"""Turning frames on disk into uint8 tensors: frame listing, image decoding, video decoding.

Every frame, whatever its file type, size or mode (grayscale, palette, RGBA, 16-bit PNG ...), comes
out as an RGB ``uint8`` tensor of shape ``(3, size, size)``; frames that are not ``size x size`` are
resized (bilinear, antialiased; aspect ratio not kept, as the MAFW reference does).

Decoders (``decoder=`` everywhere):

* ``"torchvision"``: ``torchvision.io.decode_image`` (libjpeg-turbo / libpng) then one batched
  ``resize`` for the whole clip.
* ``"pil"``: Pillow; JPEGs use draft mode, i.e. the decoder scales by 1/2, 1/4 or 1/8 inside the
  DCT when the file is at least twice the target size, which makes 224 -> 112 decoding cheap.
* ``"auto"`` (default): Pillow when the frames are JPEGs at least twice the target size (draft mode
  pays off), torchvision otherwise; probed once per frame root. ``ifdd-bench data bench`` measures
  all three.
* ``"cuda"`` (``data.decode_device=cuda``): the clip's JPEG frames decoded by nvJPEG on the GPU in
  one batched ``torchvision.io.decode_jpeg(..., device="cuda")`` call and resized there; the frames
  come back to the CPU as uint8 for the augmentation. Other image types are decoded by torchvision
  on the CPU. Without CUDA it refuses with :class:`DataError` (:func:`check_decoder`).

Corrupt frames (a known defect of real datasets): :func:`load_frames` replaces a frame that cannot
be decoded by the nearest readable frame of the same clip and reports how many it replaced; a clip
with no readable frame raises :class:`DataError`.

Video files (mp4/avi/...) are read with PyAV (optional extra ``ifdd-bench[video]``).

Whole clips for the clip caches: :func:`decode_clips` decodes every frame of many clips with a
thread pool (bounded, in order), which the in-memory and the disk cache both build from.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ifdd_bench.data.records import ClipRecord
from ifdd_bench.errors import DataError
from ifdd_bench.events import Progress, emit_progress

# torchvision 0.29 deprecated its image codecs in favour of TorchCodec and warns on every call; the
# codecs still work and are measured against Pillow by `data bench`. Silence only that message.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated",
                        category=DeprecationWarning)

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
DECODERS = ("auto", "torchvision", "pil", "cuda")

_TRAILING_INT = re.compile(r"(\d+)(?!.*\d)")


def frame_sort_key(name: str) -> tuple[int, int, str]:
    """Sort key ordering frames by the trailing integer of the file stem (``12.jpg``, ``3_12.jpg``).

    Names without any digit sort after numbered ones, by name. Zero-padded names (FERV39k) come out
    in the same order as a lexicographic sort.
    """
    stem = name.rsplit(".", 1)[0]
    match = _TRAILING_INT.search(stem)
    if match is None:
        return (1, 0, name)
    return (0, int(match.group(1)), name)


def list_frames(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` in temporal order (see :func:`frame_sort_key`).

    Returns ``[]`` for an empty folder; raises ``FileNotFoundError`` if it does not exist.
    """
    with os.scandir(folder) as entries:
        names = [e.name for e in entries
                 if os.path.splitext(e.name)[1].lower() in IMAGE_EXTS and not e.name.startswith(".")]
    names.sort(key=frame_sort_key)
    return [folder / n for n in names]


def is_video(path: Path) -> bool:
    """True for a file whose extension is a known video container."""
    return path.suffix.lower() in VIDEO_EXTS


# --------------------------------------------------------------------------------------------
# images


class FrameDecodeError(Exception):
    """One frame could not be decoded (internal; callers apply the corrupt-frame rule)."""


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch ``(N, 3, H, W)`` to ``(N, 3, size, size)`` (bilinear, antialias)."""
    from torchvision.transforms.v2 import functional as F

    if frames.shape[-2:] == (size, size):
        return frames
    frames = frames.contiguous(memory_format=torch.channels_last)  # fast uint8 resize path
    return F.resize(frames, [size, size], antialias=True)


def _pil_decode(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (size, size))  # DCT-domain downscale, never below size
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32)
                img = Image.fromarray((arr / max(float(arr.max()), 1.0) * 255).astype(np.uint8))
            rgb = img.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.BILINEAR)
            arr = np.array(rgb, dtype=np.uint8)  # (H, W, 3), writable copy
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
        raise FrameDecodeError(f"{path}: {err}") from None
    return torch.from_numpy(arr).permute(2, 0, 1)  # (3, S, S), channels-last strides


def _tv_decode_native(path: Path) -> torch.Tensor:
    """Decode with torchvision at the file's own size -> uint8 ``(3, H, W)`` (Pillow if it has no codecs)."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:  # a future torchvision without image codecs
        return _pil_decode_native(path)
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return _pil_decode_native(path)
    try:
        data = read_file(str(path))
        img = decode_image(data, mode=ImageReadMode.RGB)
    except Exception as err:
        raise FrameDecodeError(f"{path}: {err}") from None
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = (img.float() / max(float(img.max()), 1.0) * 255).round().to(torch.uint8)
    return img


def _pil_decode_native(path: Path) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            arr = np.array(img.convert("RGB"), dtype=np.uint8)
    except Exception as err:
        raise FrameDecodeError(f"{path}: {err}") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


_AUTO_CHOICE: dict[tuple[str, int], str] = {}


def _choose_decoder(first: Path, size: int, decoder: str) -> str:
    """Resolve ``"auto"``: Pillow (draft mode) for JPEGs at least twice the target size, else torchvision.

    The choice is probed on the first frame of the first clip under a frame root (the folder that
    holds the clip folders) and reused for that root: datasets store frames at one size, and the
    probe costs about as much as decoding a frame.
    """
    if decoder != "auto":
        return decoder
    key = (str(first.parent.parent), size)
    choice = _AUTO_CHOICE.get(key)
    if choice is None:
        from PIL import Image

        try:
            with Image.open(first) as img:
                big_jpeg = img.format == "JPEG" and min(img.size) >= 2 * size
        except Exception:
            big_jpeg = False
        choice = _AUTO_CHOICE[key] = "pil" if big_jpeg else "torchvision"
    return choice


def decode_image_file(path: Path, size: int, decoder: str = "auto") -> torch.Tensor:
    """Decode one image to RGB uint8 ``(3, size, size)``; raises :class:`FrameDecodeError`."""
    if decoder == "cuda":
        (frame,) = _cuda_decode([path], size)
        if frame is None:
            raise FrameDecodeError(f"{path}: not decodable")
        return frame
    if _choose_decoder(path, size, decoder) == "pil":
        return _pil_decode(path, size)
    return resize_frames(_tv_decode_native(path)[None], size)[0]


def check_decoder(decoder: str) -> None:
    """Refuse an unknown decoder, and ``"cuda"`` where torch sees no CUDA GPU (:class:`DataError`)."""
    if decoder not in DECODERS:
        raise DataError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODERS)}")
    if decoder == "cuda" and not torch.cuda.is_available():
        raise DataError("data.decode_device=cuda (GPU JPEG decoding) needs a CUDA GPU, but torch sees none "
                        f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})",
                        hint="use data.decode_device=cpu (the default), or run on a machine with a GPU")


def _cuda_decode(paths: Sequence[Path], size: int) -> list[torch.Tensor | None]:
    """JPEGs of ``paths`` decoded on the GPU in one batched call, resized there and copied back to the
    CPU: uint8 ``(3, size, size)`` each, ``None`` where a frame cannot be decoded. Non-JPEG files go
    through torchvision on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    # the rank's own GPU: a spawned loader worker starts on cuda:0, whatever its rank set in the parent
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    out: list[torch.Tensor | None] = [None] * len(paths)
    is_jpeg = [p.suffix.lower() in (".jpg", ".jpeg") for p in paths]
    jpeg = [i for i, flag in enumerate(is_jpeg) if flag]
    for i, p in enumerate(paths):
        if not is_jpeg[i]:
            try:
                out[i] = resize_frames(_tv_decode_native(p)[None], size)[0]
            except FrameDecodeError:
                pass
    datas = []
    for i in jpeg:
        try:
            datas.append(read_file(str(paths[i])))
        except (OSError, RuntimeError):
            datas.append(None)
    readable = [(i, d) for i, d in zip(jpeg, datas) if d is not None and d.numel()]
    try:
        images = decode_jpeg([d for _, d in readable], mode=ImageReadMode.RGB, device=device) if readable else []
    except RuntimeError:  # one corrupt frame fails the batch: decode one by one to find it
        images = []
        for _, d in readable:
            try:
                images.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                images.append(None)
    by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for (i, _), img in zip(readable, images):
        if img is not None:
            by_shape.setdefault(tuple(img.shape), []).append((i, img))
    for group in by_shape.values():  # one resize per frame size, on the GPU
        resized = resize_frames(torch.stack([img for _, img in group]), size).cpu()  # (N, 3, S, S)
        for (i, _), frame in zip(group, resized):
            out[i] = frame
    return out


def _decode_many(paths: Sequence[Path], size: int, decoder: str) -> list[torch.Tensor | None]:
    """Decode each path; ``None`` where decoding failed. All outputs ``(3, size, size)``."""
    if not paths:
        return []
    check_decoder(decoder)
    if decoder == "cuda":
        return _cuda_decode(paths, size)
    kind = _choose_decoder(paths[0], size, decoder)
    out: list[torch.Tensor | None] = []
    if kind == "pil":
        for p in paths:
            try:
                out.append(_pil_decode(p, size))
            except FrameDecodeError:
                out.append(None)
        return out
    native: list[torch.Tensor | None] = []
    for p in paths:
        try:
            native.append(_tv_decode_native(p))
        except FrameDecodeError:
            native.append(None)
    shapes = {t.shape for t in native if t is not None}
    if len(shapes) == 1:  # usual case: one batched resize for the clip
        good = [t for t in native if t is not None]
        resized = iter(resize_frames(torch.stack(good), size))  # (N, 3, S, S)
        return [next(resized) if t is not None else None for t in native]
    return [None if t is None else resize_frames(t[None], size)[0] for t in native]


def load_frames(frame_paths: Sequence[Path], indices: Sequence[int], size: int,
                decoder: str = "auto", *, clip: str = "") -> tuple[torch.Tensor, int]:
    """Decode the frames ``frame_paths[i] for i in indices`` -> ``(uint8 (len(indices), 3, S, S), replaced)``.

    Each distinct index is decoded once. A frame that cannot be decoded is replaced by the nearest
    readable frame of the clip (earlier first on ties); ``replaced`` counts those substitutions.
    If no frame of the clip can be decoded, :class:`DataError` names the clip.
    """
    n = len(frame_paths)
    if n == 0:
        raise DataError(f"clip {clip or '?'} has no frames", hint="run `ifdd-bench data check` on the data root")
    wanted = sorted(set(indices))
    decoded = dict(zip(wanted, _decode_many([frame_paths[i] for i in wanted], size, decoder)))
    replaced = 0
    for i in wanted:
        if decoded[i] is not None:
            continue
        replaced += 1
        decoded[i] = _nearest_readable(frame_paths, i, size, decoder, decoded, clip)
    clip_frames = _stack_channels_last([decoded[i] for i in indices])  # (T, 3, S, S)
    return clip_frames, replaced


def _stack_channels_last(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack ``(3, S, S)`` frames into a ``(T, 3, S, S)`` tensor stored channels-last.

    numpy does the copy: it is single-threaded, so a loader in the main process does not start
    OpenMP workers for a few-megabyte memcpy (which costs far more than it saves on a busy machine).
    """
    hwc = np.stack([f.permute(1, 2, 0).numpy() for f in frames])  # (T, S, S, 3)
    return torch.from_numpy(hwc).permute(0, 3, 1, 2)  # (T, 3, S, S) view with channels-last strides


def _nearest_readable(frame_paths: Sequence[Path], i: int, size: int, decoder: str,
                      decoded: dict[int, torch.Tensor | None], clip: str) -> torch.Tensor:
    n = len(frame_paths)
    for dist in range(1, n):
        for j in (i - dist, i + dist):
            if not 0 <= j < n:
                continue
            if j in decoded:
                if decoded[j] is not None:
                    return decoded[j]
                continue
            try:
                decoded[j] = decode_image_file(frame_paths[j], size, decoder)
                return decoded[j]
            except FrameDecodeError:
                decoded[j] = None
    raise DataError(f"no frame of clip {clip or frame_paths[0].parent} can be decoded "
                    f"({n} files, e.g. {frame_paths[0]})",
                    hint="re-extract the clip's frames, or remove it from the split file")


# --------------------------------------------------------------------------------------------
# videos (PyAV)


def _import_av():
    try:
        import av  # noqa: F401
    except ImportError:
        raise DataError("reading video files needs PyAV, which is not installed",
                        hint="pip install 'ifdd-bench[video]' (or extract frames into a folder per clip)") from None
    return av


def count_video_frames(path: Path) -> int:
    """Number of video frames in ``path`` (stream header, or a packet count when the header has none)."""
    av = _import_av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for pkt in container.demux(stream) if pkt.size)
    except (IndexError, av.error.FFmpegError, OSError) as err:
        raise DataError(f"cannot read video {path}: {err}", hint="check the file plays, or re-download it") from None


def upright_rgb(frame) -> np.ndarray:
    """A decoded PyAV video frame as RGB ``uint8 (H, W, 3)``, turned as the file says it is shown.

    Phone recordings are often stored sideways with a display rotation (``frame.rotation``,
    counter-clockwise degrees); players turn them, and so does this.
    """
    rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) as stored
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def load_video_frames(path: Path, indices: Sequence[int] | None, size: int) -> torch.Tensor:
    """Decode frames ``indices`` (all when ``None``) of a video -> uint8 ``(len, 3, size, size)``.

    Indices past the last decodable frame are clamped to it (headers sometimes over-count). Frames
    are turned upright by the file's display rotation (:func:`upright_rgb`).
    """
    from PIL import Image

    av = _import_av()
    wanted = None if indices is None else set(indices)
    last = None if indices is None else max(indices)
    frames: list[torch.Tensor] = []
    try:
        with av.open(str(path)) as container:
            for k, frame in enumerate(container.decode(video=0)):
                if last is not None and k > last:
                    break
                if wanted is None or k in wanted:
                    img = Image.fromarray(upright_rgb(frame))
                    if img.size != (size, size):
                        img = img.resize((size, size), Image.BILINEAR)
                    frames.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))  # (3, S, S)
                else:
                    frames.append(None)  # placeholder keeps positions
    except (av.error.FFmpegError, OSError) as err:
        raise DataError(f"cannot decode video {path}: {err}", hint="check the file plays, or re-encode it") from None
    decoded = [(k, f) for k, f in enumerate(frames) if f is not None]
    if not decoded:
        raise DataError(f"video {path} has no decodable frames", hint="re-encode or remove the clip")
    if indices is None:
        return _stack_channels_last([f for _, f in decoded])
    by_index = dict(decoded)
    top = decoded[-1][0]
    return _stack_channels_last([by_index[min(i, top)] if min(i, top) in by_index else decoded[-1][1]
                                 for i in indices])  # (T, 3, S, S)


# --------------------------------------------------------------------------------------------
# whole clips (the clip caches)


@contextlib.contextmanager
def single_threaded_torch():
    """Run torch ops single-threaded inside the block, then restore the thread count.

    Loading work is many small ops (a 16-frame resize, a dtype cast); spreading each over the
    intra-op pool costs more than it saves, and on a busy machine idle OpenMP threads spin-waiting
    make it several times slower (measured 9x with 2 threads on a loaded 2-core machine). DataLoader
    workers already run with one thread; this gives the main process (``workers=0``) and the cache
    build the same behaviour.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_all_frames(rec: ClipRecord, size: int, decoder: str) -> tuple[torch.Tensor, int]:
    """Every frame of the clip ``rec`` at ``size``: ``(uint8 (n, 3, S, S), frames replaced)``."""
    if is_video(rec.source):
        return load_video_frames(rec.source, None, size), 0
    paths = list_frames(rec.source)
    return load_frames(paths, range(len(paths)), size, decoder, clip=str(rec.source))


def unique_sources(records: Sequence[ClipRecord]) -> dict[str, ClipRecord]:
    """The first record of every distinct clip source, keyed by ``str(source)``, in input order."""
    unique: dict[str, ClipRecord] = {}
    for rec in records:
        unique.setdefault(str(rec.source), rec)
    return unique


def decode_clips(unique: dict[str, ClipRecord], size: int, *, decoder: str = "auto", progress: Progress | None = None,
                 threads: int | None = None, stage: str | None = None) -> Iterator[tuple[str, torch.Tensor, int]]:
    """Decode every frame of each clip of ``unique`` at ``size`` with a thread pool; yields
    ``(source key, uint8 frames (n, 3, S, S), frames replaced)`` in the order of ``unique``.
    The in-memory ``FrameCache`` (dataset.py) and the disk cache (:mod:`ifdd_bench.data.clipcache`) build
    from it."""
    items = list(unique.items())
    threads = threads or max(1, min(8, os.cpu_count() or 1))
    stage = stage or f"caching clips at {size}px"

    def work(item: tuple[str, ClipRecord]) -> tuple[str, torch.Tensor, int]:
        key, rec = item
        frames, rep = load_all_frames(rec, size, decoder)
        return key, frames, rep

    todo = iter(items)
    with single_threaded_torch(), ThreadPoolExecutor(threads) as pool:
        # a bounded window of clips in flight: decoded frames never pile up ahead of the consumer
        pending = deque(pool.submit(work, item) for item in itertools.islice(todo, 4 * threads))
        k = 0
        while pending:
            result = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(work, following))
            yield result
            if k % 64 == 0 or k == len(items) - 1:
                emit_progress(progress, stage, k + 1, len(items))
            k += 1
