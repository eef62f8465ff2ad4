"""Clip datasets for training and evaluation, and :func:`build_datasets`, the engine's entry point.

Interface the training engine relies on::

    bundle = build_datasets(data_cfg, seed=0, protocol="unified", run_dir=Path("runs/x"), progress=cb)
    bundle.train, bundle.val, bundle.test   # ClipDataset (val is None under protocol="reference")
    clip, label = bundle.train[0]           # float32 (C, T, H, W) in [0, 1]; int
    bundle.test[0][0].shape                 # (V, C, T, H, W) when data.eval_views = V > 1
    bundle.train.set_epoch(3)               # new random draws for epoch 3
    bundle.info                             # what to record in the run folder

Determinism: everything random about item ``i`` (frame offsets, crop box, flip, jitter) is drawn
from a ``torch.Generator`` seeded with (seed, split, epoch, i), never from global RNG state, so a
resumed run or a run with any number of DataLoader workers sees exactly the same clips.
Evaluation sampling is deterministic (except the opt-in reference ``eval_sampling=random``, which is
still a pure function of the seed, epoch and index).

``cache_clips=True`` decodes every frame of every clip once, at the target size, into memory
(uint8) before training; items are then sampled and augmented from memory. DataLoader workers are
forked and share the cache without copying. ``clip_cache=DIR`` keeps the same frames in a
memory-mapped file per split instead, built once and reused by later runs
(:mod:`ifdd_bench.data.clipcache`); it takes precedence over ``cache_clips``. ``decode_device=cuda``
decodes JPEG frames on the GPU (:mod:`ifdd_bench.data.decode`).

Corrupt frames met while loading are replaced by the nearest readable frame of the clip (see
:mod:`ifdd_bench.data.decode`) and counted; :meth:`ClipDataset.defect_counts` sums the counts of the
main process and of every worker (shared-memory counters).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from torch.utils.data import Dataset, get_worker_info

from ifdd_bench.config import DATASETS, DECODE_DEVICES, PROTOCOLS, DataConfig
from ifdd_bench.data.decode import (check_decoder, decode_clips, is_video, list_frames, load_frames, load_video_frames,
                                    single_threaded_torch, unique_sources)
from ifdd_bench.data.holdout import holdout_for_run
from ifdd_bench.data.readers import read_split, resolve_frame_source
from ifdd_bench.data.records import ClipRecord
from ifdd_bench.data.sampling import SamplingSpec, sample_indices
from ifdd_bench.data.transforms import ClipTransform, augment_spec
from ifdd_bench.errors import ConfigError, DataError, suggest, unknown
from ifdd_bench.events import Progress, emit_progress

if TYPE_CHECKING:
    from ifdd_bench.data.clipcache import MemmapClipCache

log = logging.getLogger(__name__)

_MAX_WORKER_SLOTS = 64
_DEFECT_KEYS = ("corrupt_frames_replaced",)
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
_MASK64 = (1 << 64) - 1


def item_seed(*parts: int) -> int:
    """Mix integers (seed, split, epoch, index) into one 63-bit generator seed (splitmix64 rounds)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (int(part) & _MASK64)) & _MASK64
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state & ((1 << 63) - 1)


# --------------------------------------------------------------------------------------------
# frame cache


