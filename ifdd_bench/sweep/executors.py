"""Running a sweep: :func:`run_sweep`, its executors and the bookkeeping of each cell.

Executors:

* ``local`` (default): cells one after another in this process, or ``jobs=N`` worker processes
  (spawned, each with ``cores // N`` torch threads; once fewer than N cells are left running,
  they take the freed cores and relay the engine's progress events to the caller's ``progress``;
  see :class:`ifdd_bench.sweep.pool.CellPool`).
* ``submitit`` (the optional ``slurm`` extra): one submitit job per cell through
  ``submitit.AutoExecutor`` (Slurm when present, local processes otherwise); job ids, states and
  errors go to ``<runs_dir>/sweeps/<sweep_id>/jobs.csv``. A job with ``tasks_per_node=N`` trains its
  cell as N DDP ranks (:mod:`ifdd_bench.sweep.slurm`).

Every executor records each attempt of each cell in that ``jobs.csv``
(:class:`~ifdd_bench.sweep.jobbook.JobBook`), so failed cells are reported and re-runnable. Result
rows are written by the engine through :func:`ifdd_bench.results.append_rows`, which is
file-locked and atomic, so parallel workers never tear ``runs.csv``; a half-trained cell resumes
from its ``last.pt`` inside the engine unless ``resume=False``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ifdd_bench import registry
from ifdd_bench.atomic import json_text, write_text_atomic
from ifdd_bench.errors import ConfigError, suggest
from ifdd_bench.events import Progress
from ifdd_bench.results import PER_CLASS_CSV, RUNS_CSV, append_rows
from ifdd_bench.sweep.finished import cells_to_run, partition_finished
from ifdd_bench.sweep.jobbook import JobBook
from ifdd_bench.sweep.plan import Cell, SweepPlan
from ifdd_bench.sweep.pool import CellPool, Runner, default_runner, pop_cell_seconds
from ifdd_bench.sweep.probing import CellRunner
from ifdd_bench.sweep.slurm import check_ranks, make_executor, require_submitit, run_job_cell

log = logging.getLogger(__name__)

#: the values of ``run_sweep(executor=...)`` (``--executor``)
EXECUTORS = ("local", "submitit")


@dataclass
class CellFailure:
    """A cell that raised: its run id, attempt, the error line and where the full log is."""

    run_id: str
    error: str
    job_id: str = ""
    log: str = ""


@dataclass
class SweepOutcome:
    """What a call of :func:`run_sweep` did."""

    sweep_id: str
    folder: Path
    total: int
    skipped: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # cells that ran (trained, or only probed)
    probe_only: list[str] = field(default_factory=list)  # finished cells that ran only to be probed
    failed: list[CellFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _error_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if "\n" in text and len(text) > 300 else text.replace("\n", " | ")


def check_init_weights(cells: Sequence[Cell]) -> None:
    """Build one model per model/overrides whose config names an initial-weight file, at the cells'
    input geometry, so that a file that does not fit (e.g. the 64 px pretext backbone under
    ``data.size=32``) fails once with its own error before any cell starts, not once per cell."""
    seen: set[tuple[Any, ...]] = set()
    for cell in cells:
        spec = cell.spec
        key = (spec.model, spec.model_overrides, spec.data.frames, spec.data.size)
        if key in seen:
            continue
        seen.add(key)
        cfg = registry.resolve_config(spec.model, spec.variant, frames=spec.data.frames, img_size=spec.data.size,
                                      overrides=dict(spec.model_overrides))
        if any(getattr(cfg, name, None) for name in registry.INIT_FIELDS):
            registry.build_from_config(spec.model, cfg)


def run_sweep(
    plan: SweepPlan,
    *,
    executor: str = "local",
    jobs: int = 1,
    runner: Runner | None = None,
    progress: Progress | None = None,
    submitit_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    resume: bool = True,
) -> SweepOutcome:
    """Run the cells of ``plan`` that ``runs.csv`` lacks; return what was skipped/done/failed.

    ``runner(spec, progress=, resume=)`` trains one cell (default: the engine's ``train_run``); it
    must append the cell's row to ``runs.csv``. With ``plan.probes`` every cell is then probed
    (:class:`~ifdd_bench.sweep.probing.CellRunner`), and finished cells whose ``probes.csv`` rows
    are missing but whose run folder holds a checkpoint run again only to be probed. With ``resume=False`` an unfinished cell trains
    from scratch instead of resuming its ``last.pt`` (``run ablation --restart``); finished cells
    are skipped either way. A cell that raises is recorded as failed in ``jobs.csv`` and the sweep
    goes on; ``KeyboardInterrupt`` stops the sweep (finished cells stay finished). ``progress``
    receives dicts keyed ``kind``: ``{"kind": "sweep_start", "total", "todo", ...}``,
    ``{"kind": "cell_start" | "cell_done" | "cell_failed", "run_id", "index", ...}`` and, for
    in-process and pool cells (not submitit jobs), ``{"kind": "run", "run_id", "data": <engine
    progress event>}``.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: unknown executor {executor!r}{suggest(executor, EXECUTORS)}; "
                          f"valid: {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    cells = plan.cells()
    if not cells:
        raise ConfigError("the sweep grid is empty; check --variants, --folds and --seeds")
    if executor == "submitit":
        require_submitit()
        check_ranks([c.spec for c in cells], int((submitit_options or {}).get("tasks_per_node") or 1))
    elif submitit_options:
        raise ConfigError(f"submitit options ({', '.join(submitit_options)}) only apply to executor='submitit'")
    folder = Path(plan.runs_dir) / "sweeps" / plan.sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "sweep.json", json_text(plan.describe()))
    todo, finished, to_probe = cells_to_run(cells, plan.results_dir, plan.probes)
    to_train = [c for c in todo if c not in to_probe]
    skipped = [c.run_id for c in finished if c not in to_probe]
    outcome = SweepOutcome(plan.sweep_id, folder, len(cells), skipped=skipped,
                           probe_only=[c.run_id for c in to_probe])
    emit = progress or (lambda event: None)
    emit({"kind": "sweep_start", "sweep_id": plan.sweep_id, "total": len(cells), "todo": len(todo),
          "skipped": len(skipped), "folder": str(folder)})
    if dry_run or not todo:
        return outcome
    check_init_weights(to_train)
    runner = CellRunner(runner, plan.probes)  # every executor trains and probes a cell through it
    book = JobBook(folder, plan.sweep_id)
    start = time.perf_counter()
    try:
        if executor == "submitit":
            _run_submitit(todo, book, outcome, runner, emit, resume, jobs, dict(submitit_options or {}))
        elif jobs > 1:
            _run_pool(todo, book, outcome, runner, emit, resume, jobs)
        else:
            _run_inline(todo, book, outcome, runner, emit, resume)
    finally:
        outcome.seconds = time.perf_counter() - start
    return outcome


