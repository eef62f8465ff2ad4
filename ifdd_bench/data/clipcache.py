"""Disk-backed, memory-mapped uint8 clip cache (``data.clip_cache=DIR``): decode once, read at disk speed.

The in-memory cache (``data.cache_clips``) has to fit in RAM and is rebuilt by every run. This one
is a file per (dataset, split, frame size, decoder, set of clips) in ``DIR``, built once and
memory-mapped by every later run, DataLoader worker and DDP rank (they share the page cache):

* ``<name>.u8``   every frame of every clip of the split, decoded at the configured size, as raw
  uint8 ``(N, S, S, 3)`` (frame-major, channels last: the layout the decoders hand over);
* ``<name>.json`` the index: clip source -> (first frame, frame count), the fingerprint of the
  inputs, corrupt frames replaced while building.

``<name>`` is ``{dataset}-{split}-{S}px-{decoder}-{clips hash}-{inputs fingerprint}``. The inputs
fingerprint covers every frame file's name, size and modification time (a video's size and time),
so a changed, added or removed frame gives a new file; the previous cache of the same clips is
deleted after the new one is complete. The whole clip is cached and sampled on reading, so one
cache serves every sampling, augmentation and epoch, and items equal the uncached loader's bit
for bit (``tests/test_clipcache.py``).

Building is atomic (temporary files moved into place, the index last) and serialised by a file
lock, so concurrent runs or DDP ranks build it once.

Example::

    >>> cache = open_or_build("/scratch/ifdd-cache", "dfew", "train", records, 224)  # doctest: +SKIP
    >>> cache.get(records[0].source).shape                                          # doctest: +SKIP
    torch.Size([16, 3, 224, 224])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ifdd_bench.atomic import atomic_open, atomic_path, json_text
from ifdd_bench.data.decode import IMAGE_EXTS, check_decoder, decode_clips, is_video, unique_sources
from ifdd_bench.data.records import ClipRecord
from ifdd_bench.errors import DataError
from ifdd_bench.events import Progress

#: version of the file layout; a new version builds new files
CACHE_VERSION = 1
INDEX_SUFFIX = ".json"
DATA_SUFFIX = ".u8"


class MemmapClipCache:
    """A built cache: ``get(source)`` -> uint8 ``(n, 3, S, S)`` frames of that clip, read from the
    memory map (copy-on-write, so the tensor is writable without touching the file)."""

    def __init__(self, data_path: Path, index: dict[str, Any]):
        self.path = Path(data_path)
        self.size = int(index["size"])
        self.frames = int(index["frames"])
        self.clips: dict[str, tuple[int, int]] = {k: (int(a), int(n)) for k, (a, n) in index["clips"].items()}
        self.replaced = int(index.get("replaced", 0))
        self.built = bool(index.get("_built_now", False))
        self._array: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of cached frames (on disk)."""
        return self.frames * 3 * self.size * self.size

    def _frames(self) -> np.ndarray:
        if self._array is None and self.frames == 0:
            self._array = np.zeros((0, self.size, self.size, 3), dtype=np.uint8)
        if self._array is None:  # opened lazily: in each DataLoader worker, after fork or spawn
            self._array = np.memmap(self.path, dtype=np.uint8, mode="c", shape=(self.frames, self.size, self.size, 3))
        return self._array

    def get(self, source: Path) -> torch.Tensor:
        """All frames of the clip at ``source``: uint8 ``(n, 3, S, S)`` with channels-last strides."""
        try:
            first, count = self.clips[str(source)]
        except KeyError:
            raise DataError(f"clip {source} is not in the clip cache {self.path}",
                            hint="the split changed since the cache was built; delete the file to rebuild it") from None
        return torch.from_numpy(self._frames()[first:first + count]).permute(0, 3, 1, 2)  # (n, 3, S, S)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_array"] = None  # workers re-map the file instead of receiving its bytes
        return state


def _clips_hash(unique: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(unique)).encode()).hexdigest()[:8]


