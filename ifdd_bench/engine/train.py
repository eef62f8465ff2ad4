"""Training and evaluation engine: one protocol for every registered model.

Entry point for the CLI and the sweeps::

    row = train_run(RunSpec("ifdd_tiny", data=DataConfig(dataset="synth"), train=protocol_preset("unified")))

:func:`train_run` builds the data (``ifdd_bench.data.build_datasets``) and calls :func:`fit`, which
is the whole loop, built from small helpers:

* ``build_optimizer`` / ``build_scheduler`` (schedule.py) / ``ClipMixer`` (mixing.py)
* :func:`train_one_epoch` - forward, loss (+ the model's auxiliary losses), backward, step
* :func:`evaluate` - confusion matrix over a (sharded) split, all-reduced across processes
* ``commit_epoch`` (runfiles.py) - ``last.pt`` / ``best.pt`` / ``history.csv`` atomically

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
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ifdd_bench.config import (DATA_RUNTIME_FIELDS, DATASETS, PROTOCOLS, RUN_ID_SCHEME, RunSpec, TrainConfig, to_dict,
                               train_hash)
from ifdd_bench.data.labels import NUM_FOLDS
from ifdd_bench.engine import distributed as D
from ifdd_bench.engine import runfiles as F
from ifdd_bench.engine.checkpoint import FORMAT, check_resumable, load_checkpoint
from ifdd_bench.engine.environment import environment_record, git_sha
from ifdd_bench.engine.metrics import ConfusionMatrix
from ifdd_bench.engine.mixing import ClipMixer, soft_target_cross_entropy
from ifdd_bench.engine.schedule import build_scheduler
from ifdd_bench.engine.seeding import derive_seed, loader_generator, rng_restore, rng_snapshot, seed_everything, worker_init_fn
from ifdd_bench.errors import BenchError, CheckpointError, ConfigError, TrainingError, unknown
from ifdd_bench.models.output import split_output
from ifdd_bench.registry import build_from_config, resolve_config
from ifdd_bench.results import RunRow

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]

SELECTIONS = ("val_uar", "test_war")
OPTIMIZERS = ("adamw", "sgd")
AMP_MODES = ("none", "bf16", "fp16")


# ============================================================================================
# public entry points


def train_run(spec: RunSpec, *, progress: Progress | None = None, resume: bool = True) -> dict:
    """Train (or resume, or return the stored result of) one run and return its result row.

    Writes ``<spec.runs_dir>/<spec.run_id>/`` and appends one row to ``<results_dir>/runs.csv`` plus
    per-class rows to ``per_class.csv``. With ``resume`` a finished run returns its stored row
    without training and an interrupted one continues from ``last.pt``; without it the run starts
    from scratch (its old files are replaced as the new ones are written). ``progress`` receives
    event dicts (see :class:`Reporter`). Works alone or under ``torchrun``.
    """
    validate_spec(spec)
    ctx = D.init_distributed(spec.train.device)
    try:
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
            if ctx.is_main and progress:
                progress({"kind": "done", "cached": True, "row": stored["row"], "run_dir": str(run_dir)})
            return dict(stored["row"])
        bundle = _build_data(spec, ctx, run_dir, progress)
        return fit(spec, bundle, ctx=ctx, progress=progress, resume=resume)
    finally:
        D.shutdown(ctx)


def validate_spec(spec: RunSpec) -> None:
    """Reject unknown dataset / protocol / selection / optimiser / precision names early, with the
    valid choices (model, variant and config keys are checked by the registry)."""
    cfg = spec.train
    if spec.data.dataset not in DATASETS:
        raise unknown("dataset", spec.data.dataset, DATASETS)
    if cfg.protocol not in PROTOCOLS:
        raise unknown("protocol", cfg.protocol, PROTOCOLS)
    if cfg.selection not in SELECTIONS:
        raise unknown("selection", cfg.selection, SELECTIONS)
    if cfg.optimizer not in OPTIMIZERS:
        raise unknown("optimizer", cfg.optimizer, OPTIMIZERS)
    if cfg.amp not in AMP_MODES:
        raise unknown("amp mode", cfg.amp, AMP_MODES)
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError(f"epochs, batch_size and eval_batch_size must be >= 1 "
                          f"(got {cfg.epochs}, {cfg.batch_size}, {cfg.eval_batch_size})")
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


def _build_data(spec: RunSpec, ctx: D.DistContext, run_dir: Path, progress: Progress | None):
    from ifdd_bench.data import build_datasets

    def build():
        return build_datasets(spec.data, seed=spec.train.seed, protocol=spec.train.protocol, run_dir=run_dir,
                              progress=progress if ctx.is_main else None)

    # rank 0 builds first (it may generate SynthDFER and writes the validation split into the run
    # folder); the others follow and read the same split file
    bundle = build() if ctx.is_main else None
    D.barrier()
    return bundle if ctx.is_main else build()


# ============================================================================================
# the loop


@dataclass
class RunState:
    """What survives between epochs and goes into ``last.pt``."""

    epoch: int = -1  # last finished epoch (0-based); -1 before the first
    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # {"epoch", "metric", "name"} of the selected epoch so far


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
    _check_bundle(spec, bundle, ctx)

    model_cfg = resolve_config(spec.model, spec.variant, num_classes=len(classes), frames=spec.data.frames,
                               img_size=spec.data.size, overrides=dict(spec.model_overrides))
    identity = run_identity(spec, model_cfg)
    precision, notes = _precision(cfg, device)
    notes = ctx.notes + notes
    for note in notes:
        report.warning(note)

    with _determinism(cfg.deterministic and device.type == "cpu"):
        seed_everything(derive_seed(cfg.seed, "init"))
        model = build_from_config(spec.model, model_cfg).to(device)
        if cfg.channels_last and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last_3d)
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        state = RunState()

        if resume:
            state = _resume(run_dir, identity, model, optimizer, scheduler, scaler, ctx, report)
        if ctx.is_main:
            _write_run_header(run_dir, spec, identity, classes, model_cfg, bundle, ctx, precision, notes,
                              state, fresh=not resume)

        train_model: nn.Module = model
        if ctx.distributed:
            train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        eval_model: nn.Module = model
        if cfg.compile:
            train_model, eval_model = torch.compile(train_model), torch.compile(model)

        loaders = Loaders(bundle, cfg, spec.data.workers, ctx)
        mixer = ClipMixer(cfg, len(classes)) if cfg.mixup else None
        loss_fn = soft_target_cross_entropy if mixer else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        autocast = _autocast(precision, device)
        params = sum(p.numel() for p in model.parameters())

        report.emit(kind="start", run_id=spec.run_id, run_dir=str(run_dir), epochs=cfg.epochs,
                    start_epoch=state.epoch + 1, device=str(device), world_size=ctx.world_size,
                    precision=precision, params=params, classes=list(classes),
                    train_clips=len(bundle.train), val_clips=_len(bundle.val), test_clips=len(bundle.test))

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
                                    last_good=_last_good(run_dir, state))
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
            _commit(run_dir, spec, identity, classes, model, optimizer, scheduler, scaler, state, improved, ctx)
            report.emit(kind="epoch_end", **row, best_epoch=state.best["epoch"], best_metric=state.best["metric"],
                        selection=cfg.selection)
            log.info("epoch %d/%d loss %.4f val %s test uar %.4f war %.4f", epoch + 1, cfg.epochs,
                     row["train_loss"], _fmt(val), test["uar"], test["war"])

        result = _finish(spec, bundle, classes, identity, model, eval_model, loaders, state, params, precision,
                         autocast, ctx, run_dir)
    report.emit(kind="done", cached=False, row=result["row"], run_dir=str(run_dir), history=state.history,
                per_class=result["per_class"], confusion=result["confusion"], classes=list(classes), notes=notes)
    return dict(result["row"])


def run_identity(spec: RunSpec, model_cfg: Any) -> dict:
    """The keys a checkpoint must share with the run that resumes from it (see checkpoint.py)."""
    data = {k: v for k, v in to_dict(spec.data).items() if k not in DATA_RUNTIME_FIELDS}
    return {"model": spec.model, "variant": spec.variant, "protocol": spec.train.protocol,
            "train_hash": train_hash(spec.train), "model_config": to_dict(model_cfg), "data_config": data}


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
                    report: "Reporter", log_every: int, last_good: str) -> dict:
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
        target = y
        if mixer is not None:
            x, target = mixer(x, y)  # target (B, K) soft
        with autocast():
            logits, aux_losses, _ = split_output(model(x))  # (B, K)
            cls_loss = loss_fn(logits.float(), target)
            loss = cls_loss + sum(aux_losses.values()) if aux_losses else cls_loss
        loss_value = loss.detach()
        finite = bool(torch.isfinite(loss_value))
        if not D.all_agree(finite, device):
            where = f"epoch {epoch} (0-based), step {step} of {steps}"
            what = f"loss {loss_value.item()}" if not finite else "a non-finite loss on another rank"
            raise TrainingError(f"training diverged: {what} at {where}; nothing of this epoch was saved, "
                                f"the last good checkpoint is kept ({last_good})",
                                hint="lower lr, enable grad_clip=1.0, or check the data for corrupt clips")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        t_compute = time.perf_counter()
        compute += t_compute - t_data

        batch = y.shape[0]
        clips += batch
        loss_sum += loss_value.double() * batch
        cls_sum += cls_loss.detach().double() * batch
        if report.active and (step % log_every == 0 or step == steps - 1):
            elapsed = time.perf_counter() - t_start
            report.emit(kind="step", epoch=epoch, step=step, steps=steps, loss=float(loss_value), lr=lr,
                        clips_per_s=clips * ctx.world_size / max(elapsed, 1e-9))
        t_prev = time.perf_counter()
        bookkeeping += t_prev - t_compute

    total_loss, total_cls, total_clips = D.reduce_floats([loss_sum.item(), cls_sum.item(), float(clips)], device)
    wall = time.perf_counter() - t_start
    return {"loss": total_loss / max(total_clips, 1), "cls_loss": total_cls / max(total_clips, 1),
            "clips": int(total_clips), "steps": steps, "wall": wall,
            "data_wait": data_wait, "compute": compute, "bookkeeping": bookkeeping}


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
        views = x.shape[1] if x.dim() == 6 else 1
        if views > 1 or x.dim() == 6:
            x = x.flatten(0, 1)  # (B*V, C, T, H, W)
        if channels_last and device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with autocast():
            logits, _, _ = split_output(model(x))
        logits = logits.float().view(y.shape[0], views, -1).mean(dim=1)  # (B, K)
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


def update_selection(state: RunState, row: Mapping[str, Any], selection: str) -> bool:
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
        # the thread count at the epoch's end: a sweep's pool may change it between epochs (sweep.pool.CoreShare)
        "torch_threads": torch.get_num_threads(),
    }


# ============================================================================================
# data loading


class ShardSampler(Sampler[int]):
    """Evaluation indices ``rank, rank + world, ...``: every clip exactly once over all ranks
    (no padding, unlike DistributedSampler, so distributed metrics stay exact)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Loaders:
    """Train / val / test DataLoaders with per-epoch seeding of sampler, workers and datasets.

    Training uses a :class:`DistributedSampler` even in a single process (``num_replicas=1``):
    its permutation depends only on ``(seed, epoch)``, so one process with batch B sees, batch
    by batch, the same clips as N processes with batch B/N each.
    """

    def __init__(self, bundle: Any, cfg: TrainConfig, workers: int, ctx: D.DistContext):
        self.bundle, self.cfg, self.ctx = bundle, cfg, ctx
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} processes; "
                              "batch_size is the global batch")
        local_batch = cfg.batch_size // ctx.world_size
        if cfg.mixup and local_batch % 2:
            raise ConfigError(f"mixup needs an even batch per process; {cfg.batch_size} / {ctx.world_size} = {local_batch}")
        if len(bundle.train) < cfg.batch_size:
            raise ConfigError(f"the training split has {len(bundle.train)} clips, fewer than batch_size "
                              f"{cfg.batch_size}; lower batch_size")
        self.generators: list[torch.Generator] = []
        self.sampler = DistributedSampler(bundle.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.train = self._loader(bundle.train, local_batch, self.sampler, workers, drop_last=True)
        self.val = None
        if bundle.val is not None and len(bundle.val):
            self.val = self._loader(bundle.val, cfg.eval_batch_size,
                                    ShardSampler(len(bundle.val), ctx.rank, ctx.world_size), workers)
        self.test = self._loader(bundle.test, cfg.eval_batch_size,
                                 ShardSampler(len(bundle.test), ctx.rank, ctx.world_size), workers)

    def _loader(self, dataset: Dataset, batch: int, sampler: Sampler, workers: int, drop_last: bool = False):
        gen = loader_generator(0)
        self.generators.append(gen)
        return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=drop_last,
                          pin_memory=self.ctx.device.type == "cuda", worker_init_fn=worker_init_fn,
                          generator=gen, persistent_workers=False)

    def set_epoch(self, epoch: int) -> None:
        """Give every dataset, the sampler and the worker generators this epoch's seeds."""
        self.sampler.set_epoch(epoch)
        for split in (self.bundle.train, self.bundle.val, self.bundle.test):
            if split is not None and hasattr(split, "set_epoch"):
                split.set_epoch(epoch)
        for i, gen in enumerate(self.generators):
            gen.manual_seed(derive_seed(self.cfg.seed, epoch, "workers", i, self.ctx.rank))


