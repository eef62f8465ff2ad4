"""The job book of a sweep: ``<runs_dir>/sweeps/<sweep_id>/jobs.csv``.

Every executor records each attempt of each cell there (status ``running`` or ``submitted``,
then ``done``, ``failed`` with the error line, ``interrupted`` or ``detached``), so failed cells
are reported and re-runnable. The file is rewritten atomically under a file lock, so pool workers
and submitit jobs never tear it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from pathlib import Path
from typing import Any

from filelock import FileLock

from ifdd_bench.atomic import write_text_atomic
from ifdd_bench.results import read_csv_rows
from ifdd_bench.sweep.plan import Cell

#: the columns of jobs.csv, in order
JOB_COLUMNS = (
    "sweep_id", "run_id", "attempt", "role", "model", "variant", "dataset", "fold", "seed",
    "train_hash", "executor", "job_id", "status", "error", "started_at", "finished_at",
    "seconds", "log",
)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class JobBook:
    """``jobs.csv`` of one sweep: one row per attempt of a cell, rewritten atomically under a lock."""

    def __init__(self, folder: Path, sweep_id: str):
        self.folder = folder
        self.path = folder / "jobs.csv"
        self.sweep_id = sweep_id
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")

    def rows(self) -> list[dict[str, str]]:
        """Every recorded attempt."""
        return read_csv_rows(self.path)

    def start(self, cell: Cell, executor: str, status: str = "running", **extra: Any) -> int:
        """Record a new attempt of ``cell``; returns its attempt number (1-based)."""
        with self._lock:
            rows = self.rows()
            attempt = 1 + sum(1 for r in rows if r["run_id"] == cell.run_id)
            spec = cell.spec
            rows.append({
                "sweep_id": self.sweep_id, "run_id": cell.run_id, "attempt": attempt, "role": cell.role,
                "model": spec.model, "variant": spec.variant, "dataset": spec.data.dataset,
                "fold": spec.data.fold, "seed": spec.train.seed, "train_hash": cell.train_hash,
                "executor": executor, "job_id": "", "status": status, "error": "",
                "started_at": _now(), "finished_at": "", "seconds": "", "log": "", **extra,
            })
            self._write(rows)
        return attempt

    def update(self, run_id: str, attempt: int, **fields_: Any) -> None:
        """Change fields of one attempt (status, job_id, error, finished_at ...)."""
        with self._lock:
            rows = self.rows()
            for row in rows:
                if row["run_id"] == run_id and int(row["attempt"]) == attempt:
                    row.update({k: v for k, v in fields_.items()})
            self._write(rows)

    def finish(self, run_id: str, attempt: int, status: str, **fields_: Any) -> None:
        """Close one attempt: its final ``status`` (and error, seconds ...), stamped ``finished_at`` now."""
        self.update(run_id, attempt, status=status, finished_at=_now(), **fields_)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(JOB_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in JOB_COLUMNS})
        write_text_atomic(self.path, buf.getvalue(), newline="")  # newline="": keep csv's \r\n as written
