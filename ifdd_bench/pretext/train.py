"""Pre-train IFDD's embedding and backbone on a pretext task over emotion-free clips (:mod:`ifdd_bench.pretext.data`).

What is pre-trained is exactly what the paper initialises from Kinetics-400: the patch embedding and
the MViT backbone. The pyramid, ISSM, LADM and the classifier -- the parts the ablation switches --
stay at their random initialisation when the weights are loaded, so every ablation row starts from
the same backbone and differs only in its top.

Three objectives (:data:`OBJECTIVES`):

* ``masked-video`` (the default, :mod:`ifdd_bench.pretext.masked`): reconstruct the pixels of hidden
  parts of the clip. It reads nothing but the pixels, so nothing of the label space reaches the
  backbone.
* ``nuisance-motion``: the regression head of ``expression-motion`` on emotion-irrelevant targets
  only (head pose, camera shake, illumination, blinks, talking;
  :data:`~ifdd_bench.pretext.data.NUISANCE_TARGET_NAMES`).
* ``expression-motion`` (the earlier default, kept to reproduce its weight file): a head reads both
  backbone taps, averages each token frame over space and regresses the generator's expression
  parameters of that frame relative to the clip mean (:data:`~ifdd_bench.pretext.data.TARGET_NAMES`,
  standardised, mean squared error). Those parameters are the variables whose change defines a
  SynthDFER label, so a backbone trained on them starts from an already disentangled expression
  feature. A run writes one weight file (format
:data:`~ifdd_bench.models.pretrained.PRETEXT_FORMAT`) and, while it runs, a resumable state file
next to it (``<out>.state.pt``, saved after every epoch, removed at the end): an interrupted run
continues from its last finished epoch when started again with the same settings.
"""

from __future__ import annotations

import math
import time
from functools import partial
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ifdd_bench import registry
from ifdd_bench.config import apply_overrides, to_dict
from ifdd_bench.engine.checkpoint import save_atomic
from ifdd_bench.engine.seeding import rng_restore, rng_snapshot, seed_everything
from ifdd_bench.engine.step import train_step
from ifdd_bench.errors import CheckpointError, ConfigError
from ifdd_bench.events import Progress
from ifdd_bench.hashing import sha256_file
from ifdd_bench.models.ifdd import TOKEN_FRAMES
from ifdd_bench.models.pretrained import PRETEXT_FORMAT, backbone_geometry
from ifdd_bench.pretext.data import (NUISANCE_TARGET_NAMES, PRETEXT_SEED, PRETEXT_SOURCES, TARGET_NAMES,
                                     pretext_synth_config, render_pretext_clips)
from ifdd_bench.pretext.masked import TARGETS, MaskedVideoModel, masked_mse, sample_mask

STATE_FORMAT = "ifdd-bench-pretext-state/1"
#: pretext objectives: masked-video reconstruction (default), nuisance-only and the earlier expression-motion regression
OBJECTIVES = ("masked-video", "nuisance-motion", "expression-motion")
#: regression targets of each non-masked objective, in column order
REGRESSION_TARGETS = {"expression-motion": TARGET_NAMES, "nuisance-motion": NUISANCE_TARGET_NAMES}


