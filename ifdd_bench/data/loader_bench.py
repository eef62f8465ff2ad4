"""``ifdd-bench data bench``: how many clips per second the loading pipeline delivers.

Writes temporary DFEW-layout JPEG datasets (frames stored at 112 and at 224 pixels), then times one
pass of a ``DataLoader`` over a training :class:`ClipDataset` (segment sampling, ``unified``
augmentation, batch 8) for every combination of

* clip geometry: 16x112x112 from 112-pixel frames, 16x224x224 from 224-pixel frames,
  16x112x112 from 224-pixel frames (DFEW's frames fed to a 112-pixel model) and 16x64x64 from
  112-pixel frames (SynthDFER's default fed to the tiny CPU models);
* decoder: Pillow, torchvision (``decode_image``), ``auto`` and, where a GPU is present and asked
  for, ``cuda`` (nvJPEG; see :mod:`ifdd_bench.data.decode`);
* 0, 1 and 2 DataLoader workers (worker start-up included, as every epoch pays it);
* plus the in-memory cache (``cache_clips=True``, 0 workers) and its one-off build time, and the
  disk cache (``clip_cache``, memory-mapped; :mod:`ifdd_bench.data.clipcache`) at every worker
  count, with its build time.

Ratios are against Pillow with 0 workers for the same geometry, measured in the same run. What a
model eats in training (``data bench --model``) is measured by the engine, which owns the training
step: :func:`ifdd_bench.engine.overhead.model_consumption`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ifdd_bench.data.dataset import ClipDataset, FrameCache, worker_context
from ifdd_bench.data.decode import check_decoder
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew
from ifdd_bench.data.readers import read_split
from ifdd_bench.data.sampling import SamplingSpec
from ifdd_bench.data.transforms import ClipTransform, augment_spec
from ifdd_bench.errors import ConfigError
from ifdd_bench.events import Progress, emit_progress

#: (stored frame size, clip size): the two clip sizes of the issue, DFEW's 224 frames fed at 112, and
#: SynthDFER's default 112 frames fed to the tiny CPU models at 64
GEOMETRIES = ((112, 112), (224, 224), (224, 112), (112, 64))
BENCH_DECODERS = ("pil", "torchvision", "auto", "cuda")


def parse_bench_options(workers: str, decoders: str, *, clips: int = 42,
                        repeats: int = 1) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """``"0,1,2"``, ``"pil,auto"`` -> ``((0, 1, 2), ("pil", "auto"))``; the ratios need Pillow and 0 workers
    (the baseline) in the grid, so a list without them raises :class:`ConfigError`, as do negative
    worker counts, fewer than 7 clips (one per class) and fewer than 1 repeat."""
    if clips < 7:
        raise ConfigError(f"--clips must be >= 7 (one clip per class), got {clips}")
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    try:
        counts = tuple(int(w) for w in workers.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--workers expects comma-separated integers, got {workers!r}") from None
    if any(w < 0 for w in counts):
        raise ConfigError(f"--workers counts must be >= 0, got {workers!r}")
    names = tuple(d.strip() for d in decoders.split(",") if d.strip())
    bad = [d for d in names if d not in BENCH_DECODERS]
    if bad or "pil" not in names or 0 not in counts:
        raise ConfigError(f"--decoders must name pil (the baseline) and only {'|'.join(BENCH_DECODERS)}; "
                          "--workers must include 0")
    if "cuda" in names:
        check_decoder("cuda")  # no GPU: refused before any data is written
    return counts, names


def _time_pass(dataset: ClipDataset, workers: int, batch: int) -> float:
    """Seconds for one pass over ``dataset`` (loader construction and worker start-up included)."""
    start = time.perf_counter()
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers, persistent_workers=False,
                        multiprocessing_context=worker_context(dataset, workers))
    seen = 0
    for clips, _ in loader:
        seen += clips.shape[0]
    assert seen == len(dataset)
    return time.perf_counter() - start


def run_loader_bench(*, clips: int = 42, workers: tuple[int, ...] = (0, 1, 2),
                     decoders: tuple[str, ...] = ("pil", "torchvision", "auto"), batch: int = 8, repeats: int = 1,
                     workdir: Path | None = None, progress: Progress | None = None,
                     geometries: tuple[tuple[int, int], ...] = GEOMETRIES) -> list[dict[str, Any]]:
    """Measure clips/s; returns flat rows (``geometry, stored, decoder, workers, cached, clips_per_s,
    ratio``). ``clips`` is rounded down to a multiple of 7 (balanced classes); the median of
    ``repeats`` passes is reported. ``geometries`` are (stored frame size, clip size) pairs."""
    from ifdd_bench.data.clipcache import open_or_build

    per_class = max(1, clips // 7)
    rows: list[dict[str, Any]] = []
    spec = SamplingSpec("segment", frames=16, segments=16)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="ifdd-loader-bench-") as tmp:
        roots = {}
        for stored in sorted({g[0] for g in geometries}):
            roots[stored] = write_dfew(Path(tmp) / f"dfew{stored}", balanced_dfew_rows(per_class, frames=16),
                                       test=balanced_dfew_rows(1, start=9000), size=stored)
        total = len(geometries) * ((len(decoders) + 1) * len(workers) + 1)
        done = 0
        for stored, size in geometries:
            recs = read_split("dfew", roots[stored], "train", 1).records
            tf = ClipTransform(augment_spec("unified", "dfew"), size, train=True)
            geometry = f"16x{size}x{size}"
            base = None
            for decoder in decoders:
                for nw in workers:
                    ds = ClipDataset(recs, ["c"] * 7, sampling=spec, transform=tf, train=True, seed=0, size=size,
                                     decoder=decoder)
                    secs = statistics.median(_time_pass(ds, nw, batch) for _ in range(repeats))
                    rate = len(ds) / secs
                    if decoder == "pil" and nw == 0:
                        base = rate
                    rows.append({"geometry": geometry, "stored": stored, "decoder": decoder, "workers": nw,
                                 "cached": False, "clips_per_s": rate})
                    done += 1
                    emit_progress(progress, "loader bench", done, total)
            start = time.perf_counter()
            cache = FrameCache.build(recs, size)
            build_s = time.perf_counter() - start
            ds = ClipDataset(recs, ["c"] * 7, sampling=spec, transform=tf, train=True, seed=0, size=size, cache=cache)
            secs = statistics.median(_time_pass(ds, 0, batch) for _ in range(repeats))
            rows.append({"geometry": geometry, "stored": stored, "decoder": "cache", "workers": 0, "cached": True,
                         "clips_per_s": len(ds) / secs, "cache_build_clips_per_s": len(recs) / build_s})
            done += 1
            emit_progress(progress, "loader bench", done, total)
            start = time.perf_counter()
            disk = open_or_build(Path(tmp) / "clip_cache", "dfew", "train", recs, size)
            build_s = time.perf_counter() - start
            for nw in workers:
                ds = ClipDataset(recs, ["c"] * 7, sampling=spec, transform=tf, train=True, seed=0, size=size,
                                 cache=disk)
                secs = statistics.median(_time_pass(ds, nw, batch) for _ in range(repeats))
                rows.append({"geometry": geometry, "stored": stored, "decoder": "disk cache", "workers": nw,
                             "cached": True, "clips_per_s": len(ds) / secs,
                             "cache_build_clips_per_s": len(recs) / build_s})
                done += 1
                emit_progress(progress, "loader bench", done, total)
            for row in rows:
                if row["geometry"] == geometry and row["stored"] == stored:
                    row["ratio"] = row["clips_per_s"] / base if base else float("nan")
    for row in rows:
        row["clips"] = per_class * 7
        row["batch"] = batch
        row["torch_threads"] = torch.get_num_threads()
    return rows


def decode_microbench(*, frames: int = 16, rounds: int = 15, workdir: Path | None = None) -> list[dict[str, Any]]:
    """Milliseconds to decode (and resize) one frame, per decoder and geometry, single-threaded.

    The best of ``rounds`` interleaved timings of decoding a 16-frame clip: the minimum is the least disturbed
    by other processes, which matters on a shared machine. Rows carry ``ms_per_frame`` and the
    ratio against Pillow for the same geometry.
    """
    from ifdd_bench.data.decode import list_frames, load_frames, single_threaded_torch

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="ifdd-decode-bench-") as tmp, single_threaded_torch():
        folders = {}
        for stored in sorted({g[0] for g in GEOMETRIES}):
            root = write_dfew(Path(tmp) / f"d{stored}", [(1, 1, frames)], size=stored)
            folders[stored] = list_frames(root / "Clip" / "clip_224x224_16f" / "00001")
        decoders = ("pil", "torchvision", "auto")
        for stored, size in GEOMETRIES:
            best = dict.fromkeys(decoders, float("inf"))
            for _ in range(rounds):  # decoders interleaved, so a busy spell hits all of them alike
                for decoder in decoders:
                    start = time.perf_counter()
                    load_frames(folders[stored], range(frames), size, decoder)
                    best[decoder] = min(best[decoder], time.perf_counter() - start)
            for decoder in decoders:
                rows.append({"geometry": f"{size}x{size}", "stored": stored, "decoder": decoder,
                             "ms_per_frame": best[decoder] / frames * 1e3,
                             "speedup_vs_pil": best["pil"] / best[decoder]})
    return rows