class FrameCache:
    """Every frame of a set of clips, decoded once at ``size`` and kept as uint8 ``(n, 3, S, S)``."""

    def __init__(self, size: int, clips: dict[str, torch.Tensor], replaced: int):
        self.size = size
        self.clips = clips
        self.replaced = replaced

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached frames."""
        return sum(t.numel() for t in self.clips.values())

    def get(self, source: Path) -> torch.Tensor:
        """All frames of the clip at ``source``: uint8 ``(n, 3, S, S)``."""
        return self.clips[str(source)]

    @classmethod
    def build(cls, records: Sequence[ClipRecord], size: int, *, decoder: str = "auto",
              progress: Progress | None = None, threads: int | None = None) -> "FrameCache":
        """Decode all frames of ``records`` (unique sources) with a thread pool.

        Raises :class:`DataError` before decoding anything if the frames would take more than 60%
        of the available memory.
        """
        unique = unique_sources(records)
        need = sum(r.num_frames for r in unique.values()) * 3 * size * size
        _check_memory(need)
        clips: dict[str, torch.Tensor] = {}
        replaced = 0
        for key, frames, rep in decode_clips(unique, size, decoder=decoder, progress=progress, threads=threads):
            clips[key] = frames
            replaced += rep
        return cls(size, clips, replaced)


def _check_memory(need: int) -> None:
    try:
        import psutil

        available = psutil.virtual_memory().available
    except Exception:  # pragma: no cover - psutil is a dependency, but stay usable without it
        return
    if need > 0.6 * available:
        raise DataError(f"data.cache_clips=true needs about {need / 2**30:.1f} GiB for the decoded frames, "
                        f"but only {available / 2**30:.1f} GiB of memory is available",
                        hint="set data.cache_clips=false (frames are then decoded per item), "
                             "or lower data.size")


# --------------------------------------------------------------------------------------------
# dataset


class ClipDataset(Dataset):
    """Clips of one split as tensors.

    ``dataset[i]`` -> ``(clip, label)`` with ``clip`` float32 ``(C, T, H, W)`` in [0, 1] (training,
    or evaluation with one view) or ``(V, C, T, H, W)`` (evaluation with ``sampling.views`` = V > 1).
    """

    def __init__(self, records: Sequence[ClipRecord], classes: Sequence[str], *, sampling: SamplingSpec,
                 transform: ClipTransform, train: bool, seed: int, size: int, split: str = "train",
                 decoder: str = "auto", cache: FrameCache | MemmapClipCache | None = None):
        self.records: list[ClipRecord] = list(records)
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.labels: list[int] = [r.label for r in self.records]
        self.sampling = sampling
        self.transform = transform
        self.train = train
        self.seed = int(seed)
        self.size = size
        self.split = split
        self.decoder = decoder
        self.cache = cache
        self.epoch = 0
        self._defects = torch.zeros(_MAX_WORKER_SLOTS + 1, len(_DEFECT_KEYS), dtype=torch.int64)
        try:
            self._defects.share_memory_()
        except (RuntimeError, OSError):  # pragma: no cover - no shared memory: worker counts stay local
            log.warning("no shared memory for defect counters; corrupt frames found in workers are not counted")

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call before iterating; workers see it when they start)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The generator that item ``index`` of the current epoch draws from."""
        gen = torch.Generator()
        gen.manual_seed(item_seed(self.seed, _SPLIT_STREAM.get(self.split, 3), self.epoch, index))
        return gen

    def frame_indices(self, index: int, num_frames: int) -> list[list[int]]:
        """Frame indices (one list per view) that item ``index`` uses for a clip of ``num_frames``."""
        return sample_indices(self.sampling, num_frames, train=self.train, gen=self.generator(index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if get_worker_info() is None:
            with single_threaded_torch():
                return self._item(index)
        return self._item(index)

    def _item(self, index: int) -> tuple[torch.Tensor, int]:
        rec = self.records[index]
        gen = self.generator(index)
        frames_u8, views = self._load(rec, gen)  # (K, 3, S, S) uint8, view index lists into it
        clips = []
        for view in views:
            clip = frames_u8[view]  # (T, 3, S, S)
            clip = self.transform(clip, gen)  # (T, 3, S, S) float
            clips.append(clip.permute(1, 0, 2, 3))  # (3, T, S, S)
        out = clips[0] if len(clips) == 1 else torch.stack(clips)  # (3, T, S, S) or (V, 3, T, S, S)
        return out.contiguous(), rec.label

    def _load(self, rec: ClipRecord, gen: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode what the item needs -> (uint8 frames (K, 3, S, S), per-view positions into them)."""
        if self.cache is not None:
            all_frames = self.cache.get(rec.source)  # (n, 3, S, S)
            views = sample_indices(self.sampling, all_frames.shape[0], train=self.train, gen=gen)
            return all_frames, [torch.tensor(v) for v in views]
        if is_video(rec.source):
            n = rec.num_frames
            paths = None
        else:
            paths = list_frames(rec.source)
            n = len(paths)
            if n == 0:
                raise DataError(f"clip {rec.clip_id}: {rec.source} has no image files (it had {rec.num_frames} "
                                "when the split was read)", hint="check the data root was not changed during the run")
        views = sample_indices(self.sampling, n, train=self.train, gen=gen)
        wanted = sorted({i for v in views for i in v})
        pos = {i: k for k, i in enumerate(wanted)}
        if paths is None:
            frames = load_video_frames(rec.source, wanted, self.size)
        else:
            frames, replaced = load_frames(paths, wanted, self.size, self.decoder, clip=rec.clip_id)
            if replaced:
                self._count("corrupt_frames_replaced", replaced)
                log.warning("clip %s: %d unreadable frame(s) replaced by the nearest readable one",
                            rec.clip_id, replaced)
        return frames, [torch.tensor([pos[i] for i in v]) for v in views]

    def _count(self, key: str, n: int) -> None:
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % _MAX_WORKER_SLOTS
        self._defects[slot, _DEFECT_KEYS.index(key)] += n

    def defect_counts(self) -> dict[str, int]:
        """Defect rules applied while loading so far (all processes; the cache's count included)."""
        totals = self._defects.sum(0).tolist()
        out = {k: int(v) for k, v in zip(_DEFECT_KEYS, totals)}
        if self.cache is not None:
            out["corrupt_frames_replaced"] += self.cache.replaced
        return out


def worker_context(dataset: Dataset, workers: int) -> str | None:
    """DataLoader ``multiprocessing_context`` for ``dataset``: ``"spawn"`` for workers of a dataset
    that decodes on the GPU (CUDA cannot run in a forked process), else ``None`` (the platform's
    default, fork on Linux, whose workers share the caches without copying)."""
    return "spawn" if workers and getattr(dataset, "decoder", None) == "cuda" else None


@dataclass
class DatasetBundle:
    """What :func:`build_datasets` returns.

    ``val`` is the stratified hold-out of the training fold (unified protocol) or ``None``
    (reference protocol: the reference selects on the test fold). ``info`` is JSON-ready.
    """

    train: ClipDataset
    val: ClipDataset | None
    test: ClipDataset
    classes: tuple[str, ...]
    info: dict


def _resolve_root(cfg: DataConfig, progress: Progress | None) -> Path:
    if cfg.data_root is not None:
        return Path(cfg.data_root).expanduser()
    if cfg.dataset != "synth":
        raise ConfigError(f"data.dataset={cfg.dataset} needs a data root",
                          hint=f"pass --data-root pointing at the {cfg.dataset.upper()} folder as shipped")
    from ifdd_bench.data.synth import ensure_dataset

    def synth_progress(done: int, total: int) -> None:  # the generator reports (done, total)
        emit_progress(progress, f"generating SynthDFER {cfg.synth_preset}", done, total)

    return Path(ensure_dataset(cfg.synth_preset, progress=synth_progress))


def sampling_spec(cfg: DataConfig) -> SamplingSpec:
    """The :class:`SamplingSpec` a DataConfig describes (MAFW expands short clips from the end)."""
    return SamplingSpec(kind=cfg.sampling, frames=cfg.frames, segments=cfg.segments, segment_len=cfg.segment_len,
                        stride=cfg.frame_stride, eval_mode=cfg.eval_sampling,
                        expand_from="end" if cfg.dataset == "mafw" else "start", views=cfg.eval_views)


def build_datasets(data_cfg: DataConfig, *, seed: int, protocol: str, run_dir: Path | None = None,
                   progress: Progress | None = None) -> DatasetBundle:
    """Read the configured fold, carve the validation hold-out and build the three datasets.

    * ``dataset="synth"`` without ``data_root`` generates/reuses SynthDFER (``ensure_dataset``) and
      reads it with the DFEW reader; with a ``data_root`` it reads that DFEW-layout folder.
    * ``protocol="unified"``: ``val`` = stratified ``val_fraction`` hold-out of the train fold,
      seeded by ``seed``, written to ``run_dir/val_split.csv`` (atomic) and read back from there if it
      exists. ``protocol="reference"``: ``val`` is ``None``.
    * ``train`` uses the ``train_aug`` preset and random sampling; ``val`` / ``test`` the evaluation
      transform and deterministic sampling with ``eval_views`` views.
    * ``progress`` receives ``{"kind": "data_progress", "stage", "done", "total"}`` dicts.
    """
    cfg = data_cfg
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown data.dataset {cfg.dataset!r}{suggest(cfg.dataset, DATASETS)}; "
                          f"valid: {', '.join(DATASETS)}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}{suggest(protocol, PROTOCOLS)}; valid: {', '.join(PROTOCOLS)}")
    if cfg.size < 8:
        raise ConfigError(f"data.size must be at least 8 pixels, got {cfg.size}")
    if cfg.workers is not None and cfg.workers < 0:
        raise ConfigError(f"data.workers must be >= 0 (0 loads in the main process), got {cfg.workers}")
    if cfg.decode_device not in DECODE_DEVICES:
        raise unknown("data.decode_device", cfg.decode_device, DECODE_DEVICES)
    decoder = "cuda" if cfg.decode_device == "cuda" else "auto"
    check_decoder(decoder)  # GPU decoding without CUDA: refused before anything is read
    spec = sampling_spec(cfg)
    aug = augment_spec(cfg.train_aug, cfg.dataset)
    root = _resolve_root(cfg, progress)
    frame_source = resolve_frame_source(cfg.dataset, cfg.frame_source)
    read = dict(frame_source=frame_source, label_order=cfg.label_order, clip_len=spec.span, progress=progress)
    train_split = read_split(cfg.dataset, root, "train", cfg.fold, **read)
    test_split = read_split(cfg.dataset, root, "test", cfg.fold, **read)
    classes = train_split.classes

    val_records: list[ClipRecord] | None = None
    val_file, val_how = None, None
    train_records = train_split.records
    if protocol == "unified":
        train_records, val_records, val_file, val_how = holdout_for_run(train_split.records, cfg.val_fraction,
                                                                        seed, run_dir)
    train_cache = test_cache = None
    if cfg.clip_cache:  # on disk, memory-mapped: built once per dataset, split and size (clipcache.py)
        from ifdd_bench.data.clipcache import open_or_build

        train_cache, test_cache = (open_or_build(cfg.clip_cache, cfg.dataset, name, split.records, cfg.size,
                                                 decoder=decoder, progress=progress)
                                   for name, split in (("train", train_split), ("test", test_split)))
    elif cfg.cache_clips:
        everything = list(train_split.records) + list(test_split.records)
        train_cache = test_cache = FrameCache.build(everything, cfg.size, decoder=decoder, progress=progress)

    common = dict(sampling=spec, seed=seed, size=cfg.size, decoder=decoder)
    eval_tf = ClipTransform(aug, cfg.size, train=False)
    train_ds = ClipDataset(train_records, classes, transform=ClipTransform(aug, cfg.size, train=True), train=True,
                           split="train", cache=train_cache, **common)
    val_ds = None if val_records is None else ClipDataset(val_records, classes, transform=eval_tf, train=False,
                                                          split="val", cache=train_cache, **common)
    test_ds = ClipDataset(test_split.records, classes, transform=eval_tf, train=False, split="test", cache=test_cache,
                          **common)
    caches = [c for c in dict.fromkeys((train_cache, test_cache)) if c is not None]
    info = {
        "dataset": cfg.dataset,
        "root": str(root),
        "fold": cfg.fold,
        "frame_source": frame_source,
        "label_order": cfg.label_order,
        "classes": list(classes),
        "protocol": protocol,
        "annotation_files": {"train": str(train_split.annotation_file), "test": str(test_split.annotation_file)},
        "num_clips": {"train": len(train_ds), "val": 0 if val_ds is None else len(val_ds), "test": len(test_ds)},
        "class_counts": {"train": _class_counts(train_ds), "val": None if val_ds is None else _class_counts(val_ds),
                         "test": _class_counts(test_ds)},
        "counts": {"train": dict(train_split.counts), "test": dict(test_split.counts)},
        "short_clip_rule": ("consecutive: reference frame expansion" if spec.kind == "consecutive"
                            else "pad by repeating the last frame"),
        "sampling": spec.describe(),
        "augmentation": aug.describe(),
        "size": cfg.size,
        "decoder": decoder,
        "cache_clips": cfg.cache_clips and not cfg.clip_cache,
        "clip_cache_files": [str(c.path) for c in caches if hasattr(c, "path")],
        "cache_bytes": sum(c.nbytes for c in caches),
        "corrupt_frames_replaced_in_cache": sum(c.replaced for c in caches),
        "val_fraction": cfg.val_fraction if val_ds is not None else None,
        "val_split_file": None if val_file is None else str(val_file),
        "val_split": val_how,
        "seed": seed,
    }
    return DatasetBundle(train=train_ds, val=val_ds, test=test_ds, classes=tuple(classes), info=info)


def _class_counts(ds: ClipDataset) -> list[int]:
    counts = [0] * ds.num_classes
    for label in ds.labels:
        counts[label] += 1
    return counts
