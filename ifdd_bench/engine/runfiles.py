"""The run folder ``<runs_dir>/<run_id>/`` and its files (written by rank 0 only).

::

    config.json        resolved model / data / train configs, run id, protocol hash
    environment.json   versions, device, git sha, seeds, weight-file hashes, dataset info
    history.csv        one row per finished epoch (loss, lr, val/test metrics, timings)
    last.pt            full training state after the last finished epoch (resume point)
    best.pt            weights of the selected epoch (+ configs, metrics)
    predictions.csv    test predictions of the selected checkpoint (per-class probabilities)
    result.json        the run's result row and per-class rows
    done               marker: the run finished and its rows were appended

Every file is written atomically. The best checkpoint is committed in two phases so that a
crash between writing ``best.pt`` and ``last.pt`` can never leave them disagreeing: the new best
weights go to ``best.pending.pt``, then ``last.pt`` (which names the best epoch) is written, then
the pending file is renamed to ``best.pt``. :func:`recover_pending_best` finishes or discards an
interrupted commit when the run resumes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ifdd_bench.atomic import json_text
from ifdd_bench.engine.checkpoint import BEST, LAST, atomic_write_text, load_checkpoint, save_atomic
from ifdd_bench.errors import BenchError, CheckpointError
from ifdd_bench.results import PER_CLASS_CSV, RUNS_CSV, append_rows

BEST_PENDING = "best.pending.pt"
HISTORY = "history.csv"
PREDICTIONS = "predictions.csv"
RESULT = "result.json"
DONE = "done"
CONFIG = "config.json"
ENVIRONMENT = "environment.json"


def write_json(path: Path, data: Any) -> None:
    """Atomic pretty JSON (:func:`ifdd_bench.atomic.json_text`); failures raise CheckpointError."""
    atomic_write_text(path, json_text(data))


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of dict rows (floats written with ``repr`` so they round-trip exactly)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def write_history(run_dir: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite ``history.csv`` from the in-memory history (the checkpoint is the source of truth)."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    atomic_write_text(run_dir / HISTORY, csv_text(history, columns))


def commit_epoch(run_dir: Path, last_state: Mapping[str, Any], best_state: Mapping[str, Any] | None) -> None:
    """Write the epoch's checkpoints in the crash-safe order described in the module docstring."""
    if best_state is not None:
        save_atomic(best_state, run_dir / BEST_PENDING)
    save_atomic(last_state, run_dir / LAST)
    if best_state is not None:
        _replace(run_dir / BEST_PENDING, run_dir / BEST)


def recover_pending_best(run_dir: Path, last_ckpt: Mapping[str, Any]) -> str | None:
    """Finish or roll back a best-checkpoint commit interrupted by a crash.

    Returns a short note of what was done (or ``None`` if nothing was pending).
    """
    pending = run_dir / BEST_PENDING
    if not pending.exists():
        return None
    best_epoch = (last_ckpt.get("best") or {}).get("epoch")
    try:
        pending_epoch = load_checkpoint(pending).get("epoch")
    except CheckpointError:
        pending_epoch = None
    if pending_epoch is not None and pending_epoch == best_epoch:
        _replace(pending, run_dir / BEST)
        return f"completed the interrupted best-checkpoint commit of epoch {best_epoch}"
    pending.unlink()
    return f"discarded a best checkpoint of unfinished epoch {pending_epoch}"


def _replace(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as err:
        raise CheckpointError(f"cannot move {src} to {dst}: {err.strerror or err}") from None


def write_predictions(run_dir: Path, predictions: Iterable[Mapping[str, Any]], classes: Sequence[str]) -> None:
    """``predictions.csv``: one row per test clip (index, clip id, label, prediction, probabilities)."""
    columns = ["index", "clip_id", "label", "label_name", "pred", "pred_name", "correct"] + [
        f"p_{name}" for name in classes]
    rows = []
    for pred in predictions:
        row = {k: pred[k] for k in ("index", "clip_id", "label", "pred")}
        row["label_name"] = classes[pred["label"]]
        row["pred_name"] = classes[pred["pred"]]
        row["correct"] = int(pred["label"] == pred["pred"])
        row.update({f"p_{name}": round(float(p), 6) for name, p in zip(classes, pred["probs"])})
        rows.append(row)
    atomic_write_text(run_dir / PREDICTIONS, csv_text(rows, columns))


def finished_result(run_dir: Path) -> dict | None:
    """The stored ``result.json`` of a finished run (``done`` marker present), else ``None``."""
    if not (run_dir / DONE).exists() or not (run_dir / RESULT).exists():
        return None
    try:
        return json.loads((run_dir / RESULT).read_text())
    except (OSError, ValueError):
        return None


def _rows_with(path: Path, run_id: str, finished_at: str) -> bool:
    if not path.exists():
        return False
    with path.open(newline="") as fh:
        return any(r.get("run_id") == run_id and r.get("finished_at") == finished_at
                   for r in csv.DictReader(fh))


def publish_result(run_dir: Path, results_dir: Path, result: Mapping[str, Any]) -> None:
    """Write ``result.json``, append the rows to ``runs.csv`` / ``per_class.csv`` (once, even if
    interrupted and repeated) and set the ``done`` marker."""
    write_json(run_dir / RESULT, result)
    row, per_class = result["row"], result["per_class"]
    try:
        if not _rows_with(results_dir / RUNS_CSV, row["run_id"], row["finished_at"]):
            append_rows(results_dir / RUNS_CSV, [row])
        if per_class and not _rows_with(results_dir / PER_CLASS_CSV, row["run_id"], row["finished_at"]):
            append_rows(results_dir / PER_CLASS_CSV, per_class)
    except OSError as err:
        raise BenchError(f"cannot append results to {results_dir}: {err.strerror or err}",
                         hint="the run folder keeps result.json; fix the disk problem and re-run the "
                              "same command to append the row") from None
    atomic_write_text(run_dir / DONE, row["finished_at"] + "\n")
