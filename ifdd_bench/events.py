"""Progress events: the one callback type of every long-running library call (no torch, no package imports).

A call that takes ``progress: Progress | None`` sends it plain dicts and never prints; the CLI turns
them into rich progress bars, a sweep pool forwards them to its parent. Every event names itself
with ``"kind"``: the engine's (see :class:`ifdd_bench.engine.events.Reporter`), the sweeps', data
preparation's (``{"kind": "data_progress", "stage", "done", "total"}``, sent with
:func:`emit_progress`) and pre-training's.

This module sits at the base of the import order (beside ``errors`` and ``atomic``) so that every
layer, data included, can name the type without importing the engine.
"""

from __future__ import annotations

from typing import Any, Callable

Progress = Callable[[dict[str, Any]], None]


def emit_progress(progress: Progress | None, stage: str, done: int, total: int) -> None:
    """Report ``done`` of ``total`` items of ``stage`` as a ``data_progress`` event (if anyone listens)."""
    if progress is not None:
        progress({"kind": "data_progress", "stage": stage, "done": done, "total": total})
