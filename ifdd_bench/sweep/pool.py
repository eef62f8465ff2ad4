"""Sweep cells in worker processes: the picklable cell entry point and the local process pool.

:func:`run_cell` trains one cell wherever it runs (a pool worker, a submitit job) and measures
the cell's own time. :class:`CellPool` runs cells in spawned processes, ``jobs`` at a time, and
adds two things to a plain process pool:

* **a fixed thread count per cell**: every worker trains with ``cores // jobs`` torch threads
  from the first step of a cell to its last. CPU kernels sum in an order that depends on the
  thread count, so a cell whose count changed while it trained (as when the last cells took the
  cores of finished ones) would end with other weights, and a rerun of the sweep would not repeat
  it: whether and when the count changed depended on how fast its partners finished;
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

    ``threads`` (when given) is the torch thread count for the whole cell. In a worker of a
    :class:`CellPool` the engine's progress events are also sent to the parent (:func:`_forwarder`).
    """
    if _POOL_EVENTS is not None:
        progress = _forwarder(_POOL_EVENTS, spec.run_id, progress)
    if threads:
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


def pop_cell_seconds(returned: Mapping[str, Any] | None) -> tuple[dict[str, Any], float | None]:
    """Split :func:`run_cell`'s result into the runner's dict and the cell's measured seconds."""
    out = dict(returned or {})
    seconds = out.pop(CELL_SECONDS, None)
    return out, seconds


#: the pool's progress queue, set in each local pool worker by :func:`_worker_init` (None elsewhere)
_POOL_EVENTS: Any = None


def _worker_init(threads: int, events: Any = None) -> None:
    # runs in a fresh spawned worker before torch is imported: torch reads these at import
    global _POOL_EVENTS
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    _POOL_EVENTS = events


class CellPool:
    """Spawned worker processes that run cells ``jobs`` at a time, each cell with ``cores // jobs``
    torch threads from start to end, and relay their progress.

    The thread count depends on ``jobs`` and the machine only, not on how many cells are left, so
    re-running one cell with the same ``--jobs`` trains it with the same count as the sweep did.
    """

    def __init__(self, jobs: int, cells: int):
        self.threads = max(1, usable_cpus() // max(1, jobs))
        self.workers = min(jobs, cells)
        ctx = multiprocessing.get_context("spawn")
        self.events = ctx.Queue()  # the workers' engine progress events, relayed by as_completed
        self.executor = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                                               initargs=(self.threads, self.events))

    def submit(self, spec: RunSpec, runner: Runner | None, resume: bool = True) -> cf.Future:
        """Queue one cell; its future returns :func:`run_cell`'s dict."""
        return self.executor.submit(run_cell, spec, runner, self.threads, resume=resume)

    def as_completed(self, futures: list[cf.Future], emit: Progress, poll_s: float = 0.2) -> Iterable[cf.Future]:
        """Yield ``futures`` as they finish, passing the workers' queued events to ``emit`` meanwhile."""

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
            yield from done
        relay()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers; queued cells that have not started are cancelled."""
        self.executor.shutdown(wait=wait, cancel_futures=True)