def _len(dataset: Any) -> int:
    return len(dataset) if dataset is not None else 0


def _check_bundle(spec: RunSpec, bundle: Any, ctx: D.DistContext) -> None:
    if spec.train.selection == "val_uar" and (bundle.val is None or len(bundle.val) == 0):
        raise ConfigError("selection 'val_uar' needs a validation split but the data has none",
                          hint="use the unified protocol (which holds out val_fraction of the train fold) "
                               "or selection=test_war")
    if len(bundle.test) == 0:
        raise ConfigError("the test split is empty")


# ============================================================================================
# resume, commit, finish


def _resume(run_dir: Path, identity: Mapping[str, Any], model: nn.Module, optimizer, scheduler, scaler,
            ctx: D.DistContext, report: "Reporter") -> RunState:
    """Load ``last.pt`` (rank 0 reads, every rank receives it) into the live objects."""
    last = run_dir / F.LAST
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


def _write_run_header(run_dir: Path, spec: RunSpec, identity: Mapping[str, Any], classes: Sequence[str],
                      model_cfg: Any, bundle: Any, ctx: D.DistContext, precision: str, notes: list[str],
                      state: RunState, *, fresh: bool) -> None:
    """``config.json`` and ``environment.json`` (rank 0); a fresh start drops the old run's markers."""
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
        precision=precision, notes=notes, seeds=seeds))
    if state.history:
        F.write_history(run_dir, state.history)