@dataclass(frozen=True)
class PretextConfig:
    """One pre-training run. ``clips`` train clips plus ``val_clips`` held-out clips are rendered."""

    model: str = "ifdd_tiny"
    clips: int = 3000
    val_clips: int = 200
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0  # initialisation and shuffling
    data_seed: int = PRETEXT_SEED  # the pretext clips (must stay disjoint from benchmark seeds)
    render_size: int = 112  # the benchmark's frame size; clips are resized to the model's size like the loader does
    objective: str = "masked-video"
    mask_ratio: float = 0.6  # share of hidden units per clip (masked-video only)
    mask_target: str = "pixels"  # pixels | motion (masked-video only; ifdd_bench.pretext.masked.TARGETS)
    source: str = "emotion-free"  # emotion-free | unlabeled (ifdd_bench.pretext.data.PRETEXT_SOURCES)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"pretext objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.source not in PRETEXT_SOURCES:
            raise ConfigError(f"pretext source must be one of {', '.join(PRETEXT_SOURCES)}, got {self.source!r}")
        if self.source != "emotion-free" and self.objective != "masked-video":
            raise ConfigError(f"pretext source={self.source!r} shows expressions, so only the masked-video "
                              "objective (which reads pixels alone) may use it; the regression objectives need "
                              "source=emotion-free")
        if self.mask_target not in TARGETS:
            raise ConfigError(f"pretext mask_target must be one of {', '.join(TARGETS)}, got {self.mask_target!r}")
        if not isinstance(self.mask_ratio, (int, float)) or not 0 < self.mask_ratio < 1:
            raise ConfigError(f"pretext mask_ratio must be between 0 and 1 (exclusive), got {self.mask_ratio!r}")
        checks = {"clips": (self.clips, 16), "val_clips": (self.val_clips, 16), "epochs": (self.epochs, 1),
                  "batch_size": (self.batch_size, 1)}
        for name, (value, low) in checks.items():
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"pretext {name} must be an integer >= {low}, got {value!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ConfigError(f"pretext {name} must be a {'positive' if name == 'lr' else 'non-negative'} "
                                  f"finite number, got {value!r}")


