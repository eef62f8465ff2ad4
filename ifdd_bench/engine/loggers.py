"""TensorBoard and Weights & Biases loggers fed by the engine's progress events.

The run folder's CSV files (``history.csv``, ``predictions.csv``, ``results/runs.csv``) stay the
record; a logger mirrors the same numbers for the tools researchers watch runs with. A logger
sits between the engine and the caller's progress callback (:func:`attach_loggers`), so it sees
exactly the events the CLI displays (:class:`~ifdd_bench.engine.events.Reporter`):

==============  ===============================  ===========================================
tag             from event                       x-axis
==============  ===============================  ===========================================
``step/*``      ``step``: loss, lr, clips_per_s  global step ``epoch * steps + step``
``epoch/*``     ``epoch_end``: every number of   epoch (0-based, as in ``history.csv``)
                the history row, best_metric
``result/*``    ``done``: uar, war, and the      the selected epoch
                confusion matrix as an image
==============  ===============================  ===========================================

TensorBoard event files go to ``<run folder>/tb/``; wandb writes ``<run folder>/wandb/`` and runs
offline unless ``WANDB_MODE`` is set (``WANDB_PROJECT`` names the project, default ``ifdd-bench``).

A resumed run does not log steps twice: the writer opens at the first epoch of this session with
``purge_step = first_epoch * steps``, so TensorBoard drops whatever an interrupted attempt logged
from there on (a fresh start, epoch 0, drops an older attempt's events entirely). A logger that
fails mid-run (full disk, a wandb error) warns once and stops; training goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ifdd_bench.config import RunSpec, to_dict
from ifdd_bench.events import Progress

log = logging.getLogger(__name__)

#: TensorBoard's folder inside the run folder
TB_DIR = "tb"
#: numbers of a ``step`` event logged per step
STEP_KEYS = ("loss", "lr", "clips_per_s")
#: numbers of an ``epoch_end`` event that are not curves
_NOT_EPOCH_SCALARS = ("epoch", "kind")


def global_step(event: Mapping[str, Any]) -> int:
    """Optimizer steps before this ``step`` event's batch: ``epoch * steps + step``."""
    return int(event["epoch"]) * int(event["steps"]) + int(event["step"])


