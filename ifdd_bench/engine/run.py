"""One run from a spec: the entry point of the CLI and the sweeps::

    row = train_run(RunSpec("ifdd_tiny", data=DataConfig(dataset="synth"), train=protocol_preset("unified")))

:func:`train_run` checks the spec, returns the stored row of a run that already finished with the
same settings, and otherwise builds the data (:func:`~ifdd_bench.engine.loaders.build_run_data`)
and trains through :func:`~ifdd_bench.engine.loop.fit`, which resumes from ``last.pt`` and commits
every epoch (:mod:`ifdd_bench.engine.runstate`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ifdd_bench.config import DATASETS, PRECISIONS, PROTOCOLS, RunSpec, parse_loggers
from ifdd_bench.data.labels import NUM_FOLDS
from ifdd_bench.engine import distributed as D
from ifdd_bench.engine import runfiles as F
from ifdd_bench.engine.checkpoint import check_resumable, run_identity
from ifdd_bench.engine.loaders import build_run_data
from ifdd_bench.engine.loggers import attach_loggers
from ifdd_bench.engine.loop import fit
from ifdd_bench.errors import BenchError, CheckpointError, ConfigError, unknown
from ifdd_bench.events import Progress
from ifdd_bench.registry import resolve_config

SELECTIONS = ("val_uar", "test_war")
OPTIMIZERS = ("adamw", "sgd")


def train_run(spec: RunSpec, *, progress: Progress | None = None, resume: bool = True) -> dict:
    """Train (or resume, or return the stored result of) one run and return its result row.

    Writes ``<spec.runs_dir>/<spec.run_id>/`` and appends one row to ``<results_dir>/runs.csv`` plus
    per-class rows to ``per_class.csv``. With ``resume`` a finished run returns its stored row
    without training and an interrupted one continues from ``last.pt``; without it the run starts
    from scratch (its old files are replaced as the new ones are written). ``progress`` receives
    event dicts (see :class:`~ifdd_bench.engine.events.Reporter`); so do the loggers of
    ``spec.loggers`` (:mod:`ifdd_bench.engine.loggers`). Works alone or under ``torchrun``.
    """
    validate_spec(spec)
    ctx = D.init_distributed(spec.train.device)
    try:
        with attach_loggers(spec, progress, enabled=ctx.is_main) as progress:  # rank 0 logs
            return _train(spec, ctx, progress, resume)
    finally:
        D.shutdown(ctx)


def _train(spec: RunSpec, ctx: D.DistContext, progress: Progress | None, resume: bool) -> dict:
    """:func:`train_run` once the process group is up: the stored row of a finished run, else fit."""
    run_dir = Path(spec.runs_dir) / spec.run_id
    stored, error = None, None
    if resume and ctx.is_main:
        try:
            stored = finished_run(spec, run_dir)
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError(f"rank 0 rejected the finished run in {run_dir}")
    stored = D.broadcast_object(stored)
    if stored is not None:
        if ctx.is_main and progress:  # what a finished run's done event carries, from its result.json
            progress({"kind": "done", "cached": True, "row": stored["row"], "run_dir": str(run_dir),
                      **{key: stored.get(key) for key in ("per_class", "confusion", "classes")}})
        return dict(stored["row"])
    bundle = build_run_data(spec, ctx, run_dir, progress)
    return fit(spec, bundle, ctx=ctx, progress=progress, resume=resume)


def validate_spec(spec: RunSpec) -> None:
    """Reject unknown dataset / protocol / selection / optimiser / precision / logger names early, with
    the valid choices, and loggers whose package is missing (model, variant and config keys are
    checked by the registry)."""
    cfg = spec.train
    if spec.data.dataset not in DATASETS:
        raise unknown("dataset", spec.data.dataset, DATASETS)
    if cfg.protocol not in PROTOCOLS:
        raise unknown("protocol", cfg.protocol, PROTOCOLS)
    if cfg.selection not in SELECTIONS:
        raise unknown("selection", cfg.selection, SELECTIONS)
    if cfg.optimizer not in OPTIMIZERS:
        raise unknown("optimizer", cfg.optimizer, OPTIMIZERS)
    if cfg.precision not in PRECISIONS:
        raise unknown("precision", cfg.precision, PRECISIONS)
    parse_loggers(spec.loggers)  # unknown logger, or its package missing
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError(f"epochs, batch_size and eval_batch_size must be >= 1 "
                          f"(got {cfg.epochs}, {cfg.batch_size}, {cfg.eval_batch_size})")
    if not isinstance(cfg.feature_cache_mb, int) or cfg.feature_cache_mb < 0:
        raise ConfigError(f"feature_cache_mb must be an integer >= 0 (megabytes; 0 turns the feature memo "
                          f"off), got {cfg.feature_cache_mb!r}")
    if cfg.log_every < 1:
        raise ConfigError(f"log_every must be >= 1 (steps between progress updates), got {cfg.log_every}")
    if cfg.mixup and cfg.batch_size % 2:
        raise ConfigError(f"mixup/cutmix needs an even batch_size, got {cfg.batch_size}")
    folds = NUM_FOLDS.get(spec.data.dataset, 1)
    if not 1 <= spec.data.fold <= folds:
        raise ConfigError(f"fold {spec.data.fold} is out of range for {spec.data.dataset}: valid folds are "
                          f"1..{folds}" if folds > 1 else f"{spec.data.dataset} has a single official split: fold 1")
    resolve_config(spec.model, spec.variant, overrides=dict(spec.model_overrides))  # unknown model/variant/key


def finished_run(spec: RunSpec, run_dir: Path) -> dict | None:
    """The stored result of a finished run in ``run_dir`` (``None`` if unfinished or absent).

    A finished run trained with other settings (model config, data config, protocol hash) raises
    :class:`CheckpointError` instead of being returned as if it answered this spec.
    """
    stored = F.finished_result(run_dir)
    if stored is None:
        return None
    try:
        config = json.loads((run_dir / F.CONFIG).read_text())
        model_cfg = resolve_config(spec.model, spec.variant, num_classes=len(config["classes"]),
                                   frames=spec.data.frames, img_size=spec.data.size,
                                   overrides=dict(spec.model_overrides))
    except (OSError, ValueError, KeyError):
        return None  # no readable config: finish again from last.pt, which carries the identity
    check_resumable(config, run_identity(spec, model_cfg), run_dir / F.CONFIG)
    return stored
