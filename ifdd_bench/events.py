"""Progress events: the one callback type of every long-running library call (no torch, no package imports).

A call that takes ``progress: Progress | None`` sends it plain dicts and never prints; the CLI turns
them into rich progress bars, a sweep pool forwards them to its parent. Keys: the engine's and the
sweeps' events carry ``"kind"`` (see :class:`ifdd_bench.engine.events.Reporter`); data preparation
sends ``{"event": "data_progress", "stage", "done", "total"}`` and pre-training ``{"event": ...}``.

This module sits at the base of the import order (beside ``errors`` and ``atomic``) so that every
layer, data included, can name the type without importing the engine.
"""

from __future__ import annotations

from typing import Any, Callable

Progress = Callable[[dict[str, Any]], None]