def _checkpoint(kind: str, spec: RunSpec, identity: Mapping[str, Any], classes: Sequence[str],
                model: nn.Module, state: RunState, **extra: Any) -> dict:
    return {"format": FORMAT, "kind": kind, "run_id": spec.run_id, "run_id_scheme": RUN_ID_SCHEME, **identity,
            "train_config": to_dict(spec.train),
            "classes": list(classes),
            "epoch": state.epoch, "model_state": model.state_dict(), "best": state.best,
            "history": state.history, "torch_version": str(torch.__version__),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}


def _commit(run_dir: Path, spec: RunSpec, identity, classes, model, optimizer, scheduler, scaler,
            state: RunState, improved: bool, ctx: D.DistContext) -> None:
    """Rank 0 writes ``best.pt`` (if improved), ``last.pt`` and ``history.csv``; every rank learns
    whether that worked."""
    error: BenchError | None = None
    if ctx.is_main:
        try:
            last = _checkpoint("last", spec, identity, classes, model, state,
                               optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                               scaler_state=scaler.state_dict() if scaler is not None else None, rng=rng_snapshot())
            best = _checkpoint("best", spec, identity, classes, model, state,
                               metrics=state.history[-1]) if improved else None
            F.commit_epoch(run_dir, last, best)
            F.write_history(run_dir, state.history)
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError("rank 0 failed to write the checkpoint; see its error")