class PretextModel(nn.Module):
    """IFDD's embedding + backbone with a per-token-frame regression head."""

    def __init__(self, ifdd: nn.Module, targets: int):
        super().__init__()
        cfg = ifdd.cfg
        self.embed, self.backbone = ifdd.embed, ifdd.backbone
        self.token_frames = TOKEN_FRAMES
        channels = sum(cfg.widths[s] for s in cfg.taps)
        self.norm = nn.LayerNorm(channels)
        self.out = nn.Linear(channels, targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` in [0, 1] -> ``(B, T', targets)``."""
        taps = self.backbone(self.embed(x))  # [(B, 1 + T'*h_s*w_s, C_s)]
        per_frame = []
        for tap in taps:
            b, n, c = tap.shape
            tokens = tap[:, 1:].reshape(b, self.token_frames, (n - 1) // self.token_frames, c)  # (B, T', hw, C)
            per_frame.append(tokens.mean(2))  # (B, T', C_s)
        return self.out(self.norm(torch.cat(per_frame, dim=-1)))  # (B, T', targets)


def _batches(n: int, batch: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    return [order[i:i + batch] for i in range(0, n, batch)]


def _as_input(clips: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> float ``(B, 3, T, H, W)`` in [0, 1]."""
    return clips.permute(0, 4, 1, 2, 3).float().div_(255.0)


def _r2(pred: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Coefficient of determination per target column, over clips and token frames."""
    pred, target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    residual = ((pred - target) ** 2).sum(0)
    total = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return (1.0 - residual / total).tolist()


@torch.no_grad()
def evaluate(model: PretextModel, clips: torch.Tensor, targets: torch.Tensor, batch: int,
             names: Sequence[str] = TARGET_NAMES) -> dict[str, Any]:
    """Mean squared error and R^2 per target on standardised targets."""
    model.eval()
    preds = [model(_as_input(clips[idx])) for idx in _batches(len(clips), batch, None)]
    pred = torch.cat(preds)
    r2 = _r2(pred, targets)
    return {"mse": float(((pred - targets) ** 2).mean()), "r2_mean": sum(r2) / len(r2),
            "r2": dict(zip(names, r2))}


@torch.no_grad()
def evaluate_masked(model: MaskedVideoModel, clips: torch.Tensor, masks: torch.Tensor, batch: int) -> dict[str, Any]:
    """Masked-pixel error on held-out clips with fixed masks ``(N, t, h, w)``.

    ``r2_mean`` is ``1 - mse``: the targets are standardised per unit, so predicting each unit's
    mean scores 0 and a perfect reconstruction 1.
    """
    model.eval()
    total, hidden = 0.0, 0
    for idx in _batches(len(clips), batch, None):
        x = _as_input(clips[idx])
        per_unit = ((model(x, masks[idx]) - model.targets(x)) ** 2).mean(-1)  # (B, t, h, w)
        total, hidden = total + float(per_unit[masks[idx]].sum()), hidden + int(masks[idx].sum())
    mse = total / hidden
    return {"mse": mse, "r2_mean": 1.0 - mse, "r2": {model.target: 1.0 - mse}}


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.pt")


def _load_state(path: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"pretext state {path} cannot be read ({type(err).__name__})",
                              hint="delete it to start the pre-training from scratch") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a pretext state file", hint="delete it or choose another --out")
    if state.get("setup") != expected:
        have = state.get("setup") or {}
        diff = []
        for group in sorted(set(expected) | set(have)):
            mine, theirs = expected.get(group) or {}, have.get(group) or {}
            diff += [f"{group}.{k}: {theirs.get(k)!r} there vs {mine.get(k)!r} now"
                     for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        raise CheckpointError(f"pretext state {path} was written with other settings ({'; '.join(diff[:4])})",
                              hint="re-run with the original settings to resume, or delete it to start over")
    return state


def _render(synth: Any, size: int, emit: Progress, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the pretext clips at the model's ``size``, emitting ``render`` progress events."""
    done = 0

    def rendered(n: int) -> None:
        nonlocal done
        done += n
        emit({"kind": "render", "done": done, "total": synth.clips})

    emit({"kind": "render", "done": 0, "total": synth.clips})
    return render_pretext_clips(synth, size, on_chunk=rendered, objective=objective)


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()  # (B, T', targets) -> scalar


def _train_epoch(model: nn.Module, step: Callable[[torch.Tensor, torch.Tensor], Any], sched: Any,
                 clips: torch.Tensor, batches: list[torch.Tensor], on_step: Callable[[dict], None]) -> float:
    """One pass over ``batches`` (index tensors); ``step(x, idx)`` is the objective's training step
    (chosen once per run in :func:`pretrain`). Returns the clip-weighted mean loss."""
    model.train()
    total, seen = 0.0, 0
    for i, idx in enumerate(batches):
        out = step(_as_input(clips[idx]), idx)  # x: (B, 3, T, H, W)
        sched.step()
        total, seen = total + float(out.loss) * len(idx), seen + len(idx)
        on_step({"step": i + 1, "steps": len(batches), "loss": total / seen})
    return total / seen


def pretext_config(*, threads: int | None = None, overrides: Sequence[str] = (), **fields: Any) -> PretextConfig:
    """The :class:`PretextConfig` of ``ifdd-bench run pretrain``'s options and ``-s/--set key=value``
    ``overrides`` (any field, e.g. ``batch_size=32``; unknown keys are refused with the valid ones),
    refusing ``threads`` < 1 (the torch threads :func:`pretrain` is given) before the fields are checked."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    return apply_overrides(PretextConfig(**fields), overrides, what="pretext config")


def pretrain(cfg: PretextConfig, out: str | Path, *, progress: Progress | None = None,
             threads: int | None = None) -> dict[str, Any]:
    """Run the pretext pre-training and write the weight file ``out``; returns its metadata (as
    stored in the file) plus ``sha256``, the file's SHA-256.

    Resumes from ``<out>.state.pt`` when it exists with the same settings.
    """
    emit = progress or (lambda event: None)
    out = Path(out)
    if registry.get_entry(cfg.model).family != "ifdd":
        raise ConfigError(f"pretext pre-training is for IFDD models (ifdd, ifdd_tiny), got {cfg.model!r}")
    if out.exists():
        raise ConfigError(f"{out} already exists; choose another --out or delete it first")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the folder of --out {out}: {err.strerror or err}",
                          hint="choose an --out in a writable folder") from None
    if threads:
        torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    ifdd = registry.create_model(cfg.model, "gap")
    if getattr(ifdd.cfg, "pretrained", None):
        raise ConfigError(f"{cfg.model}: pre-train from a randomly initialised backbone (pretrained is set)")
    synth = pretext_synth_config(cfg.clips + cfg.val_clips, size=cfg.render_size, frames=ifdd.cfg.frames,
                                 seed=cfg.data_seed, source=cfg.source)
    setup = {"pretext": asdict(cfg), "synth": to_dict(synth), "geometry": backbone_geometry(ifdd.cfg)}
    state_file = _state_path(out)
    state = _load_state(state_file, setup)

    start = time.perf_counter()
    clips, targets = _render(synth, ifdd.cfg.img_size, emit, cfg.objective)
    render_s = time.perf_counter() - start
    train_x, val_x = clips[:cfg.clips], clips[cfg.clips:]
    masked = cfg.objective == "masked-video"
    if not masked:  # standardise the regression targets with the training clips' statistics
        mean, std = targets[:cfg.clips].mean((0, 1)), targets[:cfg.clips].std((0, 1)).clamp_min(1e-6)
        train_y, val_y = (targets[:cfg.clips] - mean) / std, (targets[cfg.clips:] - mean) / std

    names = REGRESSION_TARGETS.get(cfg.objective, ())
    model = MaskedVideoModel(ifdd, cfg.mask_target) if masked else PretextModel(ifdd, len(names))
    if masked:  # fixed held-out masks, drawn from their own generator
        val_masks = sample_mask(len(val_x), model.grid, cfg.mask_ratio,
                                generator=torch.Generator().manual_seed(cfg.seed + 1))
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if masked:
        def step(x: torch.Tensor, idx: torch.Tensor) -> Any:
            # fresh masks from torch's global generator, which a resumed run restores
            mask = sample_mask(len(idx), model.grid, cfg.mask_ratio)  # (B, t, h, w)
            return train_step(partial(model, mask=mask), x, (model.targets(x), mask), optim, masked_mse)
    else:
        def step(x: torch.Tensor, idx: torch.Tensor) -> Any:
            return train_step(model, x, train_y[idx], optim, _mse)
    steps_per_epoch = math.ceil(cfg.clips / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1, anneal_strategy="cos")
    history: list[dict[str, Any]] = []
    first_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, first_epoch = list(state["history"]), int(state["epoch"]) + 1
        rng_restore(state["rng"])  # dropout / stochastic depth continue as in an uninterrupted run
        emit({"kind": "resumed", "epoch": first_epoch})
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(first_epoch):  # same shuffles as an uninterrupted run
        torch.randperm(cfg.clips, generator=gen)

    for epoch in range(first_epoch, cfg.epochs):
        t0 = time.perf_counter()
        batches = _batches(cfg.clips, cfg.batch_size, gen)
        train_mse = _train_epoch(model, step, sched, train_x, batches,
                                 lambda info: emit({"kind": "step", "epoch": epoch, "epochs": cfg.epochs, **info}))
        val = (evaluate_masked(model, val_x, val_masks, cfg.batch_size) if masked
               else evaluate(model, val_x, val_y, cfg.batch_size, names))
        history.append({"epoch": epoch, "train_mse": train_mse, "val_mse": val["mse"], "val_r2_mean": val["r2_mean"],
                        "val_r2": val["r2"], "seconds": time.perf_counter() - t0})
        emit({"kind": "epoch", **history[-1]})
        save_atomic({"format": STATE_FORMAT, "setup": setup, "epoch": epoch, "history": history,
                     "model": model.state_dict(), "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
                     "rng": rng_snapshot()},
                    state_file)

    weights = {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(("embed.", "backbone."))}
    meta = {"format": PRETEXT_FORMAT, "model": cfg.model, "geometry": setup["geometry"], "pretext": setup["pretext"],
            "synth": setup["synth"], "objective": cfg.objective,
            "targets": [cfg.mask_target] if masked else list(names),
            **({"mask_ratio": cfg.mask_ratio, "mask_target": cfg.mask_target} if masked else {"target_mean": mean.tolist(), "target_std": std.tolist()}),
            "history": history, "render_seconds": render_s,
            "torch": str(torch.__version__)}
    save_atomic({**meta, "state_dict": weights}, out)
    state_file.unlink(missing_ok=True)
    return {**meta, "sha256": sha256_file(out)}
