"""What a run keeps between epochs, and its round trips through the run folder.

:class:`RunState` is what survives an epoch. The functions below are the points where the loop
(:func:`ifdd_bench.engine.loop.fit`) meets the disk: resume from ``last.pt``, write the header
(``config.json``, ``environment.json``), commit an epoch (``best.pt``, ``last.pt``, ``history.csv``),
read the selected weights back and publish the result rows. Each follows one pattern under
``torchrun``: rank 0 reads or writes (through :mod:`ifdd_bench.engine.runfiles`), then every rank
learns whether that worked (``all_agree``) and receives what rank 0 read (``broadcast_object``),
so all ranks fail together with rank 0's error instead of hanging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from ifdd_bench.config import RUN_ID_SCHEME, RunSpec, to_dict
from ifdd_bench.engine import distributed as D
from ifdd_bench.engine import runfiles as F
from ifdd_bench.engine.checkpoint import BEST, FORMAT, LAST, check_resumable, load_checkpoint
from ifdd_bench.engine.environment import environment_record, git_sha
from ifdd_bench.engine.events import Reporter
from ifdd_bench.engine.loaders import clip_ids, clips_in
from ifdd_bench.engine.seeding import derive_seed, rng_restore, rng_snapshot
from ifdd_bench.errors import BenchError, CheckpointError
from ifdd_bench.results import RunRow


@dataclass
class RunState:
    """What survives between epochs and goes into ``last.pt``."""

    epoch: int = -1  # last finished epoch (0-based); -1 before the first
    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # {"epoch", "metric", "name"} of the selected epoch so far


def resume(run_dir: Path, identity: Mapping[str, Any], model: nn.Module, optimizer, scheduler, scaler,
           ctx: D.DistContext, report: Reporter) -> RunState:
    """Load ``last.pt`` (rank 0 reads, every rank receives it) into the live objects."""
    last = run_dir / LAST
    ckpt = None
    error: BenchError | None = None
    if ctx.is_main and last.exists():
        try:
            ckpt = load_checkpoint(last)
            check_resumable(ckpt, identity, last)
            note = F.recover_pending_best(run_dir, ckpt)
            if note:
                report.warning(note)
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError(f"rank 0 could not resume from {last}")
    ckpt = D.broadcast_object(ckpt) if ctx.distributed else ckpt
    if ckpt is None:
        return RunState()
    model.load_state_dict(ckpt["model_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    scheduler.load_state_dict(ckpt["scheduler_state"])
    if scaler is not None and ckpt.get("scaler_state"):
        scaler.load_state_dict(ckpt["scaler_state"])
    rng_restore(ckpt.get("rng", {}))
    state = RunState(epoch=int(ckpt["epoch"]), history=list(ckpt["history"]), best=ckpt.get("best"))
    report.emit(kind="resume", epoch=state.epoch, path=str(last))
    return state


def write_run_header(run_dir: Path, spec: RunSpec, identity: Mapping[str, Any], classes: Sequence[str],
                     model_cfg: Any, bundle: Any, ctx: D.DistContext, precision: str, notes: list[str],
                     state: RunState, *, fresh: bool, weights: Any = None) -> None:
    """``config.json`` and ``environment.json`` (rank 0); a fresh start drops the old run's markers.
    ``weights`` is the model's :class:`~ifdd_bench.models.weight_report.WeightReport` when it was
    initialised from a file (its ``as_dict()`` goes into environment.json)."""
    cfg = spec.train
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        for name in (F.DONE, F.RESULT, F.BEST_PENDING):
            (run_dir / name).unlink(missing_ok=True)
    F.write_json(run_dir / F.CONFIG, {"run_id": spec.run_id, "run_id_scheme": RUN_ID_SCHEME, **identity,
                                       "model_overrides": [[k, v] for k, v in spec.model_overrides],
                                       "classes": list(classes),
                                       "train_config": to_dict(cfg), "runs_dir": spec.runs_dir,
                                       "results_dir": spec.results_dir})
    seeds = {"seed": cfg.seed, "init": derive_seed(cfg.seed, "init"), "sampler": cfg.seed,
             "per_epoch": "derive_seed(seed, epoch, purpose[, rank]) for python/numpy/torch, sampler, "
                          "loader workers and mixup"}
    F.write_json(run_dir / F.ENVIRONMENT, environment_record(
        device=ctx.device, model_cfg=model_cfg, dataset_info=getattr(bundle, "info", {}), world_size=ctx.world_size,
        precision=precision, notes=notes, seeds=seeds,
        weights_loaded=weights.as_dict() if weights is not None else None))
    if state.history:
        F.write_history(run_dir, state.history)


def checkpoint_dict(kind: str, spec: RunSpec, identity: Mapping[str, Any], classes: Sequence[str],
                    model: nn.Module, state: RunState, **extra: Any) -> dict:
    """A ``last.pt`` / ``best.pt`` payload (format: :mod:`ifdd_bench.engine.checkpoint`)."""
    return {"format": FORMAT, "kind": kind, "run_id": spec.run_id, "run_id_scheme": RUN_ID_SCHEME, **identity,
            "train_config": to_dict(spec.train),
            "classes": list(classes),
            "epoch": state.epoch, "model_state": model.state_dict(), "best": state.best,
            "history": state.history, "torch_version": str(torch.__version__),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}


def commit(run_dir: Path, spec: RunSpec, identity, classes, model, optimizer, scheduler, scaler,
           state: RunState, improved: bool, ctx: D.DistContext) -> None:
    """Rank 0 writes ``best.pt`` (if improved), ``last.pt`` and ``history.csv``; every rank learns
    whether that worked."""
    error: BenchError | None = None
    if ctx.is_main:
        try:
            last = checkpoint_dict("last", spec, identity, classes, model, state,
                                   optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                                   scaler_state=scaler.state_dict() if scaler is not None else None,
                                   rng=rng_snapshot())
            best = checkpoint_dict("best", spec, identity, classes, model, state,
                                   metrics=state.history[-1]) if improved else None
            F.commit_epoch(run_dir, last, best)
            F.write_history(run_dir, state.history)
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError("rank 0 failed to write the checkpoint; see its error")


def last_good(run_dir: Path, state: RunState) -> str:
    """Where the last good checkpoint is, for an error message."""
    if state.epoch < 0:
        return "none yet: this was the first epoch"
    return f"{run_dir / LAST}, epoch {state.epoch}"


def selected_weights(run_dir: Path, state: RunState, ctx: D.DistContext) -> dict:
    """The model state of the selected epoch from ``best.pt`` (rank 0 reads, every rank receives it)."""
    best_state = None
    error: BenchError | None = None
    if ctx.is_main:
        try:
            best_ckpt = load_checkpoint(run_dir / BEST, map_location=ctx.device)
            if best_ckpt.get("epoch") != state.best["epoch"]:
                raise CheckpointError(f"{run_dir / BEST} holds epoch {best_ckpt.get('epoch')} but the run "
                                      f"selected epoch {state.best['epoch']}")
            best_state = best_ckpt["model_state"]
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError("rank 0 could not read best.pt")
    return D.broadcast_object(best_state) if ctx.distributed else best_state


def publish(spec: RunSpec, bundle: Any, classes: Sequence[str], identity: Mapping[str, Any], state: RunState,
            test: Mapping[str, Any], predictions: list[dict], params: int, precision: str, ctx: D.DistContext,
            run_dir: Path) -> dict:
    """The result row and per-class rows of the selected epoch's ``test`` metrics; rank 0 writes
    ``history.csv``, ``predictions.csv`` and the result (run folder and results CSVs)."""
    cfg = spec.train
    selected = state.best["epoch"]
    by_epoch = {row["epoch"]: row for row in state.history}
    sel_row, last_row = by_epoch[selected], state.history[-1]
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    row = RunRow(
        run_id=spec.run_id, model=spec.model, variant=spec.variant, dataset=spec.data.dataset,
        fold=spec.data.fold, seed=cfg.seed, protocol=cfg.protocol, train_hash=identity["train_hash"],
        selection=cfg.selection, epochs=cfg.epochs, selected_epoch=selected,
        uar=test["uar"], war=test["war"], val_uar=sel_row["val_uar"], val_war=sel_row["val_war"],
        last_uar=last_row["test_uar"], last_war=last_row["test_war"],
        best_test_uar=max(r["test_uar"] for r in state.history),
        best_test_war=max(r["test_war"] for r in state.history),
        params=params, frames=spec.data.frames, size=spec.data.size, num_classes=len(classes),
        views=spec.data.eval_views, train_clips=len(bundle.train), val_clips=clips_in(bundle.val),
        test_clips=len(bundle.test), train_seconds=round(sum(r["epoch_s"] for r in state.history), 3),
        device=str(ctx.device) + (f" x{ctx.world_size}" if ctx.distributed else ""),
        torch_version=str(torch.__version__), git_sha=git_sha(), finished_at=finished_at,
        precision=precision, world_size=ctx.world_size,
        overhead_share=_mean(r["overhead_share"] for r in state.history),
    ).__dict__
    per_class = [
        {"run_id": spec.run_id, "model": spec.model, "variant": spec.variant, "dataset": spec.data.dataset,
         "fold": spec.data.fold, "seed": cfg.seed, "protocol": cfg.protocol, "class_index": k, "class_name": name,
         "recall": test["recall"][k], "support": test["support"][k], "finished_at": finished_at}
        for k, name in enumerate(classes)]
    result = {"row": row, "per_class": per_class, "confusion": test["confusion"], "classes": list(classes)}
    error: BenchError | None = None
    if ctx.is_main:
        ids = clip_ids(bundle.test)
        for pred in predictions:
            pred["clip_id"] = ids[pred["index"]] if ids else pred["index"]
        try:
            F.write_history(run_dir, state.history)
            F.write_predictions(run_dir, predictions, classes)
            F.publish_result(run_dir, Path(spec.results_dir), result)
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError("rank 0 failed to write the results")
    return result


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan
