"""Write SynthDFER to disk in the official DFEW layout, in parallel, atomically, with a cache.

Layout (what the DFEW reader reads)::

    <root>/Clip/clip_224x224_16f/<5-digit id>/<1..T>.jpg      (folder name kept for any S, T)
    <root>/EmoLabel_DataSplit/train(single-labeled)/set_{1..5}.csv
    <root>/EmoLabel_DataSplit/test(single-labeled)/set_{1..5}.csv   header video_name,label (1-based)
    <root>/clips.csv     per-clip ground truth (see truth.py)
    <root>/synth.json    generator version, every knob, class names, counts; written last

A dataset is built in a hidden sibling folder and renamed into place only when complete, so an
interrupted run never leaves anything that looks like a dataset.

Context bias: a clip sits in the train list of four folds and the test list of one, so one image
set cannot carry a shortcut in train only. With ``context_bias > 0`` every clip is therefore
rendered twice with identical person and dynamics: an unbiased copy (id ``i + 1``, listed only in
test CSVs) and a copy whose background hue follows the label with probability ``context_bias``
(id ``clips + i + 1``, listed only in train CSVs).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import shutil
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ifdd_bench.config import to_dict
from ifdd_bench.cpus import usable_cpus
from ifdd_bench.data.labels import DFEW_CLASSES, NUM_FOLDS
from ifdd_bench.data.synth.config import GENERATOR_VERSION, SynthConfig, config_hash, preset
from ifdd_bench.data.synth.dynamics import clip_folds, clip_identity, clip_labels, sample_clip_params
from ifdd_bench.data.synth.face import render_clip
from ifdd_bench.data.synth.truth import META_FILE, TRUTH_FILE, ClipTruth, load_meta, truth_csv_text
from ifdd_bench.errors import ConfigError, DataError

CLIP_DIR = Path("Clip") / "clip_224x224_16f"
SPLIT_DIR = Path("EmoLabel_DataSplit")
TRAIN_LIST_DIR = "train(single-labeled)"
TEST_LIST_DIR = "test(single-labeled)"
CHUNK = 8  # clips per worker task

#: ``(clips written, clips in total)`` after each chunk; not the dict events of :mod:`ifdd_bench.events`
ClipCounter = Callable[[int, int], None]


def default_cache_dir() -> Path:
    """Where ``ensure_dataset`` keeps generated datasets: ``$IFDD_BENCH_CACHE`` or ``~/.cache/ifdd-bench``."""
    env = os.environ.get("IFDD_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ifdd-bench"


def dataset_name(cfg: SynthConfig) -> str:
    """Cache folder name: preset plus the hash of every knob, e.g. ``synthdfer-default-1a2b3c4d``."""
    return f"synthdfer-{cfg.preset}-{config_hash(cfg)}"


# --------------------------------------------------------------------------------------------
# rendering one chunk (runs in worker processes)


def render_clip_frames(cfg: SynthConfig, index: int) -> tuple[list[np.ndarray], list[ClipTruth]]:
    """Pixels (uint8 (T, S, S, 3) per copy) and ground truth of clip ``index``, nothing written.

    One copy without context bias; two (unbiased test copy, biased train copy) with it.
    """
    params = sample_clip_params(cfg, index)
    ctx = params.context
    fold = int(clip_folds(cfg)[index])
    copies = [(index + 1, "both", False, ctx.hue)]
    if cfg.context_bias > 0:
        copies = [(index + 1, "test", False, ctx.hue), (cfg.clips + index + 1, "train", ctx.biased, ctx.biased_hue)]
    frames = render_clip(params, cfg.size, [hue for *_, hue in copies])
    truths = [
        ClipTruth(clip_id=f"{vid:05d}", label=params.label, class_name=DFEW_CLASSES[params.label],
                  source_clip=index, identity=clip_identity(cfg, index), fold=fold, role=role,
                  biased=biased, bg_hue=float(hue), onset=params.onset, apex=params.apex, offset=params.offset,
                  peak=params.peak, intensity=tuple(float(x) for x in params.intensity))
        for vid, role, biased, hue in copies
    ]
    return frames, truths


def _write_chunk(cfg: SynthConfig, indices: list[int], root: str) -> list[ClipTruth]:
    """Render clips ``indices`` and write their JPEG frames under ``root``; return their truth."""
    out: list[ClipTruth] = []
    for index in indices:
        frames, truths = render_clip_frames(cfg, index)
        for clip, truth in zip(frames, truths):
            folder = Path(root) / CLIP_DIR / truth.clip_id
            folder.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(clip, start=1):
                Image.fromarray(frame).save(folder / f"{t}.jpg", format="JPEG", quality=cfg.jpeg_quality)
            out.append(truth)
    return out


# --------------------------------------------------------------------------------------------
# writing a dataset


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(out: Path) -> None:
    """Delete half-written siblings ``.<name>.tmp-<pid>-*`` left by processes that died."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the generating process dies (e.g. killed with -9)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def numpy_pool_context() -> multiprocessing.context.BaseContext:
    """Start method for worker pools that run numpy/Pillow only (never torch): fork on Linux, else spawn."""
    # fork is fast and the workers only use numpy/Pillow; elsewhere spawn is the safe default
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _render_all(cfg: SynthConfig, root: Path, workers: int, progress: ClipCounter | None) -> list[ClipTruth]:
    chunks = [list(range(s, min(s + CHUNK, cfg.clips))) for s in range(0, cfg.clips, CHUNK)]
    truths: list[ClipTruth] = []
    done = 0
    if progress:
        progress(0, cfg.clips)
    if workers <= 1:
        for chunk in chunks:
            truths += _write_chunk(cfg, chunk, str(root))
            done += len(chunk)
            if progress:
                progress(done, cfg.clips)
        return truths
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=numpy_pool_context(), initializer=_exit_with_parent,
                               initargs=(os.getpid(),))
    try:
        pending = {pool.submit(_write_chunk, cfg, chunk, str(root)): len(chunk) for chunk in chunks}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                truths += fut.result()
                done += pending.pop(fut)
            if progress:
                progress(done, cfg.clips)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return truths


