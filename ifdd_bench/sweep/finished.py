"""Which cells of a sweep are finished, and their results.

A cell is *finished* when ``<results_dir>/runs.csv`` holds a row with the cell's ``run_id`` and
the same ``train_hash`` (and, where the row records them, the same input frames and size), so
re-running an interrupted or partly failed sweep trains only the missing cells.
:func:`sweep_status` says where a sweep stands before it runs (what ``run ablation`` prints first).
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ifdd_bench.errors import DataError
from ifdd_bench.results import RUNS_CSV, read_csv_rows
from ifdd_bench.sweep.plan import Cell, SweepPlan, default_jobs


def _row_matches(row: Mapping[str, str], cell: Cell) -> bool:
    if row.get("run_id") != cell.run_id or row.get("train_hash") != cell.train_hash:
        return False
    for col, want in (("frames", cell.spec.data.frames), ("size", cell.spec.data.size)):
        have = row.get(col)
        if have not in (None, "") and str(have) != str(want):
            return False
    return True


def partition_finished(cells: Sequence[Cell], results_dir: str | os.PathLike) -> tuple[list[Cell], list[Cell]]:
    """Return ``(todo, finished)``: a cell is finished when runs.csv has its run_id + train_hash."""
    rows = read_csv_rows(Path(results_dir) / RUNS_CSV)
    by_id: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_id.setdefault(row.get("run_id", ""), []).append(row)
    todo, done = [], []
    for cell in cells:
        (done if any(_row_matches(r, cell) for r in by_id.get(cell.run_id, [])) else todo).append(cell)
    return todo, done


def result_rows(plan: SweepPlan) -> list[dict[str, str]]:
    """The runs.csv rows that belong to the plan's cells (latest row per cell)."""
    cells = plan.cells()
    rows = read_csv_rows(Path(plan.results_dir) / RUNS_CSV)
    out = {}
    for row in rows:
        for cell in cells:
            if _row_matches(row, cell):
                out[cell.run_id] = row
    return [out[c.run_id] for c in cells if c.run_id in out]


def _metric(rows: Sequence[Mapping[str, str]], column: str, results_dir: str) -> list[float]:
    """``column`` of each row as a number; a cell that is not one raises DataError naming the run."""
    values = []
    for row in rows:
        try:
            values.append(float(row[column]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{Path(results_dir) / RUNS_CSV}: the row of {row.get('run_id')} has {column}="
                            f"{row.get(column)!r}, not a number",
                            hint="fix or delete that row, or re-run the cell with --restart") from None
    return values


def summarize(plan: SweepPlan) -> list[dict[str, Any]]:
    """Mean and std (over folds x seeds) of test UAR/WAR per (model, variant), in plan order.

    Rows: ``{"model", "variant", "role", "n", "uar_mean", "uar_std", "war_mean", "war_std"}``
    with metrics as fractions; std is the sample std, ``nan`` for a single run (no spread is
    measured), as in the report's tables.
    """
    rows = result_rows(plan)
    order = [(plan.model, v, "variant") for v in plan.variants] + [(m, v, "baseline") for m, v in plan.baselines]
    out = []
    for model, variant, role in order:
        mine = [r for r in rows if r["model"] == model and r["variant"] == variant]
        if not mine:
            continue
        uar, war = _metric(mine, "uar", plan.results_dir), _metric(mine, "war", plan.results_dir)
        out.append({
            "model": model, "variant": variant, "role": role, "n": len(mine),
            "uar_mean": statistics.fmean(uar), "uar_std": statistics.stdev(uar) if len(uar) > 1 else math.nan,
            "war_mean": statistics.fmean(war), "war_std": statistics.stdev(war) if len(war) > 1 else math.nan,
        })
    return out


@dataclass(frozen=True)
class SweepStatus:
    """Where a sweep stands before it runs (what ``run ablation`` prints first): its cells, the
    finished ones and those to run, the cells run at once, its train hash and the run folders of
    the older run-id scheme in its runs folder (not reused; ``runs migrate`` renames them)."""

    plan: SweepPlan
    cells: list[Cell]
    todo: list[Cell]
    finished: list[Cell]
    jobs: int
    train_hash: str
    legacy: list[Path]


def sweep_status(plan: SweepPlan, *, executor: str = "local", jobs: int | None = None) -> SweepStatus:
    """The :class:`SweepStatus` of ``plan``; ``jobs=None`` -> :func:`~ifdd_bench.sweep.plan.default_jobs`."""
    from ifdd_bench.config import train_hash
    from ifdd_bench.engine.migrate import legacy_folders

    cells = plan.cells()
    todo, finished = partition_finished(cells, plan.results_dir)
    return SweepStatus(plan, cells, todo, finished, jobs if jobs is not None else default_jobs(plan, executor),
                       train_hash(plan.train), legacy_folders(plan.runs_dir))