def inputs_fingerprint(sources: Sequence[str], size: int, decoder: str) -> str:
    """Hash of everything the cached pixels depend on: each frame file's name, size and mtime (a
    video's size and mtime), the frame size, the decoder and :data:`CACHE_VERSION`."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} {size} {decoder}\n".encode())
    for source in sorted(sources):
        path = Path(source)
        digest.update(f"{source}\n".encode())
        try:
            if is_video(path) or path.is_file():
                st = path.stat()
                digest.update(f"  {st.st_size} {st.st_mtime_ns}\n".encode())
                continue
            with os.scandir(path) as entries:
                files = sorted((e.name, e.stat()) for e in entries
                               if os.path.splitext(e.name)[1].lower() in IMAGE_EXTS and not e.name.startswith("."))
        except OSError as err:
            raise DataError(f"cannot read clip {source} for the clip cache: {err.strerror or err}",
                            hint="run `ifdd-bench data check` on the data root") from None
        for name, st in files:
            digest.update(f"  {name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cache_name(dataset: str, split: str, size: int, decoder: str, sources: Sequence[str]) -> tuple[str, str]:
    """``(prefix, name)`` of the cache files of these clips: the prefix names the dataset, split, frame
    size, decoder and which clips; the name adds the inputs fingerprint."""
    prefix = f"{dataset}-{split}-{size}px-{decoder}-{_clips_hash(sources)}-"
    return prefix, prefix + inputs_fingerprint(sources, size, decoder)


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return index if index.get("version") == CACHE_VERSION else None


def open_or_build(folder: str | os.PathLike, dataset: str, split: str, records: Sequence[ClipRecord], size: int, *,
                  decoder: str = "auto", progress: Progress | None = None,
                  threads: int | None = None) -> MemmapClipCache:
    """The cache of ``records`` at ``size`` in ``folder``: opened when a complete one with the same
    inputs fingerprint exists, built (atomically, under a file lock) otherwise.

    A build checks the free disk space first (:class:`DataError` naming the folder when it is short)
    and removes older caches of the same clips once the new one is in place.
    """
    from filelock import FileLock

    check_decoder(decoder)
    root = Path(folder).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the clip cache folder {root}: {err.strerror or err}",
                        hint="set data.clip_cache to a writable folder") from None
    unique = unique_sources(records)
    prefix, name = cache_name(dataset, split, size, decoder, list(unique))
    data_path, index_path = root / (name + DATA_SUFFIX), root / (name + INDEX_SUFFIX)
    with FileLock(str(root / (prefix + "lock"))):
        index = _read_index(index_path)
        if index is not None and data_path.exists():
            return MemmapClipCache(data_path, index)
        need = sum(max(r.num_frames, 1) for r in unique.values()) * 3 * size * size
        free = shutil.disk_usage(root).free
        if need > 0.95 * free:
            raise DataError(f"the clip cache of {dataset} {split} at {size}px needs about {need / 2**30:.1f} GiB, "
                            f"but {root} has {free / 2**30:.1f} GiB free",
                            hint="point data.clip_cache at a larger disk, lower data.size, or leave it unset")
        clips: dict[str, tuple[int, int]] = {}
        total = replaced = 0
        with atomic_path(data_path, suffix=DATA_SUFFIX) as tmp, open(tmp, "wb") as fh:
            stage = f"building the clip cache of {split} at {size}px"
            for key, frames, rep in decode_clips(unique, size, decoder=decoder, progress=progress, threads=threads,
                                                 stage=stage):
                hwc = np.ascontiguousarray(frames.permute(0, 2, 3, 1).numpy())  # (n, S, S, 3)
                fh.write(memoryview(hwc).cast("B"))
                clips[key] = (total, hwc.shape[0])
                total += hwc.shape[0]
                replaced += rep
        index = {"version": CACHE_VERSION, "dataset": dataset, "split": split, "size": size, "decoder": decoder,
                 "frames": total, "replaced": replaced, "clips": clips, "name": name}
        with atomic_open(index_path) as fh:  # the index last: its presence marks a complete cache
            fh.write(json_text(index))
        for stale in root.glob(prefix + "*"):
            if stale.name.startswith(name) or stale.name == prefix + "lock":
                continue
            stale.unlink(missing_ok=True)
    return MemmapClipCache(data_path, {**index, "_built_now": True})
