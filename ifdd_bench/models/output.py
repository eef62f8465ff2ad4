"""The one output convention every model follows.

* ``model.eval()``: ``forward(x)`` returns the logits tensor ``(B, K)``.
* ``model.train()``: ``forward(x)`` may return a :class:`ModelOutput` instead, carrying
  auxiliary losses (already weighted, added to the classification loss by the engine) and extras
  for visualisation (IFDD's ISSM positions and similarity). Models without extras return logits.

Callers never index tuples or test the type themselves: they call :func:`unpack_output`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """Training-mode output: logits plus named auxiliary losses and extras."""

    logits: torch.Tensor  # (B, K)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> weighted scalar loss
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> tensor (no grad needed)


def unpack_output(out: torch.Tensor | ModelOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                         dict[str, torch.Tensor]]:
    """Return ``(logits, losses, extras)`` for either output form."""
    if isinstance(out, ModelOutput):
        return out.logits, out.losses, out.extras
    if isinstance(out, torch.Tensor):
        return out, {}, {}
    raise TypeError(f"model returned {type(out).__name__}; expected a Tensor or ModelOutput")