def epoch_scalars(event: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of an ``epoch_end`` event (history row plus ``best_metric``)."""
    out = {}
    for key, value in event.items():
        if key in _NOT_EPOCH_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def confusion_figure(confusion: Sequence[Sequence[float]], classes: Sequence[str], title: str) -> Any:
    """A matplotlib figure of a confusion matrix (rows: true class, columns: predicted), each cell
    the % of its true class, the count beside it. Built without pyplot (no global figure state)."""
    import numpy as np
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=float)  # (K true, K predicted)
    rows = counts.sum(axis=1, keepdims=True)
    percent = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) * 100
    k = len(classes)
    side = 0.5 * k + 1.6
    fig = Figure(figsize=(side + 0.6, side), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(percent, vmin=0, vmax=100, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{percent[i, j]:.0f}\n({int(counts[i, j])})", ha="center", va="center", fontsize=7,
                    color="white" if percent[i, j] > 60 else "black")
    ax.set_xticks(range(k), labels=list(classes), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels=list(classes), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    fig.tight_layout()
    return fig


def figure_pixels(fig: Any) -> Any:
    """The RGB pixels ``(H, W, 3)`` uint8 of a matplotlib figure, drawn with the Agg canvas."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 4) RGBA -> (H, W, 3)


class EventLogger:
    """Base of the loggers: dispatches engine events and opens the backend at the first event that
    writes (the first ``epoch_start`` of this session, or ``done`` when no epoch was left).

    Subclasses implement :meth:`open`, :meth:`log_step`, :meth:`log_epoch`, :meth:`log_result` and
    :meth:`close`. A finished run returned from its folder (``done`` with ``cached``) logs nothing.
    """

    name = "logger"

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.run_dir = Path(spec.runs_dir) / spec.run_id
        self.steps: int | None = None  # optimizer steps per epoch, from epoch_start
        self.opened = False

    def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "epoch_start":
            self.steps = int(event["steps"])
            self._open(int(event["epoch"]) * self.steps)
        elif kind == "step" and self.opened:
            self.log_step(global_step(event), event)
        elif kind == "epoch_end" and self.opened:
            self.log_epoch(int(event["epoch"]), event)
        elif kind == "done" and not event.get("cached"):
            self._open(None)
            self.log_result(event)

    def _open(self, purge_step: int | None) -> None:
        if not self.opened:
            self.opened = True
            self.open(purge_step)

    def open(self, purge_step: int | None) -> None:
        """Start writing; events at ``purge_step`` and later from earlier attempts are superseded."""
        raise NotImplementedError

    def log_step(self, step: int, event: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def log_epoch(self, epoch: int, event: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def log_result(self, event: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def title(self, row: Mapping[str, Any]) -> str:
        return (f"{self.spec.run_id}\nselected epoch {row['selected_epoch']}: "
                f"UAR {100 * row['uar']:.1f}  WAR {100 * row['war']:.1f}")


class TensorBoardLogger(EventLogger):
    """Event files in ``<run folder>/tb/`` through :class:`torch.utils.tensorboard.SummaryWriter`."""

    name = "tensorboard"
    writer: Any = None

    def open(self, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / TB_DIR), purge_step=purge_step)

    def log_step(self, step: int, event: Mapping[str, Any]) -> None:
        for key in STEP_KEYS:
            if key in event:
                self.writer.add_scalar(f"step/{key}", float(event[key]), step)

    def log_epoch(self, epoch: int, event: Mapping[str, Any]) -> None:
        for key, value in epoch_scalars(event).items():
            self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.writer.flush()  # an epoch is committed: its curves should survive a crash too

    def log_result(self, event: Mapping[str, Any]) -> None:
        row = event["row"]
        selected = int(row["selected_epoch"])
        self.writer.add_scalar("result/uar", float(row["uar"]), selected)
        self.writer.add_scalar("result/war", float(row["war"]), selected)
        self.writer.add_figure("result/confusion", confusion_figure(event["confusion"], event["classes"],
                                                                    self.title(row)), selected, close=False)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def wandb_id(run_id: str) -> str:
    """A wandb run id for ``run_id`` (letters, digits, ``-`` and ``_``; at most 64 characters), the
    same every time, so an online run that resumes continues its wandb run."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", run_id)
    if len(clean) <= 64:
        return clean
    return f"{clean[:55]}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


class WandbLogger(EventLogger):
    """A Weights & Biases run in ``<run folder>/wandb/``, offline unless ``WANDB_MODE`` is set.

    One step axis (wandb's own must only grow): a step event at its global step, an epoch's numbers
    at the epoch's last step with ``epoch`` as their x-axis, the result at the last step. An online
    run that resumes continues its wandb run (same id); wandb ignores the steps it already has.
    """

    name = "wandb"
    run: Any = None

    def open(self, purge_step: int | None) -> None:
        import wandb

        spec = self.spec
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = {"run_id": spec.run_id, "model": spec.model, "variant": spec.variant, "train": to_dict(spec.train),
                  "data": to_dict(spec.data), "model_overrides": [[k, v] for k, v in spec.model_overrides]}
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "ifdd-bench", name=spec.run_id,
                              id=wandb_id(spec.run_id), resume="allow", dir=str(self.run_dir), config=config,
                              job_type="train", mode=None if os.environ.get("WANDB_MODE") else "offline")
        self.run.define_metric("epoch")
        self.run.define_metric("epoch/*", step_metric="epoch")
        self.run.define_metric("result/*", step_metric="epoch")

    def _epoch_end_step(self, epoch: int) -> int | None:
        return (epoch + 1) * self.steps - 1 if self.steps else None

    def log_step(self, step: int, event: Mapping[str, Any]) -> None:
        self.run.log({f"step/{key}": float(event[key]) for key in STEP_KEYS if key in event}, step=step)

    def log_epoch(self, epoch: int, event: Mapping[str, Any]) -> None:
        values = {f"epoch/{key}": value for key, value in epoch_scalars(event).items()}
        self.run.log({"epoch": epoch, **values}, step=self._epoch_end_step(epoch))

    def log_result(self, event: Mapping[str, Any]) -> None:
        import wandb

        row = event["row"]
        selected = int(row["selected_epoch"])
        figure = confusion_figure(event["confusion"], event["classes"], self.title(row))
        self.run.log({"epoch": selected, "result/uar": float(row["uar"]), "result/war": float(row["war"]),
                      "result/confusion": wandb.Image(figure_pixels(figure))},
                     step=self._epoch_end_step(int(row["epochs"]) - 1))
        self.run.summary.update({k: v for k, v in row.items() if isinstance(v, (int, float, str))})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


LOGGER_CLASSES: Mapping[str, type[EventLogger]] = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


class LoggerTee:
    """The progress callback that feeds the loggers, then the caller's callback.

    A logger that raises is closed and dropped after one warning (logged, and sent on as a
    ``warning`` event so the CLI shows it); the caller's callback and training are unaffected.
    """

    def __init__(self, loggers: Sequence[EventLogger], progress: Progress | None):
        self.loggers = list(loggers)
        self.progress = progress

    def __call__(self, event: dict) -> None:
        for logger in list(self.loggers):
            try:
                logger(event)
            except Exception as err:  # noqa: BLE001 - a logger must never stop a run
                self._drop(logger, err)
        if self.progress is not None:
            self.progress(event)

    def _drop(self, logger: EventLogger, err: BaseException) -> None:
        self.loggers.remove(logger)
        with contextlib.suppress(Exception):
            logger.close()
        message = (f"the {logger.name} logger stopped after an error ({type(err).__name__}: {err}); training "
                   f"goes on and the run's CSV files stay complete")
        log.warning(message)
        if self.progress is not None:
            self.progress({"kind": "warning", "message": message})

    def close(self) -> None:
        """Flush and close every logger still running (errors here warn too)."""
        for logger in list(self.loggers):
            try:
                logger.close()
            except Exception as err:  # noqa: BLE001
                self._drop(logger, err)


@contextlib.contextmanager
def attach_loggers(spec: RunSpec, progress: Progress | None, *, enabled: bool = True) -> Iterator[Progress | None]:
    """The progress callback to train ``spec`` with: ``progress`` itself without loggers (or when
    not ``enabled``: ranks other than 0), else a :class:`LoggerTee` of ``spec.loggers`` in front of
    it, closed (flushed) on exit, error or not. Nothing is written until the engine sends its first
    epoch (or its result)."""
    if not spec.loggers or not enabled:
        yield progress
        return
    tee = LoggerTee([LOGGER_CLASSES[name](spec) for name in spec.loggers], progress)
    try:
        yield tee
    finally:
        tee.close()
