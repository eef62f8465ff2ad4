"""Which cells of a sweep are finished, and their results.

A cell is *finished* when ``<results_dir>/runs.csv`` holds a row with the cell's ``run_id`` and
the same ``train_hash`` (and, where the row records them, the same input frames and size), so
re-running an interrupted or partly failed sweep trains only the missing cells. A finished cell
is *probed* when ``<results_dir>/probes.csv`` holds a row of its run on its own test split for
every perturbation the sweep asks for (:func:`cells_to_probe` lists those still to probe), so a
finished sweep re-runs nothing and re-renders identically.
:func:`sweep_status` says where a sweep stands before it runs (what ``run ablation`` prints first).
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ifdd_bench.errors import DataError
from ifdd_bench.results import PROBES_CSV, RUNS_CSV, read_csv_rows
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


def probed_perturbations(cell: Cell, rows: Sequence[Mapping[str, str]]) -> set[str]:
    """The perturbations that ``rows`` (of probes.csv) hold for the cell's run on its own test split
    (same run id, train hash, dataset and fold)."""
    data = cell.spec.data
    return {r.get("perturbation") for r in rows
            if r.get("run_id") == cell.run_id and r.get("train_hash") == cell.train_hash
            and r.get("dataset") == data.dataset and str(r.get("fold")) == str(data.fold) and r.get("split") == "test"}


def probed(cell: Cell, probes: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bool:
    """Whether ``rows`` (of probes.csv) hold every perturbation in ``probes`` for the cell's run
    (:func:`probed_perturbations`)."""
    return set(probes) <= probed_perturbations(cell, rows)


def has_checkpoint(cell: Cell) -> bool:
    """Whether the cell's run folder holds the selected checkpoint (``best.pt``) that probes score."""
    from ifdd_bench.engine.checkpoint import BEST

    return (Path(cell.spec.runs_dir) / cell.run_id / BEST).is_file()


def cells_to_probe(cells: Sequence[Cell], results_dir: str | os.PathLike, probes: Sequence[str]) -> list[Cell]:
    """The ``cells`` (finished ones) whose probe rows are missing and whose run folder can be probed.

    A cell without a checkpoint (a run folder from elsewhere, e.g. the committed per-run records,
    which hold no weights) is not listed: there is nothing to score.
    """
    if not probes:
        return []
    rows = read_csv_rows(Path(results_dir) / PROBES_CSV)
    return [c for c in cells if not probed(c, probes, rows) and has_checkpoint(c)]


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
    todo: list[Cell]  # cells that will run: to train, then the finished ones only to probe
    finished: list[Cell]
    jobs: int
    train_hash: str
    legacy: list[Path]
    to_probe: list[Cell] = field(default_factory=list)  # finished cells in ``todo`` that only get probed


def sweep_status(plan: SweepPlan, *, executor: str = "local", jobs: int | None = None) -> SweepStatus:
    """The :class:`SweepStatus` of ``plan``; ``jobs=None`` -> :func:`~ifdd_bench.sweep.plan.default_jobs`.
    ``todo`` holds the cells to train and the finished ones still to probe (:func:`cells_to_probe`)."""
    from ifdd_bench.config import train_hash
    from ifdd_bench.engine.migrate import legacy_folders

    cells = plan.cells()
    todo, finished, to_probe = cells_to_run(cells, plan.results_dir, plan.probes)
    return SweepStatus(plan, cells, todo, finished,
                       jobs if jobs is not None else default_jobs(plan, executor), train_hash(plan.train),
                       legacy_folders(plan.runs_dir), to_probe)


def cells_to_run(cells: Sequence[Cell], results_dir: str,
                 probes: Sequence[str]) -> tuple[list[Cell], list[Cell], list[Cell]]:
    """``(todo, finished, to_probe)``: the cells to train plus the finished ones still to probe, in
    plan order; the finished cells; and those of them that only get probed."""
    to_train, finished = partition_finished(cells, results_dir)
    to_probe = cells_to_probe(finished, results_dir, probes)
    return in_plan_order(cells, to_train + to_probe), finished, to_probe


def in_plan_order(cells: Sequence[Cell], some: Sequence[Cell]) -> list[Cell]:
    """``some`` of ``cells`` in the order of ``cells``."""
    wanted = {c.run_id for c in some}
    return [c for c in cells if c.run_id in wanted]
