"""Sweep cells in worker processes: the picklable cell entry point and the local process pool.

:func:`run_cell` trains one cell wherever it runs (a pool worker, a submitit job) and measures
the cell's own time. :class:`CellPool` runs cells in spawned processes, ``jobs`` at a time, and
adds two things to a plain process pool:

* **core sharing** (:class:`CoreShare`): each cell gets ``cores // running`` torch threads, re-read
  at every epoch start, so the last cells of a sweep take the cores of the finished ones;
* **progress relay** (:func:`_forwarder`): workers put their engine events (data preparation,
  epochs, steps, warnings) on a queue that the parent passes to the sweep's progress callback
  while it waits.

The executors (:mod:`ifdd_bench.sweep.executors`) own the bookkeeping (job book, result rows,
failures).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue
import time
from typing import Any, Callable, Iterable, Mapping

from ifdd_bench.config import RunSpec
from ifdd_bench.cpus import usable_cpus
from ifdd_bench.events import Progress

Runner = Callable[..., Mapping[str, Any]]

#: key under which :func:`run_cell` returns the cell's own run time (removed before the row is used)
CELL_SECONDS = "_cell_seconds"


def default_runner() -> Runner:
    """The engine's ``train_run`` (imported lazily: it imports torch)."""
    from ifdd_bench.engine.run import train_run

    return train_run


def run_cell(spec: RunSpec, runner: Runner | None = None, threads: int | None = None,
             progress: Progress | None = None, resume: bool = True) -> dict[str, Any]:
    """Train one cell (a worker-side entry point: picklable, sets the torch thread count).

    ``runner(spec, progress=, resume=)`` trains it (default: the engine's ``train_run``);
    ``resume=False`` trains from scratch instead of resuming the cell's ``last.pt``.

    In a worker of a :class:`CellPool` the thread count follows the pool's
    :class:`CoreShare` instead of ``threads``, and the engine's progress events are sent to the
    parent (:func:`_forwarder`).
    """
    if _POOL_EVENTS is not None:
        progress = _forwarder(_POOL_EVENTS, spec.run_id, progress)
    share = _POOL_SHARE
    if share is not None:
        share.apply()
        progress = share.wrap(progress)
    elif threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        _set_torch_threads(threads)
    runner = runner or default_runner()
    start = time.perf_counter()
    out = dict(runner(spec, progress=progress, resume=resume) or {})
    out[CELL_SECONDS] = time.perf_counter() - start  # the cell's own time, without queueing
    return out


def _set_torch_threads(threads: int) -> None:
    """Set torch's intra-op thread count if torch is already imported (else the env vars apply)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


#: engine events a pool worker sends to the parent's progress display, and the fields it keeps
FORWARDED_KINDS = ("epoch_start", "step", "epoch_end", "warning", "data_progress", "probe")
FORWARDED_FIELDS = ("kind", "epoch", "epochs", "step", "steps", "loss", "lr", "val_uar", "test_uar",
                    "message", "stage", "done", "total")


def _forwarder(events: Any, run_id: str, progress: Progress | None) -> Progress:
    """A progress callback for a pool worker: puts the engine's progress events (epochs, steps,
    warnings, data preparation) of cell ``run_id`` on the parent's ``events`` queue as
    ``{"kind": "run", "run_id", "data"}``, keeping only small fields, then calls ``progress``."""

    def forward(event: dict[str, Any]) -> None:
        if isinstance(event, dict) and event.get("kind") in FORWARDED_KINDS:
            data = {key: event[key] for key in FORWARDED_FIELDS if key in event}
            events.put({"kind": "run", "run_id": run_id, "data": data})
        if progress is not None:
            progress(event)

    return forward


class CoreShare:
    """The machine's cores, shared among the cells that a local pool still runs.

    The parent keeps ``active`` (a ``multiprocessing.Value``) at ``min(jobs, unfinished cells)``.
    Each worker sets its torch thread count to ``cores // active`` when a cell starts and again at
    every epoch start (the engine's ``start`` and ``epoch_start`` events). Without it, the last
    cell of a sweep with an odd number of cells trains on one core while the other sits idle.
    """

    REBALANCE_EVENTS = ("start", "epoch_start")

    def __init__(self, cores: int, active: Any):
        self.cores = max(1, cores)
        self.active = active

    def threads(self) -> int:
        """Threads for one cell now: this machine's cores split evenly among the running cells."""
        return max(1, self.cores // max(1, int(self.active.value)))

    def apply(self) -> int:
        """Set this process's torch thread count to :meth:`threads` and return it."""
        threads = self.threads()
        _set_torch_threads(threads)
        return threads

    def wrap(self, progress: Progress | None) -> Progress:
        """A progress callback that rebalances threads on the engine's start events, then forwards."""

        def forward(event: dict[str, Any]) -> None:
            if isinstance(event, dict) and event.get("kind") in self.REBALANCE_EVENTS:
                self.apply()
            if progress is not None:
                progress(event)

        return forward


def pop_cell_seconds(returned: Mapping[str, Any] | None) -> tuple[dict[str, Any], float | None]:
    """Split :func:`run_cell`'s result into the runner's dict and the cell's measured seconds."""
    out = dict(returned or {})
    seconds = out.pop(CELL_SECONDS, None)
    return out, seconds


#: the pool's core share and its progress queue, set in each local pool worker by
#: :func:`_worker_init` (None elsewhere)
_POOL_SHARE: CoreShare | None = None
_POOL_EVENTS: Any = None


def _worker_init(threads: int, cores: int | None = None, active: Any = None, events: Any = None) -> None:
    # runs in a fresh spawned worker before torch is imported: torch reads these at import
    global _POOL_SHARE, _POOL_EVENTS
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    _POOL_SHARE = CoreShare(cores, active) if cores and active is not None else None
    _POOL_EVENTS = events


class CellPool:
    """Spawned worker processes that run cells ``jobs`` at a time with shared cores and relayed progress."""

    def __init__(self, jobs: int, cells: int):
        cores = usable_cpus()
        self.threads = max(1, cores // jobs)  # before any cell has finished
        self.workers = min(jobs, cells)
        self.unfinished = cells
        ctx = multiprocessing.get_context("spawn")
        self.active = ctx.Value("i", self.workers)  # cells running at once; read by the workers' CoreShare
        self.events = ctx.Queue()  # the workers' engine progress events, relayed by as_completed
        self.executor = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                                               initargs=(self.threads, cores, self.active, self.events))

    def submit(self, spec: RunSpec, runner: Runner | None, resume: bool = True) -> cf.Future:
        """Queue one cell; its future returns :func:`run_cell`'s dict."""
        return self.executor.submit(run_cell, spec, runner, self.threads, resume=resume)

    def as_completed(self, futures: list[cf.Future], emit: Progress, poll_s: float = 0.2) -> Iterable[cf.Future]:
        """Yield ``futures`` as they finish, passing the workers' queued events to ``emit`` meanwhile;
        each finished cell hands its cores to the cells still running."""

        def relay() -> None:
            while True:
                try:
                    emit(self.events.get_nowait())
                except queue.Empty:
                    return

        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=poll_s, return_when=cf.FIRST_COMPLETED)
            relay()
            for future in done:
                self.unfinished -= 1
                self.active.value = max(1, min(self.workers, self.unfinished))  # only the parent writes it
                yield future
        relay()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers; queued cells that have not started are cancelled."""
        self.executor.shutdown(wait=wait, cancel_futures=True)
