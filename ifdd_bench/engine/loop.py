"""The training loop: one protocol for every registered model.

:func:`fit` trains ``spec.model`` on a built dataset bundle (``ifdd_bench.engine.run.train_run``
builds it and is the entry point for the CLI and the sweeps). It is the whole loop, built from
small helpers:

* :func:`build_optimizer` / ``build_scheduler`` (schedule.py) / ``ClipMixer`` (mixing.py)
* :func:`train_one_epoch` - :func:`~ifdd_bench.engine.step.train_step` over the training loader
* :func:`evaluate` - confusion matrix over a (sharded) split, all-reduced across processes
* runstate.py - resume from ``last.pt``; ``last.pt`` / ``best.pt`` / ``history.csv`` at every
  epoch end; the selected weights and the published result at the end

Determinism and resume: every epoch reseeds Python, NumPy, torch, the sampler, the loader
workers and the mixer from ``(seed, epoch)``; the datasets get ``set_epoch(epoch)``; checkpoints are
written at epoch ends. Re-running the same command resumes from ``last.pt`` and, on the CPU, ends
with bit-identical weights and metrics.

Protocols (``TrainConfig.selection``):

* ``test_war`` (reference): evaluate the test fold after every epoch, keep the best-WAR epoch
  (ties replace the earlier one) - model selection on the test set, exactly as IFDD does.
* ``val_uar`` (unified): select on validation UAR (ties keep the earlier epoch); the test split is
  also evaluated every epoch, but only to fill the labelled ``last_*`` / ``best_test_*`` columns;
  it never influences the selection. The headline ``uar`` / ``war`` are re-measured on the test
  split once, with the weights of the selected epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ifdd_bench.config import RunSpec, TrainConfig
from ifdd_bench.engine import distributed as D
from ifdd_bench.engine.accel import CompileFallback, cudnn_benchmark, grad_scaler, loader_workers, resolve_precision
from ifdd_bench.engine import runstate as S
from ifdd_bench.engine.checkpoint import run_identity
from ifdd_bench.engine.events import Reporter
from ifdd_bench.engine.loaders import Loaders, check_bundle, clips_in
from ifdd_bench.engine.metrics import ConfusionMatrix
from ifdd_bench.engine.mixing import ClipMixer, soft_target_cross_entropy
from ifdd_bench.engine.schedule import build_scheduler
from ifdd_bench.engine.seeding import derive_seed, seed_everything
from ifdd_bench.engine.step import autocast_for, train_step
from ifdd_bench.errors import TrainingError
from ifdd_bench.events import Progress
from ifdd_bench.models.output import unpack_output
from ifdd_bench.registry import build_from_config, resolve_config

log = logging.getLogger(__name__)


def fit(spec: RunSpec, bundle: Any, *, ctx: D.DistContext | None = None, progress: Progress | None = None,
        resume: bool = True) -> dict:
    """Train ``spec.model`` on an already built dataset bundle and return the result row.

    ``bundle`` has ``train``, ``val`` (or ``None``), ``test``, ``classes`` and ``info`` (see
    ``ifdd_bench.data.build_datasets``). Datasets return ``(clip, label)``; ``clip`` is
    ``(C, T, H, W)`` or ``(V, C, T, H, W)`` for multi-view evaluation.
    """
    ctx = ctx or D.init_distributed(spec.train.device)
    cfg, device = spec.train, ctx.device
    report = Reporter(progress if ctx.is_main else None)
    run_dir = Path(spec.runs_dir) / spec.run_id
    classes = tuple(bundle.classes)
    check_bundle(spec, bundle)

    model_cfg = resolve_config(spec.model, spec.variant, num_classes=len(classes), frames=spec.data.frames,
                               img_size=spec.data.size, overrides=dict(spec.model_overrides))
    identity = run_identity(spec, model_cfg)
    precision, notes = resolve_precision(cfg.precision, device)
    notes = ctx.notes + notes
    for note in notes:
        report.warning(note)

    # cudnn autotuning on CUDA: the training clips have one fixed shape (docs/gpu.md)
    with _determinism(cfg.deterministic and device.type == "cpu"), cudnn_benchmark(device.type == "cuda"):
        seed_everything(derive_seed(cfg.seed, "init"))
        model = build_from_config(spec.model, model_cfg).to(device)
        use_feature_memo(model, cfg.feature_cache_mb)
        if cfg.channels_last and device.type == "cuda":
            channels_last_3d(model)
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        scaler = grad_scaler(precision, device)
        state = S.RunState()

        if resume:
            state = S.resume(run_dir, identity, model, optimizer, scheduler, scaler, ctx, report)
        if ctx.is_main:
            S.write_run_header(run_dir, spec, identity, classes, model_cfg, bundle, ctx, precision, notes,
                               state, fresh=not resume, weights=getattr(model, "pretrained_report", None))

        train_model: nn.Module = model
        if ctx.distributed:
            train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        eval_model: nn.Module = model
        if cfg.compile:
            train_model = CompileFallback(train_model, report.warning, what="the training model")
            eval_model = CompileFallback(model, report.warning, what="the evaluation model")

        loaders = Loaders(bundle, cfg, loader_workers(spec.data.workers, device), ctx)
        mixer = ClipMixer(cfg, len(classes)) if cfg.mixup else None
        loss_fn = soft_target_cross_entropy if mixer else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        autocast = autocast_for(precision, device)
        params = sum(p.numel() for p in model.parameters())

        report.emit(kind="start", run_id=spec.run_id, run_dir=str(run_dir), epochs=cfg.epochs,
                    start_epoch=state.epoch + 1, device=str(device), world_size=ctx.world_size,
                    precision=precision, params=params, classes=list(classes),
                    train_clips=len(bundle.train), val_clips=clips_in(bundle.val), test_clips=len(bundle.test))

        for epoch in range(state.epoch + 1, cfg.epochs):
            t_epoch = time.perf_counter()
            scheduler.step(epoch)
            lr = optimizer.param_groups[0]["lr"]
            loaders.set_epoch(epoch)
            seed_everything(derive_seed(cfg.seed, epoch, "train", ctx.rank))
            if mixer:
                mixer.reseed(derive_seed(cfg.seed, epoch, "mix"))
            report.emit(kind="epoch_start", epoch=epoch, epochs=cfg.epochs, steps=len(loaders.train), lr=lr)
            stats = train_one_epoch(train_model, loaders.train, optimizer, loss_fn, mixer=mixer, scaler=scaler,
                                    autocast=autocast, ctx=ctx, epoch=epoch, lr=lr, grad_clip=cfg.grad_clip,
                                    channels_last=cfg.channels_last, report=report, log_every=cfg.log_every,
                                    last_good=S.last_good(run_dir, state))
            t_eval = time.perf_counter()
            val = evaluate(eval_model, loaders.val, len(classes), device=device, autocast=autocast,
                           channels_last=cfg.channels_last)[0] if loaders.val is not None else None
            test = evaluate(eval_model, loaders.test, len(classes), device=device, autocast=autocast,
                            channels_last=cfg.channels_last)[0]
            row = history_row(epoch, lr, stats, val, test, eval_s=time.perf_counter() - t_eval,
                              epoch_s=time.perf_counter() - t_epoch)
            improved = update_selection(state, row, cfg.selection)
            row["selected"] = int(improved)
            state.history.append(row)
            state.epoch = epoch
            S.commit(run_dir, spec, identity, classes, model, optimizer, scheduler, scaler, state, improved, ctx)
            report.emit(kind="epoch_end", **row, best_epoch=state.best["epoch"], best_metric=state.best["metric"],
                        selection=cfg.selection)
            log.info("epoch %d/%d loss %.4f val %s test uar %.4f war %.4f", epoch + 1, cfg.epochs,
                     row["train_loss"], _fmt(val), test["uar"], test["war"])

        # the selected epoch's weights, evaluated once on its eval clips (random-window evaluation
        # draws per epoch), then published
        model.load_state_dict(S.selected_weights(run_dir, state, ctx))
        loaders.set_epoch(state.best["epoch"])
        test, predictions = evaluate(eval_model, loaders.test, len(classes), device=device, autocast=autocast,
                                     channels_last=cfg.channels_last, collect=True)
        result = S.publish(spec, bundle, classes, identity, state, test, predictions, params, precision, ctx,
                           run_dir)
    memo = getattr(model, "memo", None)
    memo_stats = ({"feature_memo": {"hits": memo.hits, "misses": memo.misses, "mb": memo.bytes / 2 ** 20}}
                  if memo else {})
    report.emit(kind="done", cached=False, row=result["row"], run_dir=str(run_dir), history=state.history,
                per_class=result["per_class"], confusion=result["confusion"], classes=list(classes), notes=notes,
                **memo_stats)
    return dict(result["row"])


def use_feature_memo(model: nn.Module, budget_mb: int) -> None:
    """Turn on the per-clip feature memo of a model with a frozen backbone.

    Models without a frozen backbone (every baseline, IFDD with ``freeze_backbone=false``) train as
    they are: the memo is a speed option, never a reason to refuse a run.
    """
    if budget_mb > 0 and getattr(getattr(model, "cfg", None), "freeze_backbone", False):
        model.enable_feature_memo(budget_mb)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """One parameter group with every trainable parameter (the reference applies weight decay to
    norms, biases and tokens too); AdamW betas (0.9, 0.999), eps 1e-8, or SGD with momentum."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                    *, mixer: ClipMixer | None, scaler: torch.amp.GradScaler | None, autocast: Callable,
                    ctx: D.DistContext, epoch: int, lr: float, grad_clip: float, channels_last: bool,
                    report: Reporter, log_every: int, last_good: str) -> dict:
    """One pass over the training loader; returns loss sums and the step-time breakdown.

    Time is split into ``data_wait`` (waiting for the next batch), ``compute`` (transfer, mixing,
    forward, backward, step) and ``bookkeeping`` (loss accumulation, progress events). A
    non-finite loss on any rank stops every rank with :class:`TrainingError` before the optimiser
    step, so the last written checkpoint stays the last good one.
    """
    model.train()
    device = ctx.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    cls_sum = torch.zeros((), dtype=torch.float64, device=device)
    clips = 0
    data_wait = compute = bookkeeping = 0.0
    steps = len(loader)
    t_start = t_prev = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        t_data = time.perf_counter()
        data_wait += t_data - t_prev

        x = x.to(device, non_blocking=True)  # (B, C, T, H, W)
        y = y.to(device, non_blocking=True)  # (B,)
        if channels_last and device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last_3d)

        def check(loss_value: torch.Tensor) -> None:
            finite = bool(torch.isfinite(loss_value))
            if not D.all_agree(finite, device):
                where = f"epoch {epoch} (0-based), step {step} of {steps}"
                what = f"loss {loss_value.item()}" if not finite else "a non-finite loss on another rank"
                raise TrainingError(f"training diverged: {what} at {where}; nothing of this epoch was saved, "
                                    f"the last good checkpoint is kept ({last_good})",
                                    hint="lower lr, enable grad_clip=1.0, or check the data for corrupt clips")

        out = train_step(model, x, y, optimizer, loss_fn, mixer=mixer, autocast=autocast, scaler=scaler,
                         grad_clip=grad_clip, check=check)
        t_compute = time.perf_counter()
        compute += t_compute - t_data

        batch = y.shape[0]
        clips += batch
        loss_sum += out.loss.double() * batch
        cls_sum += out.cls_loss.double() * batch
        if report.active and (step % log_every == 0 or step == steps - 1):
            elapsed = time.perf_counter() - t_start
            report.emit(kind="step", epoch=epoch, step=step, steps=steps, loss=float(out.loss), lr=lr,
                        clips_per_s=clips * ctx.world_size / max(elapsed, 1e-9))
        t_prev = time.perf_counter()
        bookkeeping += t_prev - t_compute

    total_loss, total_cls, total_clips = D.reduce_floats([loss_sum.item(), cls_sum.item(), float(clips)], device)
    wall = time.perf_counter() - t_start
    return {"loss": total_loss / max(total_clips, 1), "cls_loss": total_cls / max(total_clips, 1),
            "clips": int(total_clips), "steps": steps, "wall": wall,
            "data_wait": data_wait, "compute": compute, "bookkeeping": bookkeeping}