def _split_csv(rows: list[ClipTruth]) -> str:
    lines = ["video_name,label"] + [f"{int(r.clip_id)},{r.label + 1}" for r in sorted(rows, key=lambda r: int(r.clip_id))]
    return "\n".join(lines) + "\n"


def _write_lists(root: Path, truths: list[ClipTruth]) -> dict[str, dict[str, int]]:
    """Write the 5 train/test split CSVs; return {fold: {train: n, test: n}}."""
    sizes = {}
    for fold in range(1, NUM_FOLDS["synth"] + 1):
        train = [r for r in truths if r.role in ("both", "train") and r.fold != fold]
        test = [r for r in truths if r.role in ("both", "test") and r.fold == fold]
        for sub, rows in ((TRAIN_LIST_DIR, train), (TEST_LIST_DIR, test)):
            folder = root / SPLIT_DIR / sub
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"set_{fold}.csv").write_text(_split_csv(rows))
        sizes[str(fold)] = {"train": len(train), "test": len(test)}
    return sizes


def _meta(cfg: SynthConfig, truths: list[ClipTruth], sizes: dict) -> dict:
    labels = clip_labels(cfg)
    return {
        "generator": "SynthDFER", "version": GENERATOR_VERSION, "config_hash": config_hash(cfg),
        "preset": cfg.preset, "seed": cfg.seed, "config": to_dict(cfg),
        "classes": list(DFEW_CLASSES), "labels_on_disk": "1-based, DFEW order (label - 1 = class index)",
        "num_clips": cfg.clips, "num_clip_folders": len(truths), "frames": cfg.frames, "size": cfg.size,
        "class_counts": {name: int((labels == k).sum()) for k, name in enumerate(DFEW_CLASSES)},
        "folds": sizes, "frames_dir": CLIP_DIR.as_posix(), "split_dir": SPLIT_DIR.as_posix(),
        "truth_file": TRUTH_FILE,
        "context_bias": {"train_ids": "clips+1 .. 2*clips", "test_ids": "1 .. clips"} if cfg.context_bias > 0 else None,
    }


