"""Per-epoch learning-rate schedules (timm :class:`~timm.scheduler.scheduler.Scheduler` objects).

Two schedules, both set once per epoch and constant within it:

* ``reference`` - IFDD's exact table (spec 11.2), bug B5 included: a linear warm-up from
  ``warmup_lr`` towards a target that the reference computes with its helper's *default*
  arguments (base 1e-4, end 1e-6) instead of the run's values, so the warm-up overshoots
  (8.83e-5 at epoch 9) and the learning rate drops to the run's peak ``lr`` (5e-5) at epoch 10,
  followed by a half-cosine from ``lr`` to ``min_lr`` over the remaining epochs.
* ``cosine`` - the clean schedule: timm's :class:`~timm.scheduler.CosineLRScheduler` with a
  linear warm-up prefix of ``warmup_epochs`` epochs from ``warmup_lr`` to ``lr``, then a
  half-cosine to ``min_lr`` over the remaining epochs.

The learning rate of epoch ``e`` is a pure function of the config and ``e``, so resuming needs
nothing but the epoch number (the scheduler state is still saved in checkpoints for the record).

Example::

    >>> table = lr_table(protocol_preset("reference"))
    >>> f"{table[9]:.3e} {table[10]:.3e}"
    '8.830e-05 5.000e-05'
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Callable

import torch
from timm.scheduler import CosineLRScheduler
from timm.scheduler.scheduler import Scheduler

from ifdd_bench.config import TrainConfig
from ifdd_bench.errors import unknown

SCHEDULES = ("reference", "cosine")

#: the reference helper's default arguments that leak into the warm-up target (bug B5)
_B5_BASE_LR = 1e-4
_B5_END_LR = 1e-6


def reference_lr(epoch: int, *, epochs: int = 100, lr: float = 5e-5, min_lr: float = 5e-7,
                 warmup_epochs: int = 10, warmup_lr: float = 1e-6) -> float:
    """IFDD's learning rate for 0-based ``epoch`` (spec 11.2; defaults are the reference run).

    Warm-up (``epoch < warmup_epochs``): ``warmup_lr + epoch * (L_w - warmup_lr) / warmup_epochs``
    with ``L_w = 1e-6 + (1e-4 - 1e-6) * (1 + cos(pi * (warmup_epochs - 1) / (epochs - 1))) / 2``
    (the helper's defaults, bug B5). Afterwards:
    ``min_lr + (lr - min_lr) * (1 + cos(pi * (epoch - warmup_epochs) / (epochs - warmup_epochs))) / 2``.
    """
    if epoch < warmup_epochs:
        span = max(epochs - 1, 1)
        target = _B5_END_LR + (_B5_BASE_LR - _B5_END_LR) * (1 + math.cos(math.pi * (warmup_epochs - 1) / span)) / 2
        return warmup_lr + epoch * (target - warmup_lr) / warmup_epochs
    span = max(epochs - warmup_epochs, 1)
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * (epoch - warmup_epochs) / span)) / 2


class ReferenceLRScheduler(Scheduler):
    """timm-style per-epoch scheduler returning :func:`reference_lr` for every param group."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, epochs: int, lr: float, min_lr: float,
                 warmup_epochs: int, warmup_lr: float):
        self.epochs, self.peak_lr, self.min_lr = epochs, lr, min_lr
        self.warmup_epochs, self.warmup_lr = warmup_epochs, warmup_lr
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=True)

    def _get_lr(self, t: int) -> list[float]:
        value = reference_lr(t, epochs=self.epochs, lr=self.peak_lr, min_lr=self.min_lr,
                             warmup_epochs=self.warmup_epochs, warmup_lr=self.warmup_lr)
        return [value for _ in self.base_values]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Scheduler:
    """The per-epoch scheduler named by ``cfg.schedule``; call ``scheduler.step(epoch)`` at each
    epoch start (0-based) to set that epoch's learning rate."""
    if cfg.schedule == "reference":
        return ReferenceLRScheduler(optimizer, epochs=cfg.epochs, lr=cfg.lr, min_lr=cfg.min_lr,
                                    warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr)
    if cfg.schedule == "cosine":
        for group in optimizer.param_groups:  # timm reads the peak from the groups' initial lr
            group["lr"] = cfg.lr
            group["initial_lr"] = cfg.lr
        # a one-epoch cosine (epochs = warm-up + 1) is legitimate here; timm would warn about it
        with _quiet("timm.scheduler.cosine_lr"):
            return CosineLRScheduler(
                optimizer,
                t_initial=max(cfg.epochs - cfg.warmup_epochs, 1),
                lr_min=cfg.min_lr,
                warmup_t=cfg.warmup_epochs,
                warmup_lr_init=cfg.warmup_lr,
                warmup_prefix=True,  # the cosine starts after the warm-up, which ends at lr
                cycle_limit=1,
                t_in_epochs=True,
            )
    raise unknown("schedule", cfg.schedule, SCHEDULES)


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def lr_table(cfg: TrainConfig) -> list[float]:
    """Learning rate of every epoch ``0 .. cfg.epochs - 1`` as the engine will apply it."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg)
    values = []
    for epoch in range(cfg.epochs):
        scheduler.step(epoch)
        values.append(optimizer.param_groups[0]["lr"])
    return values


def lr_function(cfg: TrainConfig) -> Callable[[int], float]:
    """``epoch -> lr`` as a plain function (for plots and progress displays)."""
    table = lr_table(cfg)
    return lambda epoch: table[min(max(epoch, 0), len(table) - 1)]