def channels_last_3d(model: nn.Module) -> None:
    """Lay out the model's 5-D (Conv3d) weights channels-last in place. ``model.to(memory_format=
    channels_last_3d)`` fails on any model that also has a 4-D weight, as IFDD's Conv2d layers are."""
    for param in model.parameters():
        if param.dim() == 5:
            param.data = param.data.contiguous(memory_format=torch.channels_last_3d)


def clip_logits(model: nn.Module, x: torch.Tensor, *, autocast: Callable = contextlib.nullcontext,
                channels_last: bool = False) -> torch.Tensor:
    """Float logits ``(B, K)`` of clips ``(B, C, T, H, W)``, or of multi-view clips
    ``(B, V, C, T, H, W)`` with the V views' logits averaged (how every evaluation scores a clip)."""
    batch = x.shape[0]
    views = x.shape[1] if x.dim() == 6 else 1
    if x.dim() == 6:
        x = x.flatten(0, 1)  # (B*V, C, T, H, W)
    if channels_last and x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with autocast():
        logits, _, _ = unpack_output(model(x))  # (B*V, K)
    return logits.float().view(batch, views, -1).mean(dim=1)  # (B, K)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int, *, device: torch.device,
             autocast: Callable = contextlib.nullcontext, channels_last: bool = False,
             collect: bool = False) -> tuple[dict, list[dict]]:
    """Metrics of ``model`` on a (possibly sharded) eval loader, all-reduced over processes.

    Multi-view clips ``(B, V, C, T, H, W)`` are scored by averaging the V views' logits. With
    ``collect`` the per-clip predictions of every rank are gathered (index, label, pred, probs),
    sorted by dataset index.
    """
    model.eval()
    matrix = ConfusionMatrix(num_classes, device=device)
    predictions: list[dict] = []
    indices = list(loader.sampler) if collect else []
    seen = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        logits = clip_logits(model, x, autocast=autocast, channels_last=channels_last)  # (B, K)
        preds = logits.argmax(dim=-1)
        matrix.update(preds, y)
        if collect:
            probs = torch.softmax(logits, dim=-1).cpu()
            for j in range(y.shape[0]):
                predictions.append({"index": int(indices[seen + j]), "label": int(y[j]), "pred": int(preds[j]),
                                    "probs": probs[j].tolist()})
        seen += y.shape[0]
    matrix.all_reduce()
    if collect:
        predictions = sorted((p for part in D.gather_objects(predictions) for p in part), key=lambda p: p["index"])
    return matrix.compute(), predictions


