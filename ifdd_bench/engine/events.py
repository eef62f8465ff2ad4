"""The engine's progress events and the :class:`Reporter` that sends them.

The callback type is :data:`ifdd_bench.events.Progress` (one definition for every layer); every
event the engine sends is a dict keyed by ``"kind"``. The CLI renders them as a progress bar, a
sweep pool forwards them to its parent process.
"""

from __future__ import annotations

import logging
from typing import Any

from ifdd_bench.events import Progress

log = logging.getLogger(__name__)


class Reporter:
    """Sends progress events to the callback (rank 0 only; a no-op without a callback).

    Events: ``start``, ``resume``, ``warning`` {message}, ``epoch_start`` {epoch, epochs, steps, lr},
    ``step`` {epoch, step, steps, loss, lr, clips_per_s}, ``epoch_end`` {history row, best_epoch,
    best_metric, selection}, ``done`` {row, run_dir, history, per_class, confusion, classes, cached}
    (a finished run returned from its folder sends ``done`` with ``cached`` true, no history, and the
    per-class recall, confusion matrix and classes stored in its ``result.json``).
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