def _last_good(run_dir: Path, state: RunState) -> str:
    if state.epoch < 0:
        return "none yet: this was the first epoch"
    return f"{run_dir / F.LAST}, epoch {state.epoch}"


def _finish(spec: RunSpec, bundle: Any, classes: Sequence[str], identity: Mapping[str, Any], model: nn.Module,
            eval_model: nn.Module, loaders: Loaders, state: RunState, params: int, precision: str,
            autocast: Callable, ctx: D.DistContext, run_dir: Path) -> dict:
    """Evaluate the selected checkpoint once on the test split and publish the result rows."""
    cfg = spec.train
    best_state = None
    error: BenchError | None = None
    if ctx.is_main:
        try:
            best_ckpt = load_checkpoint(run_dir / F.BEST, map_location=ctx.device)
            if best_ckpt.get("epoch") != state.best["epoch"]:
                raise CheckpointError(f"{run_dir / F.BEST} holds epoch {best_ckpt.get('epoch')} but the run "
                                      f"selected epoch {state.best['epoch']}")
            best_state = best_ckpt["model_state"]
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError("rank 0 could not read best.pt")
    best_state = D.broadcast_object(best_state) if ctx.distributed else best_state
    model.load_state_dict(best_state)
    selected = state.best["epoch"]
    loaders.set_epoch(selected)  # the eval clips of that epoch (matters for random-window evaluation)
    test, predictions = evaluate(eval_model, loaders.test, len(classes), device=ctx.device, autocast=autocast,
                                 channels_last=cfg.channels_last, collect=True)
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
        views=spec.data.eval_views, train_clips=len(bundle.train), val_clips=_len(bundle.val),
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
    error = None
    if ctx.is_main:
        clip_ids = _clip_ids(bundle.test)
        for pred in predictions:
            pred["clip_id"] = clip_ids[pred["index"]] if clip_ids else pred["index"]
        try:
            F.write_history(run_dir, state.history)
            F.write_predictions(run_dir, predictions, classes)
            F.publish_result(run_dir, Path(spec.results_dir), result)
        except BenchError as err:
            error = err
    if not D.all_agree(error is None, ctx.device):
        raise error or CheckpointError("rank 0 failed to write the results")
    return result