def update_selection(state: S.RunState, row: Mapping[str, Any], selection: str) -> bool:
    """Update ``state.best`` with this epoch's row; True when the epoch becomes the selected one.

    ``test_war``: ties replace the earlier epoch (reference behaviour). ``val_uar``: the earliest
    of equally good epochs is kept. A nan metric never replaces a number.
    """
    metric = row["test_war"] if selection == "test_war" else row["val_uar"]
    best = state.best
    if best is None or math.isnan(best["metric"]):
        better = True
    elif math.isnan(metric):
        better = False
    else:
        better = metric >= best["metric"] if selection == "test_war" else metric > best["metric"]
    if better:
        state.best = {"epoch": row["epoch"], "metric": float(metric), "name": selection}
    return better


def history_row(epoch: int, lr: float, stats: Mapping[str, Any], val: Mapping[str, Any] | None,
                test: Mapping[str, Any], *, eval_s: float, epoch_s: float) -> dict:
    """One ``history.csv`` row: losses, lr, val/test metrics and the step-time breakdown."""
    steps = max(stats["steps"], 1)
    overhead = stats["data_wait"] + stats["bookkeeping"]
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": stats["loss"],
        "train_cls_loss": stats["cls_loss"],
        "train_aux_loss": stats["loss"] - stats["cls_loss"],
        "val_uar": val["uar"] if val else math.nan,
        "val_war": val["war"] if val else math.nan,
        "test_uar": test["uar"],
        "test_war": test["war"],
        "train_clips": stats["clips"],
        "clips_per_s": stats["clips"] / max(stats["wall"], 1e-9),
        "step_s": stats["wall"] / steps,
        "data_wait_s": stats["data_wait"] / steps,
        "compute_s": stats["compute"] / steps,
        "bookkeeping_s": stats["bookkeeping"] / steps,
        "overhead_share": overhead / max(stats["wall"], 1e-9),
        "train_s": stats["wall"],
        "eval_s": eval_s,
        "epoch_s": epoch_s,
        # the thread count at the epoch's end (a sweep's pool fixes it per cell: sweep.pool.CellPool)
        "torch_threads": torch.get_num_threads(),
    }


# ============================================================================================
# determinism


@contextlib.contextmanager
def _determinism(enabled: bool):
    """``torch.use_deterministic_algorithms`` for the duration of a run, restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_before)


def _fmt(metrics: Mapping[str, Any] | None) -> str:
    return "-" if metrics is None else f"uar {metrics['uar']:.4f} war {metrics['war']:.4f}"
