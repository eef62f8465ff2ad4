"""The cell runner every executor calls: train the cell if ``runs.csv`` lacks it, then probe it.

:func:`~ifdd_bench.sweep.executors.run_sweep` wraps its runner in a :class:`CellRunner`, so the
inline loop, the local pool and submitit jobs all train and probe a cell the same way, in the
process (and on the device) that trained it. Probing (:func:`probe_cell`) scores the run's
``best.pt`` on its own test split clean and under each of the sweep's perturbations
(:func:`ifdd_bench.engine.evaluate.evaluate_run` with ``perturb``), appending to ``probes.csv``
only the perturbations that file still lacks for the run (and no ``evals.csv`` row: ``runs.csv``
has the clean numbers); a run folder without a checkpoint is left alone (nothing to score).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ifdd_bench.config import RunSpec
from ifdd_bench.events import Progress
from ifdd_bench.results import PROBES_CSV, read_csv_rows
from ifdd_bench.sweep.finished import has_checkpoint, partition_finished, probed_perturbations
from ifdd_bench.sweep.plan import Cell
from ifdd_bench.sweep.pool import Runner, default_runner

#: what :func:`probe_cell` did
PROBED, PRESENT, NO_CHECKPOINT = "probed", "present", "no checkpoint"


def probe_cell(cell: Cell, probes: Sequence[str], progress: Progress | None = None) -> str:
    """Probe a trained cell with the ``probes`` its ``probes.csv`` rows still lack.

    Returns :data:`PROBED`, :data:`PRESENT` (every row already there: nothing run) or
    :data:`NO_CHECKPOINT` (the run folder holds no ``best.pt``: nothing to score).
    """
    spec = cell.spec
    rows = read_csv_rows(Path(spec.results_dir) / PROBES_CSV)
    have = probed_perturbations(cell, rows)
    missing = [p for p in probes if p not in have]
    if not missing:
        return PRESENT
    if not has_checkpoint(cell):
        return NO_CHECKPOINT
    from ifdd_bench.engine.evaluate import evaluate_run  # torch: only where a cell is probed

    evaluate_run(Path(spec.runs_dir) / cell.run_id, perturb=missing, device=spec.train.device,
                 results_dir=spec.results_dir, record_eval=False, progress=progress)
    return PROBED


@dataclass(frozen=True)
class CellRunner:
    """Picklable ``runner(spec, progress=, resume=)``: ``runner`` trains the cell unless ``runs.csv``
    has its row (default: the engine's ``train_run``), then the cell is probed with ``probes``."""

    runner: Runner | None = None
    probes: tuple[str, ...] = ()

    def __call__(self, spec: RunSpec, progress: Progress | None = None, resume: bool = True) -> dict[str, Any]:
        cell = Cell(spec)
        out: dict[str, Any] = {}
        todo, _ = partition_finished([cell], spec.results_dir)
        if todo:
            out = dict((self.runner or default_runner())(spec, progress=progress, resume=resume) or {})
        if self.probes and int(os.environ.get("RANK", "0")) == 0:  # a multi-GPU job probes once, on rank 0
            probe_cell(cell, self.probes, progress)
        return out
