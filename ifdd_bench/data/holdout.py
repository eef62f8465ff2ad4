"""Stratified, seeded validation hold-out carved from a training fold (unified protocol).

Per class with n clips, ``round(fraction * n)`` clips go to validation, at least one and at most
n - 1 when n >= 2 (a class with a single clip stays in training). Clips are ordered by id before a
seeded permutation, so the split depends only on (clip ids, labels, fraction, seed), not on the
order of the annotation file. The split is saved as ``val_split.csv`` (``clip_id,label,split``) in
the run folder and read back from there on resume.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ifdd_bench.atomic import write_text_atomic
from ifdd_bench.data.records import ClipRecord
from ifdd_bench.errors import ConfigError, DataError

VAL_SPLIT_FILE = "val_split.csv"


def stratified_holdout(records: Sequence[ClipRecord], fraction: float,
                       seed: int) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Split ``records`` into ``(train, val)``; both keep the input order."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {fraction}")
    by_class: dict[int, list[str]] = defaultdict(list)
    for rec in records:
        by_class[rec.label].append(rec.clip_id)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7411])
    val_ids: set[str] = set()
    for label in sorted(by_class):
        ids = sorted(by_class[label])
        n = len(ids)
        take = 0 if n < 2 else min(max(round(fraction * n), 1), n - 1)
        order = rng.permutation(n)
        val_ids.update(ids[i] for i in order[:take])
    train = [r for r in records if r.clip_id not in val_ids]
    val = [r for r in records if r.clip_id in val_ids]
    return train, val


def write_holdout(path: Path, train: Sequence[ClipRecord], val: Sequence[ClipRecord]) -> None:
    """Write ``clip_id,label,split`` rows atomically (temp file + rename)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["clip_id", "label", "split"])
    for split, recs in (("train", train), ("val", val)):
        for rec in recs:
            writer.writerow([rec.clip_id, rec.label, split])
    write_text_atomic(path, buf.getvalue())


def read_holdout(path: Path, records: Sequence[ClipRecord]) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Re-create ``(train, val)`` from a saved split; it must cover exactly the clips of ``records``."""
    assignment: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if lineno == 1 and row[:1] == ["clip_id"]:
                continue
            if len(row) != 3 or row[2] not in ("train", "val"):
                raise DataError(f"{path}:{lineno}: expected 'clip_id,label,split' with split train|val, got {row!r}",
                                hint="delete the file to draw the hold-out again (the run then differs)")
            assignment[row[0]] = row[2]
    ids = {r.clip_id for r in records}
    if set(assignment) != ids:
        extra, missing = len(set(assignment) - ids), len(ids - set(assignment))
        raise DataError(f"{path} does not match the training fold ({extra} clip(s) not in the fold, "
                        f"{missing} fold clip(s) missing)",
                        hint="this run folder belongs to another dataset, fold or data root; use a new run folder")
    train = [r for r in records if assignment[r.clip_id] == "train"]
    val = [r for r in records if assignment[r.clip_id] == "val"]
    return train, val


def holdout_for_run(records: Sequence[ClipRecord], fraction: float, seed: int,
                    run_dir: Path | None) -> tuple[list[ClipRecord], list[ClipRecord], Path | None, str]:
    """The hold-out of a run: read from ``run_dir/val_split.csv`` if present, else drawn (and saved).

    Returns ``(train, val, file or None, "read" | "drawn")``.
    """
    if run_dir is not None:
        path = Path(run_dir) / VAL_SPLIT_FILE
        if path.exists():
            train, val = read_holdout(path, records)
            return train, val, path, "read"
    train, val = stratified_holdout(records, fraction, seed)
    if run_dir is None:
        return train, val, None, "drawn"
    path = Path(run_dir) / VAL_SPLIT_FILE
    write_holdout(path, train, val)
    return train, val, path, "drawn"
