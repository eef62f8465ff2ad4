"""Process-group setup and the few collectives the engine needs.

The same command runs alone or under ``torchrun --nproc_per_node N [--nnodes M ...]``: torchrun
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and
:func:`init_distributed` joins the group (NCCL on CUDA, gloo on CPU). Without those variables the
context is a single process and every collective below is a no-op.

Only rank 0 writes files. Failures that happen on one rank (a non-finite loss, a failed write on
rank 0) are turned into an agreement with :func:`all_agree`, so every rank stops together instead
of hanging in the next collective.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from ifdd_bench.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """Where this process sits in the job and which device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized_here: bool = False  # this context created the process group (and must destroy it)
    notes: list[str] = field(default_factory=list)  # device fallbacks and similar, for the run record

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> tuple[torch.device, list[str]]:
    """Turn ``auto | cpu | cuda | cuda:N`` into a device.

    ``cuda`` without a usable CUDA device falls back to the CPU and returns a note saying so
    loudly (the CLI prints it and the run record keeps it). ``cuda:N`` with N out of range raises
    :class:`ConfigError`.
    """
    pref = (preference or "auto").strip().lower()
    notes: list[str] = []
    if pref == "cpu":
        return torch.device("cpu"), notes
    if pref not in ("auto", "cuda") and not pref.startswith("cuda:"):
        raise ConfigError(f"unknown device {preference!r}; valid: auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        if pref != "auto":
            notes.append(f"CUDA was requested (device={preference}) but no CUDA device is available; "
                         "TRAINING ON THE CPU instead")
            log.warning(notes[-1])
        return torch.device("cpu"), notes
    count = torch.cuda.device_count()
    if pref.startswith("cuda:"):
        try:
            index = int(pref.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"device {preference!r} is not of the form cuda:N") from None
        if index >= count:
            raise ConfigError(f"device {preference!r} does not exist; this machine has {count} CUDA device(s)")
        return torch.device("cuda", index), notes
    return torch.device("cuda", local_rank % count), notes


def init_distributed(device_preference: str = "auto", *, timeout_s: float = 1800.0) -> DistContext:
    """Read the torchrun environment, join the process group if needed and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device, notes = resolve_device(device_preference, local_rank)
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, notes=notes)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1:
        if dist.is_initialized():
            ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
        else:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://",
                                    timeout=datetime.timedelta(seconds=timeout_s))
            ctx.initialized_here = True
    return ctx


def shutdown(ctx: DistContext) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()
        ctx.initialized_here = False


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (returns the tensor)."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def reduce_floats(values: list[float], device: torch.device) -> list[float]:
    """Sum a few Python floats over ranks (float64 on ``device``)."""
    if not _active():
        return list(values)
    buf = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.tolist()


def all_agree(ok: bool, device: torch.device) -> bool:
    """True only if ``ok`` holds on every rank."""
    if not _active():
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-element list when not distributed)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    if _active():
        dist.barrier()
