"""Tidy result rows and their CSV files (no torch).

Each CSV row is one observation. Files (under a results directory, ``results/`` by default):

* ``runs.csv``      one row per finished training run (:class:`RunRow`)
* ``per_class.csv`` one row per (run, class) with the test recall at the selected checkpoint
* ``profile.csv``   one row per profiling measurement (columns defined by the profiler)
* ``evals.csv``     one row per ``ifdd-bench eval`` of a trained run (``kind = "eval"``)
* ``probes.csv``    one row per (evaluation, perturbation) of the temporal-reliance probes (``eval --perturb``)

Rows are appended under a cross-process file lock and written with a temp file + ``os.replace``,
so concurrent sweep workers or an interrupted process never leave a torn or truncated CSV.

Example::

    >>> append_rows("results/runs.csv", [{"run_id": "x", "uar": 0.5}])
    >>> load("results/runs.csv").shape[0] >= 1
    True
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from filelock import FileLock

from ifdd_bench.atomic import atomic_open
from ifdd_bench.errors import DataError

RUNS_CSV = "runs.csv"
PER_CLASS_CSV = "per_class.csv"
PROFILE_CSV = "profile.csv"
EVALS_CSV = "evals.csv"
PROBES_CSV = "probes.csv"
#: the published-numbers table shipped with the package (package data; columns in results/README.md)
LITERATURE_CSV = Path(__file__).resolve().parent / "reports" / "literature.csv"


@dataclass
class RunRow:
    """One finished training run. Metrics are fractions in [0, 1]."""

    run_id: str
    model: str
    variant: str
    dataset: str
    fold: int
    seed: int
    protocol: str  # reference | unified
    train_hash: str  # hash of the TrainConfig (seed/device excluded); rows with different hashes do not mix
    selection: str  # val_uar | test_war: how the reported checkpoint was chosen
    epochs: int
    selected_epoch: int  # 0-based epoch of the reported checkpoint
    uar: float  # test UAR at the selected checkpoint (the headline number)
    war: float  # test WAR at the selected checkpoint
    val_uar: float  # validation UAR at the selected checkpoint (nan under the reference protocol)
    val_war: float
    last_uar: float  # test UAR after the last epoch (for comparison with the literature)
    last_war: float
    best_test_uar: float  # best test UAR over epochs (optimistic, labelled as such)
    best_test_war: float  # best test WAR over epochs
    params: int  # sum of numel over all parameters
    frames: int  # input T
    size: int  # input H = W
    num_classes: int
    views: int  # temporal views averaged at test
    train_clips: int
    val_clips: int
    test_clips: int
    train_seconds: float
    device: str
    torch_version: str
    git_sha: str
    finished_at: str  # ISO timestamp (UTC)
    # added by the engine (issue 5); defaults keep older rows and hand-made rows valid
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast precision actually used
    world_size: int = 1  # processes of a DistributedDataParallel run
    overhead_share: float = float("nan")  # mean share of train step time spent on data wait + logging


RUN_COLUMNS = [f.name for f in fields(RunRow)]
#: columns always read as text: hashes such as "07989489" or "12e45678" must not become numbers
TEXT_COLUMNS = ("run_id", "model", "variant", "dataset", "protocol", "train_hash", "selection", "device",
                "torch_version", "git_sha", "finished_at", "class_name")


def _read_header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(newline="") as fh:
        return next(csv.reader(fh), None)


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any] | Any]) -> int:
    """Append rows (dicts or dataclasses) to a CSV atomically; returns the number written.

    The header is the existing file's header extended by any new keys (old rows get empty
    cells). The whole file is rewritten into a temporary file in the same folder and moved over
    the old one with ``os.replace``, under an exclusive ``<file>.lock``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) if hasattr(r, "__dataclass_fields__") else dict(r) for r in rows]
    if not rows:
        return 0
    with FileLock(str(path) + ".lock"):
        header = _read_header(path) or []
        for row in rows:
            for key in row:
                if key not in header:
                    header.append(key)
        old_text = path.read_text() if path.exists() else ""
        old_rows: list[dict[str, str]] = list(csv.DictReader(io.StringIO(old_text))) if old_text else []
        # atomic_open gives the file 0666 & ~umask (not mkstemp's 0600) and fsyncs before the move
        with atomic_open(path, "w", newline="", fsync=True) as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="raise")
            writer.writeheader()
            for row in old_rows:
                writer.writerow({k: row.get(k, "") for k in header})
            for row in rows:
                writer.writerow({k: _cell(row.get(k, "")) for k in header})
    return len(rows)


def rewrite_rows(path: str | os.PathLike, change: Callable[[dict[str, str]], dict[str, str]]) -> int:
    """Rewrite every row of a CSV through ``change`` (same columns), atomically and under the
    file's lock; returns how many rows ``change`` altered. A missing file is left alone (0)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with FileLock(str(path) + ".lock"):
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
        changed = 0
        out = []
        for row in rows:
            new = change(dict(row))
            changed += new != row
            out.append(new)
        if changed:
            with atomic_open(path, "w", newline="", fsync=True) as fh:
                writer = csv.DictWriter(fh, fieldnames=header, extrasaction="raise")
                writer.writeheader()
                writer.writerows(out)
    return changed


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value


def load(path: str | os.PathLike, *, required: Iterable[str] = ()):
    """Read a results CSV into a pandas DataFrame.

    Raises :class:`DataError` if the file is missing or empty, or lacks a ``required`` column
    (for example when a foreign CSV is passed to ``ifdd-bench report``).
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"results file {path} does not exist", hint="run a training or a sweep first")
    if path.stat().st_size == 0:
        raise DataError(f"results file {path} is empty")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    except Exception as err:  # pandas raises several parser errors
        raise DataError(f"results file {path} is not a readable CSV: {err}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"results file {path} lacks column(s) {', '.join(missing)}",
            hint="is this a results CSV written by ifdd-bench?",
        )
    return frame


def literature_rows(path: str | os.PathLike = LITERATURE_CSV) -> list[dict[str, str]]:
    """Rows of the published-numbers table as dicts of strings (the report types them)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings (none for a missing or empty file); a file that is
    not readable text CSV raises :class:`DataError` naming it."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} is not a readable CSV file ({type(err).__name__}: {err})",
                        hint="restore it from git or delete it; ifdd-bench rewrites it") from None


def finished_run_ids(results_dir: str | os.PathLike) -> set[str]:
    """Run ids that already have a row in ``<results_dir>/runs.csv`` (empty set if none)."""
    return {row["run_id"] for row in read_csv_rows(Path(results_dir) / RUNS_CSV) if row.get("run_id")}