def _clip_ids(dataset: Any) -> list[str] | None:
    records = getattr(dataset, "records", None)
    if records is None:
        return None
    return [getattr(r, "clip_id", str(i)) for i, r in enumerate(records)]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def _fmt(metrics: Mapping[str, Any] | None) -> str:
    return "-" if metrics is None else f"uar {metrics['uar']:.4f} war {metrics['war']:.4f}"


# ============================================================================================
# precision, determinism, progress


def _precision(cfg: TrainConfig, device: torch.device) -> tuple[str, list[str]]:
    """Effective precision (``fp32`` | ``bf16`` | ``fp16``) and notes about ignored settings."""
    notes = []
    if cfg.amp == "none":
        return "fp32", notes
    if device.type != "cuda":
        notes.append(f"amp={cfg.amp} is ignored on the CPU; training in fp32")
        return "fp32", notes
    if cfg.amp == "bf16" and not torch.cuda.is_bf16_supported():
        notes.append("this GPU has no bf16 support; using fp16 autocast with a GradScaler instead")
        return "fp16", notes
    return cfg.amp, notes


def _autocast(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


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


class Reporter:
    """Sends progress events to the callback (rank 0 only; a no-op without a callback).

    Events: ``start``, ``resume``, ``warning`` {message}, ``epoch_start`` {epoch, epochs, steps, lr},
    ``step`` {epoch, step, steps, loss, lr, clips_per_s}, ``epoch_end`` {history row, best_epoch,
    best_metric, selection}, ``done`` {row, run_dir, history, per_class, cached}.
    """

    def __init__(self, callback: Progress | None):
        self.callback = callback

    @property
    def active(self) -> bool:
        return self.callback is not None

    def emit(self, **event: Any) -> None:
        if self.callback is not None:
            self.callback(event)

    def warning(self, message: str) -> None:
        log.warning(message)
        self.emit(kind="warning", message=message)