def _finish(book: JobBook, cell: Cell, attempt: int, t0: float, outcome: SweepOutcome, emit: Progress,
            index: int, err: BaseException | str | None = None, job_id: str = "", log_path: str = "",
            cell_seconds: float | None = None) -> None:
    """Record a finished cell. ``cell_seconds`` is the time the cell itself ran (measured in the
    worker); without it, the time since ``t0`` is used, which for pooled and submitit cells also
    counts the time spent waiting for a free worker or a cluster slot."""
    seconds = f"{cell_seconds if cell_seconds is not None else time.perf_counter() - t0:.1f}"
    if err is None:
        book.finish(cell.run_id, attempt, "done", seconds=seconds)
        outcome.done.append(cell.run_id)
        emit({"kind": "cell_done", "run_id": cell.run_id, "index": index, "seconds": float(seconds)})
        return
    line = err if isinstance(err, str) else _error_line(err)
    book.finish(cell.run_id, attempt, "failed", error=line, seconds=seconds)
    outcome.failed.append(CellFailure(cell.run_id, line, job_id, log_path))
    emit({"kind": "cell_failed", "run_id": cell.run_id, "index": index, "error": line})


def _check_row(cell: Cell, results_dir: str, returned: Mapping[str, Any] | None = None) -> str | None:
    """Error text if the cell's result row is still missing from runs.csv after the runner ran.

    The engine returns the stored row of a run folder that already finished without appending it
    again; when that row belongs to this cell (same train_hash) but ``results_dir`` lacks it (a
    new results folder), it is recorded here, with its per-class rows from ``result.json``.
    """
    todo, _ = partition_finished([cell], results_dir)
    if not todo:
        return None
    row = dict((returned or {}).get("row", returned or {}))
    if row.get("run_id") == cell.run_id and row.get("train_hash") not in (None, cell.train_hash):
        return (f"{Path(cell.spec.runs_dir) / cell.run_id} holds a finished run of another protocol "
                f"(train_hash {row.get('train_hash')}, this sweep {cell.train_hash}); re-run with --restart "
                f"to retrain it, or use another --runs-dir")
    if row.get("run_id") == cell.run_id and row.get("train_hash") == cell.train_hash:
        per_class = []
        result_json = Path(cell.spec.runs_dir) / cell.run_id / "result.json"
        if result_json.is_file():
            try:
                per_class = json.loads(result_json.read_text()).get("per_class") or []
            except (OSError, ValueError):
                per_class = []
        append_rows(Path(results_dir) / RUNS_CSV, [row])
        if per_class:
            append_rows(Path(results_dir) / PER_CLASS_CSV, per_class)
        return None
    return (f"runner finished but {Path(results_dir) / RUNS_CSV} has no row for {cell.run_id} "
            f"with train_hash {cell.train_hash}")


