"""Importers for the annotation lists other DFER repositories use, and the toolkit's own list format.

Formats read by :func:`parse_list_file` (one clip per line, whitespace- or comma-separated):

* ``<frame dir> <num_frames> <label>``: Former-DFER, DFER-CLIP, MMA-DFER, IAL lists;
* ``<frame dir> <label>``: MAE-DFER / S2D ``train.csv`` / ``test.csv`` (no header);
* the label is a word (mapped by name) or an integer in a stated class order (``label_order``):
  ``dfew`` (happy, sad, neutral, angry, surprise, disgust, fear; for MAFW the DFER-CLIP order),
  ``official`` (the dataset's own order) or ``alphabetical`` (IFDD/S2D FERV39k, S2D MAFW).
  DFEW integer lists default to ``dfew``, which every public DFEW list uses; FERV39k and MAFW lists
  exist in several orders, so integer labels there need ``label_order`` spelled out.

:func:`import_lists` writes the toolkit format under the data root:
``<root>/ifdd_splits/set_<fold>/{train,test}.csv`` with header ``path,num_frames,label`` (absolute
clip path, frames counted on disk, label as a class *name*) and ``ifdd_splits/source.json``. When
that folder exists, :func:`ifdd_bench.data.readers.read_split` reads it instead of the official
files, so a user's existing lists work with every command.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ifdd_bench.atomic import write_text_atomic
from ifdd_bench.data.collect import Collector, finish_split, resolve_clip
from ifdd_bench.data.labels import LABEL_ORDERS, classes_for, label_index
from ifdd_bench.data.records import ClipRecord, SplitRecords
from ifdd_bench.errors import ConfigError, DataError
from ifdd_bench.events import Progress, emit_progress

IMPORT_DIR = "ifdd_splits"
INT_LABEL_ORDERS = ("dfew", "official", "alphabetical")
_DEFAULT_INT_ORDER = {"dfew": "dfew", "synth": "dfew", "ferv39k": None, "mafw": None}


def int_label_classes(dataset: str, label_order: str | None) -> tuple[str, ...] | None:
    """Class names that integer labels of a list index into (``None``: integers not allowed)."""
    order = label_order or _DEFAULT_INT_ORDER[dataset]
    if order is None:
        return None
    official = classes_for(dataset)
    if order == "official":
        return official
    if order == "alphabetical":
        return tuple(sorted(official))
    if order == "dfew":
        return LABEL_ORDERS["mafw"]["dferclip"] if dataset == "mafw" else LABEL_ORDERS["dfew"]["official"]
    raise ConfigError(f"unknown label order {order!r}; valid: {', '.join(INT_LABEL_ORDERS)}")


def _split_fields(line: str) -> list[str]:
    stripped = line.strip()
    if "," in stripped and len(stripped.split()) == 1:
        return [f.strip() for f in next(csv.reader(io.StringIO(stripped)))]
    return stripped.split()


def parse_list_file(path: Path, dataset: str, *, label_order: str | None = None,
                    collector: Collector | None = None) -> list[tuple[str, int | None, int]]:
    """Parse a clip list -> ``[(clip path text, num_frames or None, class index in the dataset's
    official order)]``. Malformed lines and unknown labels raise DataError naming ``path:line``."""
    collector = collector or Collector(True, str(path))
    classes = classes_for(dataset)
    int_classes = int_label_classes(dataset, label_order)
    if not path.is_file():
        raise DataError(f"list file {path} not found", hint="check the path you passed")
    out: list[tuple[str, int | None, int]] = []
    first = True
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = _split_fields(line)
            if not fields:
                continue
            is_first, first = first, False
            if len(fields) < 2:
                collector.line_error("malformed_line", f"{path}:{lineno}: expected '<dir> [num_frames] <label>', "
                                     f"got {line.strip()!r}", "fix or delete that line")
                continue
            word = fields[-1]
            num_frames: int | None = None
            if len(fields) >= 3 and fields[-2].isdigit():
                clip, num_frames = " ".join(fields[:-2]), int(fields[-2])
            else:
                clip = " ".join(fields[:-1])
            if word.lstrip("-").isdigit():
                if int_classes is None:
                    raise DataError(f"{path}:{lineno}: integer label {word} but {dataset} lists exist in "
                                    "several class orders",
                                    hint="say which with --label-order dfew (Former-DFER, DFER-CLIP, MAE-DFER) "
                                         "or alphabetical (IFDD, S2D) or official")
                idx = int(word)
                if not 0 <= idx < len(int_classes):
                    collector.line_error("unknown_label", f"{path}:{lineno}: label {idx} is outside "
                                         f"0..{len(int_classes) - 1}", "lists use 0-based labels")
                    continue
                label = label_index(int_classes[idx], classes)
            else:
                label = label_index(word, classes)
                if label is None and is_first:
                    continue  # header line such as "path,label"
                if label is None:
                    collector.line_error("unknown_label", f"{path}:{lineno}: unknown label {word!r}",
                                         f"valid labels: {', '.join(classes)}")
                    continue
            assert label is not None
            out.append((clip, num_frames, label))
    return out


def _resolve_path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


def import_lists(dataset: str, root: Path | str, fold: int, lists: dict[str, Path], *,
                 label_order: str | None = None, base: Path | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Convert external lists (``{"train": path, "test": path}``) into ``<root>/ifdd_splits/set_<fold>/``.

    Relative clip paths are resolved against ``base`` (default: each list file's folder). Every clip
    is found on disk and its frames counted; a missing clip raises DataError listing them.
    Returns a summary ``{split: {"clips": n, "file": path, "counts": {...}}}``.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    classes = classes_for(dataset)
    out_dir = root / IMPORT_DIR / f"set_{fold}"
    summary: dict[str, Any] = {}
    for split, list_path in lists.items():
        list_path = Path(list_path).expanduser()
        collector = Collector(True, f"{dataset} {split} list {list_path}")
        rows = parse_list_file(list_path, dataset, label_order=label_order, collector=collector)
        where = base if base is not None else list_path.parent
        lines = []
        for k, (clip, listed_frames, label) in enumerate(rows):
            path = _resolve_path(clip, where)
            found = resolve_clip(path, [path], collector, f"{list_path.name}: {clip}")
            if found is not None:
                if listed_frames is not None and listed_frames != found[1]:
                    collector.count("num_frames_differs")
                lines.append((str(found[0].resolve()), found[1], classes[label]))
            if k % 256 == 0:
                emit_progress(progress, f"import {split}", k, len(rows))
        collector.finish()
        if not lines:
            raise DataError(f"{list_path} lists no clip", hint="check the file")
        target = out_dir / f"{split}.csv"
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["path", "num_frames", "label"])
        writer.writerows(lines)
        write_text_atomic(target, buf.getvalue())
        summary[split] = {"clips": len(lines), "file": str(target), "counts": dict(collector.counts)}
    meta = {"dataset": dataset, "label_order_of_source": label_order or _DEFAULT_INT_ORDER[dataset],
            "classes": list(classes), "sources": {s: str(Path(p).resolve()) for s, p in lists.items()}}
    meta_path = root / IMPORT_DIR / "source.json"
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if old and old.get("dataset") != dataset:
        raise DataError(f"{meta_path} holds imported {old.get('dataset')} lists, not {dataset}",
                        hint="import into a different --data-root")
    old.setdefault("folds", {})[str(fold)] = meta
    old["dataset"] = dataset
    write_text_atomic(meta_path, json.dumps(old, indent=2))
    return summary


def has_imported(root: Path, fold: int) -> bool:
    """True when ``root`` holds lists written by :func:`import_lists` for ``fold``."""
    return (root / IMPORT_DIR / f"set_{fold}" / "train.csv").is_file()


def read_imported(root: Path, dataset: str, split: str, fold: int, *, label_order: str = "official",
                  clip_len: int = 16, strict: bool = True, progress: Progress | None = None) -> SplitRecords:
    """Read ``<root>/ifdd_splits/set_<fold>/<split>.csv`` (written by :func:`import_lists`)."""
    meta_path = root / IMPORT_DIR / "source.json"
    if meta_path.exists():
        meta_ds = json.loads(meta_path.read_text()).get("dataset")
        if meta_ds and meta_ds != dataset and not {meta_ds, dataset} <= {"dfew", "synth"}:
            raise DataError(f"{root / IMPORT_DIR} holds imported {meta_ds} lists, but data.dataset={dataset}",
                            hint=f"use data.dataset={meta_ds} or another --data-root")
    annotation = root / IMPORT_DIR / f"set_{fold}" / f"{split}.csv"
    if not annotation.is_file():
        raise DataError(f"imported list {annotation} not found",
                        hint=f"run `ifdd-bench data import` with a --{split} list for fold {fold}")
    classes = classes_for(dataset, label_order)
    collector = Collector(strict, f"{dataset} fold {fold} {split} ({annotation})")
    records: list[ClipRecord] = []
    with open(annotation, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    for lineno, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != 3 or not row[1].isdigit():
            collector.line_error("malformed_line", f"{annotation}:{lineno}: expected 'path,num_frames,label', "
                                 f"got {','.join(row)!r}", "re-run `ifdd-bench data import`")
            continue
        label = label_index(row[2], classes)
        if label is None:
            collector.line_error("unknown_label", f"{annotation}:{lineno}: unknown label {row[2]!r}",
                                 f"valid labels: {', '.join(classes)}")
            continue
        path = Path(row[0])
        path = path if path.is_absolute() else root / path
        found = resolve_clip(path, [path], collector, f"{annotation.name}:{lineno}")
        if found is not None:
            records.append(ClipRecord(clip_id=row[0], source=found[0], label=label, num_frames=found[1]))
        if lineno % 256 == 0:
            emit_progress(progress, f"{dataset} fold {fold} {split} (imported)", lineno, len(rows))
    collector.count("imported_list", 1)
    return finish_split(dataset, split, fold, classes, records, annotation, collector, clip_len)
