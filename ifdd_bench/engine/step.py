"""The one training step: every place that trains a model calls :func:`train_step`.

The engine's epoch (:func:`ifdd_bench.engine.loop.train_one_epoch`), the latency and overhead
benchmarks, the loader bench's model consumption, the pretext pre-training and the scripts in
``benchmarks/`` all step through this function, so a timing or a weight they report comes from the
same operations, in the same order, as a training run::

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = train_step(model, clips, labels, optimizer, torch.nn.functional.cross_entropy)
    float(out.loss)    # classification + the model's auxiliary losses (detached)

Order (the engine's bit-exact resume and DDP tests depend on it): mixing, forward and loss under
``autocast``, the ``check`` hook on the detached loss, ``zero_grad(set_to_none=True)``, backward
(scaled with a GradScaler), gradient clipping (after unscaling), optimiser step (and scaler
update). Moving the batch to its device is the caller's business.
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from ifdd_bench.models.output import unpack_output


class StepResult(NamedTuple):
    """Detached scalars of one step."""

    loss: torch.Tensor  # () classification loss + the model's auxiliary losses
    cls_loss: torch.Tensor  # () classification loss alone


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """Zero-argument factory of the precision context: ``torch.autocast`` in bf16 / fp16 on
    ``device``, a no-op for ``fp32`` (the ``autocast`` of :func:`train_step` and of evaluation)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
               mixer: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
               autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               scaler: torch.amp.GradScaler | None = None, grad_clip: float = 0.0,
               check: Callable[[torch.Tensor], None] | None = None) -> StepResult:
    """One optimiser step of ``model`` on the batch ``x`` ``(B, C, T, H, W)`` with labels ``y`` ``(B,)``.

    ``loss_fn(logits.float(), target)`` is the classification loss (``target`` is ``y``, or the
    soft ``(B, K)`` targets ``mixer(x, y)`` returns with the mixed clips); the losses a
    :class:`~ifdd_bench.models.output.ModelOutput` carries are added to it. ``autocast`` is a
    zero-argument factory of the precision context (:func:`autocast_for`).
    ``check(loss)`` runs before any gradient is touched and may raise to skip the update (the engine
    stops a diverged run there). ``grad_clip > 0`` clips the global gradient norm.
    """
    target = y
    if mixer is not None:
        x, target = mixer(x, y)  # target (B, K) soft
    with autocast():
        logits, aux_losses, _ = unpack_output(model(x))  # (B, K)
        cls_loss = loss_fn(logits.float(), target)
        loss = cls_loss + sum(aux_losses.values()) if aux_losses else cls_loss
    loss_value = loss.detach()
    if check is not None:
        check(loss_value)
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
    return StepResult(loss_value, cls_loss.detach())