def _run_inline(todo: list[Cell], book: JobBook, outcome: SweepOutcome, runner: Runner | None,
                emit: Progress, resume: bool) -> None:
    runner = runner or default_runner()
    for index, cell in enumerate(todo):
        attempt = book.start(cell, "local", job_id=f"pid{os.getpid()}",
                             log=str(Path(cell.spec.runs_dir) / cell.run_id))
        emit({"kind": "cell_start", "run_id": cell.run_id, "index": index, "todo": len(todo)})
        t0 = time.perf_counter()

        def inner(data: Any, _rid: str = cell.run_id) -> None:
            emit({"kind": "run", "run_id": _rid, "data": data})

        try:
            returned = runner(cell.spec, progress=inner, resume=resume)
        except KeyboardInterrupt:
            book.finish(cell.run_id, attempt, "interrupted")
            raise
        except Exception as err:  # a failed cell must not stop the sweep
            log.debug("cell %s failed", cell.run_id, exc_info=True)
            write_text_atomic(outcome.folder / "errors" / f"{cell.run_id}.{attempt}.txt", traceback.format_exc())
            _finish(book, cell, attempt, t0, outcome, emit, index, err)
            continue
        _finish(book, cell, attempt, t0, outcome, emit, index, _check_row(cell, cell.spec.results_dir, returned))


