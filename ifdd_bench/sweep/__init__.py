"""Ablation sweeps: expand a grid of runs, skip the finished cells, run the rest.

A sweep is the product ``variants x folds x seeds`` of one model (plus optional baseline models
trained under the same protocol); each element is a *cell*, one run spec. The modules, one
concept each:

* :mod:`~ifdd_bench.sweep.plan`: the defaults of ``ifdd-bench run ablation``, axis parsing,
  :class:`Cell`, :class:`SweepPlan`, :func:`plan_sweep` (no training, no torch);
* :mod:`~ifdd_bench.sweep.finished`: which cells ``runs.csv`` already holds, their rows, the summary,
  :func:`sweep_status` (where a sweep stands before it runs);
* :mod:`~ifdd_bench.sweep.jobbook`: ``runs/sweeps/<sweep_id>/jobs.csv``, one row per attempt;
* :mod:`~ifdd_bench.sweep.executors`: :func:`run_sweep` with the inline, pool and submitit executors;
* :mod:`~ifdd_bench.sweep.pool`: cells in worker processes (:func:`run_cell`, a fixed thread
  count per cell, progress relay);
* :mod:`~ifdd_bench.sweep.slurm`: the optional submitit extra, the cluster options
  (:func:`submitit_options`) and multi-GPU jobs (one DDP rank per GPU).
* :mod:`~ifdd_bench.sweep.probing`: :class:`CellRunner`, what every executor runs per cell: train
  it unless finished, then probe it (:func:`probe_cell`, the temporal-reliance probes).

Example::

    >>> plan = plan_sweep(variants="full,no_issm", folds="1", seeds="0", epochs=1)
    >>> [c.run_id for c in plan.cells()][:1]
    ['ifdd_tiny_frozen-full-synth-f1-s0-unified-c9d570d2']
    >>> outcome = run_sweep(plan)            # trains what runs.csv lacks
    >>> summarize(plan)                      # mean +- std UAR/WAR per variant
"""

from ifdd_bench.sweep.executors import EXECUTORS, CellFailure, SweepOutcome, check_init_weights, run_sweep
from ifdd_bench.sweep.finished import (SweepStatus, cells_to_probe, partition_finished, probed, result_rows, summarize,
                                       sweep_status)
from ifdd_bench.sweep.jobbook import JOB_COLUMNS, JobBook
from ifdd_bench.sweep.plan import (
    DEFAULT_DATASET,
    DEFAULT_FOLDS,
    DEFAULT_MODEL,
    DEFAULT_PROTOCOL,
    DEFAULT_REAL_MODEL,
    DEFAULT_SEEDS,
    DEFAULT_SYNTH_BASELINES,
    DEFAULT_SYNTH_JOBS,
    DEFAULT_VARIANTS,
    Cell,
    SweepPlan,
    default_jobs,
    has_apex,
    parse_folds,
    parse_int_set,
    parse_seeds,
    plan_sweep,
    resolve_baselines,
    resolve_probes,
    resolve_variants,
)
from ifdd_bench.sweep.pool import Runner, default_runner, run_cell
from ifdd_bench.sweep.probing import CellRunner, probe_cell
from ifdd_bench.sweep.slurm import SLURM_EXTRA, require_submitit, submitit_options

__all__ = [
    "DEFAULT_DATASET", "DEFAULT_FOLDS", "DEFAULT_MODEL", "DEFAULT_PROTOCOL", "DEFAULT_REAL_MODEL", "DEFAULT_SEEDS",
    "DEFAULT_SYNTH_BASELINES", "DEFAULT_SYNTH_JOBS", "DEFAULT_VARIANTS", "EXECUTORS", "JOB_COLUMNS", "SLURM_EXTRA",
    "Cell", "CellFailure", "CellRunner", "JobBook", "Runner", "SweepOutcome", "SweepPlan", "SweepStatus",
    "cells_to_probe", "check_init_weights", "default_jobs", "default_runner", "has_apex", "parse_folds",
    "parse_int_set", "parse_seeds", "partition_finished", "plan_sweep", "probe_cell", "probed", "require_submitit",
    "resolve_baselines", "resolve_probes", "resolve_variants", "result_rows", "run_cell", "run_sweep",
    "submitit_options", "summarize", "sweep_status",
]
