"""The data of a run: its dataset bundle, checked against the spec, and its seeded DataLoaders.

:func:`build_run_data` builds the bundle (``ifdd_bench.data.build_datasets``) once per process
(rank 0 first); :class:`Loaders` wraps its splits in DataLoaders whose sampler, workers and datasets
are reseeded from ``(seed, epoch)`` at every epoch, which is what makes a resumed run repeat the
batches of an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ifdd_bench.config import RunSpec, TrainConfig
from ifdd_bench.data.dataset import worker_context
from ifdd_bench.engine import distributed as D
from ifdd_bench.engine.seeding import derive_seed, loader_generator, worker_init_fn
from ifdd_bench.errors import ConfigError
from ifdd_bench.events import Progress


def build_run_data(spec: RunSpec, ctx: D.DistContext, run_dir: Path, progress: Progress | None):
    """The dataset bundle of ``spec`` (``train``, ``val``, ``test``, ``classes``, ``info``)."""
    from ifdd_bench.data import build_datasets

    def build():
        return build_datasets(spec.data, seed=spec.train.seed, protocol=spec.train.protocol, run_dir=run_dir,
                              progress=progress if ctx.is_main else None)

    # rank 0 builds first (it may generate SynthDFER and writes the validation split into the run
    # folder); the others follow and read the same split file
    bundle = build() if ctx.is_main else None
    D.barrier()
    return bundle if ctx.is_main else build()


def check_bundle(spec: RunSpec, bundle: Any) -> None:
    """Refuse a bundle the spec cannot train on (no validation split for ``val_uar``, no test clips)."""
    if spec.train.selection == "val_uar" and (bundle.val is None or len(bundle.val) == 0):
        raise ConfigError("selection 'val_uar' needs a validation split but the data has none",
                          hint="use the unified protocol (which holds out val_fraction of the train fold) "
                               "or selection=test_war")
    if len(bundle.test) == 0:
        raise ConfigError("the test split is empty")


def clips_in(split: Any) -> int:
    """Number of clips in a split; 0 for a missing one (``bundle.val`` under the reference protocol)."""
    return len(split) if split is not None else 0


class ShardSampler(Sampler[int]):
    """Evaluation indices ``rank, rank + world, ...``: every clip exactly once over all ranks
    (no padding, unlike DistributedSampler, so distributed metrics stay exact)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Loaders:
    """Train / val / test DataLoaders with per-epoch seeding of sampler, workers and datasets.

    Training uses a :class:`DistributedSampler` even in a single process (``num_replicas=1``):
    its permutation depends only on ``(seed, epoch)``, so one process with batch B sees, batch
    by batch, the same clips as N processes with batch B/N each.
    """

    def __init__(self, bundle: Any, cfg: TrainConfig, workers: int, ctx: D.DistContext):
        self.bundle, self.cfg, self.ctx = bundle, cfg, ctx
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} processes; "
                              "batch_size is the global batch")
        local_batch = cfg.batch_size // ctx.world_size
        if cfg.mixup and local_batch % 2:
            raise ConfigError(f"mixup needs an even batch per process; {cfg.batch_size} / {ctx.world_size} = {local_batch}")
        if len(bundle.train) < cfg.batch_size:
            raise ConfigError(f"the training split has {len(bundle.train)} clips, fewer than batch_size "
                              f"{cfg.batch_size}; lower batch_size")
        self.generators: list[torch.Generator] = []
        self.sampler = DistributedSampler(bundle.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.train = self._loader(bundle.train, local_batch, self.sampler, workers, drop_last=True)
        self.val = None
        if bundle.val is not None and len(bundle.val):
            self.val = self._loader(bundle.val, cfg.eval_batch_size,
                                    ShardSampler(len(bundle.val), ctx.rank, ctx.world_size), workers)
        self.test = self._loader(bundle.test, cfg.eval_batch_size,
                                 ShardSampler(len(bundle.test), ctx.rank, ctx.world_size), workers)

    def _loader(self, dataset: Dataset, batch: int, sampler: Sampler, workers: int, drop_last: bool = False):
        gen = loader_generator(0)
        self.generators.append(gen)
        return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=drop_last,
                          pin_memory=self.ctx.device.type == "cuda", worker_init_fn=worker_init_fn,
                          generator=gen, persistent_workers=False, multiprocessing_context=worker_context(dataset, workers))

    def set_epoch(self, epoch: int) -> None:
        """Give every dataset, the sampler and the worker generators this epoch's seeds."""
        self.sampler.set_epoch(epoch)
        for split in (self.bundle.train, self.bundle.val, self.bundle.test):
            if split is not None and hasattr(split, "set_epoch"):
                split.set_epoch(epoch)
        for i, gen in enumerate(self.generators):
            gen.manual_seed(derive_seed(self.cfg.seed, epoch, "workers", i, self.ctx.rank))


def clip_ids(dataset: Any) -> list[str] | None:
    """Clip id of each item of a clip dataset, by index (``None`` for a dataset without records)."""
    records = getattr(dataset, "records", None)
    if records is None:
        return None
    return [getattr(r, "clip_id", str(i)) for i, r in enumerate(records)]