def _run_pool(todo: list[Cell], book: JobBook, outcome: SweepOutcome, runner: Runner | None,
              emit: Progress, resume: bool, jobs: int) -> None:
    pool = CellPool(jobs, len(todo))
    running: dict[cf.Future, tuple[int, Cell, int, float]] = {}
    # baselines first: next to the variants of a frozen-backbone model they are the long cells (the
    # default ablation: static_control ~7 min, each variant ~2 min), and submitted last they end the
    # sweep running alone (the queue is FIFO); elsewhere the order costs little
    order = sorted(range(len(todo)), key=lambda i: todo[i].role != "baseline")
    try:
        for index in order:
            cell = todo[index]
            attempt = book.start(cell, f"local-pool{jobs}", status="submitted",
                                 log=str(Path(cell.spec.runs_dir) / cell.run_id))
            running[pool.submit(cell.spec, runner, resume)] = (index, cell, attempt, time.perf_counter())
            emit({"kind": "cell_start", "run_id": cell.run_id, "index": index, "todo": len(todo)})
        for future in pool.as_completed(list(running), emit):
            index, cell, attempt, t0 = running[future]
            err, seconds = future.exception(), None
            if err is None:
                returned, seconds = pop_cell_seconds(future.result())
                err = _check_row(cell, cell.spec.results_dir, returned)
            else:
                write_text_atomic(outcome.folder / "errors" / f"{cell.run_id}.{attempt}.txt",
                            "".join(traceback.format_exception(err)))
            _finish(book, cell, attempt, t0, outcome, emit, index, err, cell_seconds=seconds)
    except KeyboardInterrupt:
        pool.shutdown(wait=False)
        for future, (_, cell, attempt, _) in running.items():
            if not future.done():
                book.finish(cell.run_id, attempt, "interrupted")
        raise
    finally:
        pool.shutdown(wait=True)


def _run_submitit(todo: list[Cell], book: JobBook, outcome: SweepOutcome, runner: Runner | None,
                  emit: Progress, resume: bool, jobs: int, options: dict[str, Any]) -> None:
    """One submitit job per cell; at most ``jobs`` in flight when running local processes.

    With ``tasks_per_node=N`` each job runs N tasks, the DDP ranks of its cell
    (:func:`~ifdd_bench.sweep.slurm.run_job_cell`); rank 0 (task 0) returns the result row.
    """
    sub_folder = outcome.folder / "submitit"
    ex, threads = make_executor(sub_folder, options, jobs)
    local = ex.cluster in ("local", "debug")
    window = jobs if local else max(jobs, len(todo))  # Slurm queues everything; local runs `jobs` at once
    queue = list(enumerate(todo))
    in_flight: dict[Any, tuple[int, Cell, int, float]] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < window:
                index, cell = queue.pop(0)
                job = ex.submit(run_job_cell, cell.spec, runner, threads, resume=resume)
                attempt = book.start(cell, f"submitit-{ex.cluster}", status="submitted", job_id=str(job.job_id),
                                     log=str(sub_folder))
                in_flight[job] = (index, cell, attempt, time.perf_counter())
                emit({"kind": "cell_start", "run_id": cell.run_id, "index": index, "todo": len(todo),
                      "job_id": str(job.job_id)})
            finished = [j for j in in_flight if j.done()]
            if not finished:
                time.sleep(0.5)
                continue
            for job in finished:
                index, cell, attempt, t0 = in_flight.pop(job)
                err: BaseException | str | None
                seconds = None
                try:
                    returned, seconds = pop_cell_seconds(job.results()[0])  # task 0 = rank 0
                    err = _check_row(cell, cell.spec.results_dir, returned)
                except Exception as exc:  # submitit wraps the job's exception (FailedJobError ...)
                    err = _submitit_error(exc)
                    write_text_atomic(outcome.folder / "errors" / f"{cell.run_id}.{attempt}.txt", str(exc))
                _finish(book, cell, attempt, t0, outcome, emit, index, err, job_id=str(job.job_id),
                        log_path=str(job.paths.stderr), cell_seconds=seconds)
    except KeyboardInterrupt:
        for job, (_, cell, attempt, _) in in_flight.items():
            if local:
                job.cancel(check=False)
            book.finish(cell.run_id, attempt, "interrupted" if local else "detached")
        raise


def _submitit_error(exc: BaseException) -> str:
    """The remote exception line of a submitit job failure, else the failure's first line.

    A ``FailedJobError`` carries the job's traceback between two dashed rules; its last line is
    the exception raised in the cell (``RuntimeError: ...``).
    """
    text = str(exc)
    blocks = [b for b in text.split("----------------------") if b.strip()]
    for block in blocks:
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if lines and lines[0].startswith("Traceback"):
            return lines[-1][:500]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first}"[:500]