def generate(cfg: SynthConfig, out_dir: str | Path, *, workers: int | None = None,
             progress: ClipCounter | None = None, overwrite: bool = False) -> Path:
    """Write the dataset of ``cfg`` to ``out_dir`` and return its path.

    Frames are rendered by ``workers`` processes (default: all usable CPUs; 1 = in this process)
    into a hidden sibling folder that is renamed to ``out_dir`` only once ``synth.json`` (written
    last) is in it. ``progress(done_clips, total_clips)`` is called as chunks finish. An existing
    non-empty ``out_dir`` raises :class:`DataError` unless ``overwrite`` is true.

    Example::

        >>> root = generate(preset("smoke"), "/tmp/synth-smoke")        # doctest: +SKIP
    """
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another --out-dir")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} already exists and is not empty",
                        hint="pass --force (overwrite=True) to replace it, or choose another --out-dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    tmp.mkdir()
    try:
        truths = _render_all(cfg, tmp, workers or usable_cpus(), progress)
        truths.sort(key=lambda r: int(r.clip_id))
        sizes = _write_lists(tmp, truths)
        (tmp / TRUTH_FILE).write_text(truth_csv_text(truths))
        (tmp / META_FILE).write_text(json.dumps(_meta(cfg, truths, sizes), indent=1) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.tmp-{os.getpid()}-old-{secrets.token_hex(3)}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def is_complete(root: str | Path, cfg: SynthConfig | None = None) -> bool:
    """True if ``root`` holds a finished dataset (of ``cfg``, when given)."""
    try:
        meta = load_meta(root)
    except DataError:
        return False
    return cfg is None or meta.get("config_hash") == config_hash(cfg)


def ensure_dataset(preset_name: str = "default", *, cache_dir: str | Path | None = None,
                   progress: ClipCounter | None = None, workers: int | None = None, **overrides) -> Path:
    """Root of the cached dataset for ``preset(preset_name, **overrides)``, generated on first use.

    The folder ``<cache>/synthdfer-<preset>-<hash of all knobs>`` is reused afterwards; a file lock
    makes concurrent callers wait for one generation instead of racing.
    """
    from filelock import FileLock

    cfg = preset(preset_name, **overrides)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / dataset_name(cfg)
    if is_complete(root, cfg):
        return root
    with FileLock(str(cache / f"{root.name}.lock")):
        if is_complete(root, cfg):  # another process finished it while we waited
            return root
        return generate(cfg, root, workers=workers, progress=progress, overwrite=True)


@dataclass(frozen=True)
class SynthJob:
    """Where ``ifdd-bench data synth`` writes ``cfg``: ``root`` (the given folder, or the cache folder
    runs use), whether that folder already holds it (``ready``; only the cache folder is reused)
    and whether an existing folder is replaced (``overwrite``)."""

    cfg: SynthConfig
    root: Path
    ready: bool
    overwrite: bool
    workers: int | None = None


@dataclass(frozen=True)
class SynthWritten:
    """A generated dataset: its folder, the seconds it took and its ``synth.json``."""

    cfg: SynthConfig
    root: Path
    seconds: float
    meta: dict


def synth_job(cfg: SynthConfig, out: str | Path | None = None, *, workers: int | None = None,
              force: bool = False) -> SynthJob:
    """Check the options of a generation and say where it goes; writes nothing.

    ``out=None`` targets the cache folder of :func:`ensure_dataset`, reused when complete unless
    ``force``; a given ``out`` is written unless it holds something and ``force`` is off.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    root = Path(out) if out is not None else default_cache_dir() / dataset_name(cfg)
    ready = out is None and is_complete(root, cfg) and not force
    return SynthJob(cfg, root, ready, overwrite=force or out is None, workers=workers)


def run_synth_job(job: SynthJob, *, progress: ClipCounter | None = None) -> SynthWritten:
    """Generate the dataset of ``job`` (see :func:`generate`) and time it."""
    start = time.perf_counter()
    root = generate(job.cfg, job.root, workers=job.workers, overwrite=job.overwrite, progress=progress)
    seconds = time.perf_counter() - start
    return SynthWritten(job.cfg, root, seconds, json.loads((root / META_FILE).read_text()))
