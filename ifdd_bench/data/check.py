"""``ifdd-bench data check``: validate a dataset folder against the official numbers before training.

:func:`check_dataset` reads every fold's train and test list without stopping at the first problem
(``strict=False``), compares clip and class counts with the official ones (:data:`OFFICIAL`),
scans the frame files and returns a :class:`CheckReport`:

* fatal problems (training would stop): missing root or split file, malformed line, unknown label,
  missing clip folder, zero-frame clip, unreadable video, empty split, a clip none of whose frames
  can be read;
* warnings (a documented rule applies): clips shorter than the clip length (padded), a few
  unreadable frames in a clip (replaced by the nearest readable frame), counts that differ from the
  official ones (a subset or a different release).

The image scan (``images=``): ``"header"`` (default) checks every frame file's size and the start/end
markers of JPEG and PNG files (a truncated download ends early), ``"decode"`` fully decodes every
frame, ``"none"`` skips the scan.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ifdd_bench.data.decode import FrameDecodeError, decode_image_file, is_video, list_frames
from ifdd_bench.data.collect import FATAL_PROBLEMS
from ifdd_bench.data.labels import NUM_FOLDS, classes_for
from ifdd_bench.data.readers import read_split, resolve_frame_source
from ifdd_bench.errors import ConfigError, DataError
from ifdd_bench.events import Progress, emit_progress

IMAGE_SCANS = ("header", "decode", "none")

_DFEW_NAMES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
_MAFW_NAMES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
               "helplessness", "disappointment")

#: official numbers (``ifdd-reference.md`` 12, ``literature.md`` 5, ``baselines.md`` 1):
#: per-fold (train, test) clip counts, total single-labelled clips and the class counts known per
#: (fold, split), keyed by class name so any label order compares.
OFFICIAL: dict[str, dict[str, Any]] = {
    "dfew": {
        "folds": {1: (9356, 2341), 2: (9356, 2341), 3: (9357, 2340), 4: (9358, 2339), 5: (9361, 2336)},
        "total": 11697,
        "class_totals": dict(zip(_DFEW_NAMES, (2445, 1894, 2669, 2173, 1469, 145, 902))),
        "class_counts": {
            (1, "train"): dict(zip(_DFEW_NAMES, (1956, 1515, 2135, 1738, 1175, 116, 721))),
            (1, "test"): dict(zip(_DFEW_NAMES, (489, 379, 534, 435, 294, 29, 181))),
        },
    },
    "ferv39k": {
        "folds": {1: (31088, 7847)},
        "total": 31088 + 7847,
        "class_totals": None,
        "class_counts": {
            (1, "train"): {"happy": 5854, "sad": 5523, "neutral": 7790, "angry": 5906, "surprise": 2502,
                           "disgust": 1833, "fear": 1680},
            (1, "test"): {"happy": 1473, "sad": 1393, "neutral": 1958, "angry": 1487, "surprise": 638,
                          "disgust": 467, "fear": 431},
        },
    },
    "mafw": {
        "folds": {1: (7333, 1839), 2: (7335, 1837), 3: (7339, 1833), 4: (7340, 1832), 5: (7341, 1831)},
        "total": 9172,
        "class_totals": dict(zip(_MAFW_NAMES, (1390, 639, 625, 1242, 1138, 1470, 1072, 236, 916, 262, 182))),
        "class_counts": {
            (1, "train"): dict(zip(_MAFW_NAMES, (1112, 511, 500, 993, 910, 1176, 857, 188, 732, 209, 145))),
        },
    },
}


@dataclass
class SplitRow:
    """One (fold, split) line of the report."""

    fold: int
    split: str
    clips: int | None  # None: the split file could not be read
    expected: int | None
    class_counts: list[int] | None
    expected_class_counts: list[int] | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def matches(self) -> bool | None:
        """Clip count (and class counts where known) equal the official ones; None if unknown."""
        if self.expected is None or self.clips is None:
            return None
        if self.clips != self.expected:
            return False
        return self.expected_class_counts is None or self.class_counts == self.expected_class_counts


@dataclass
class CheckReport:
    """Everything ``data check`` found; :attr:`ok` is False when training would break."""

    dataset: str
    root: str
    classes: tuple[str, ...]
    frame_source: str
    clip_len: int
    rows: list[SplitRow] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)  # fatal, by kind
    warnings: dict[str, list[str]] = field(default_factory=dict)  # documented rule applies, by kind
    unique_clips: int = 0
    expected_total: int | None = None
    frames_scanned: int = 0
    image_scan: str = "header"

    @property
    def ok(self) -> bool:
        """True when nothing would stop training."""
        return not any(self.problems.values())

    def add(self, bucket: dict[str, list[str]], kind: str, item: str) -> None:
        items = bucket.setdefault(kind, [])
        if item not in items:
            items.append(item)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``data check --json``)."""
        return {
            "dataset": self.dataset, "root": self.root, "classes": list(self.classes), "ok": self.ok,
            "frame_source": self.frame_source, "clip_len": self.clip_len, "image_scan": self.image_scan,
            "frames_scanned": self.frames_scanned, "unique_clips": self.unique_clips,
            "expected_total": self.expected_total,
            "rows": [{"fold": r.fold, "split": r.split, "clips": r.clips, "expected": r.expected,
                      "class_counts": r.class_counts, "expected_class_counts": r.expected_class_counts,
                      "counts": r.counts, "matches": r.matches} for r in self.rows],
            "problems": self.problems, "warnings": self.warnings,
        }


def _expected_classes(dataset: str, fold: int, split: str, classes: tuple[str, ...]) -> list[int] | None:
    table = OFFICIAL.get(dataset, {}).get("class_counts", {}).get((fold, split))
    if table is None:
        return None
    return [table.get(name, 0) for name in classes]


def check_dataset(dataset: str, root: Path | str, *, folds: list[int] | None = None, frame_source: str = "default",
                  label_order: str = "official", clip_len: int = 16, images: str = "header",
                  progress: Progress | None = None) -> CheckReport:
    """Validate ``root`` as ``dataset``; never raises for data problems (they go in the report).

    Example::

        report = check_dataset("dfew", "/data/DFEW")
        report.ok, report.rows[0].clips, report.problems.get("missing_clip", [])[:3]
    """
    if images not in IMAGE_SCANS:
        raise ConfigError(f"unknown image scan {images!r}; valid: {', '.join(IMAGE_SCANS)}")
    if dataset not in NUM_FOLDS:
        raise ConfigError(f"unknown dataset {dataset!r}; valid: {', '.join(NUM_FOLDS)}")
    root = Path(root).expanduser()
    source = resolve_frame_source(dataset, frame_source)
    folds = folds or list(range(1, NUM_FOLDS[dataset] + 1))
    report = CheckReport(dataset=dataset, root=str(root), classes=classes_for(dataset, label_order),
                         frame_source=source, clip_len=clip_len, image_scan=images)
    official = OFFICIAL.get(dataset)
    if not root.is_dir():
        report.add(report.problems, "missing_root", f"{root} is not a folder")
        return report
    sources: dict[str, tuple[str, int]] = {}
    short: dict[str, int] = {}
    for fold in folds:
        for split in ("train", "test"):
            try:
                recs = read_split(dataset, root, split, fold, frame_source=source, label_order=label_order,
                                  clip_len=clip_len, strict=False, progress=progress)
            except DataError as err:
                report.add(report.problems, getattr(err, "kind", "layout"), err.message)
                report.rows.append(SplitRow(fold, split, None, _expected(official, fold, split), None,
                                            _expected_classes(dataset, fold, split, report.classes)))
                continue
            for kind, items in recs.problems.items():
                bucket = report.problems if kind in FATAL_PROBLEMS else report.warnings
                for item in items:
                    report.add(bucket, kind, item)
            for rec in recs.records:
                sources[str(rec.source)] = (rec.clip_id, rec.num_frames)
                if rec.num_frames < clip_len:
                    short[rec.clip_id] = rec.num_frames
            report.rows.append(SplitRow(fold, split, len(recs), _expected(official, fold, split), recs.class_counts(),
                                        _expected_classes(dataset, fold, split, report.classes), dict(recs.counts)))
    report.unique_clips = len(sources)
    report.expected_total = None if official is None else official["total"]
    for clip_id, n in sorted(short.items()):
        report.add(report.warnings, "short_clip", f"clip {clip_id}: {n} frame(s) < {clip_len} (padded)")
    for row in report.rows:
        if row.matches is False:
            classes_differ = row.expected_class_counts is not None and row.class_counts != row.expected_class_counts
            report.add(report.warnings, "count_mismatch",
                       f"fold {row.fold} {row.split}: {row.clips} clips (official {row.expected})"
                       + ("; class counts differ" if classes_differ else ""))
    if images != "none":
        _scan_images(report, sources, images, progress)
    return report


def _expected(official: dict[str, Any] | None, fold: int, split: str) -> int | None:
    if official is None or fold not in official["folds"]:
        return None
    return official["folds"][fold][0 if split == "train" else 1]


# --------------------------------------------------------------------------------------------
# image scan


def frame_file_ok(path: Path) -> str | None:
    """Cheap integrity check of one frame file: ``None`` if plausible, else the reason."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(max(0, size - 32))
            tail = fh.read()
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        if head[:2] != b"\xff\xd8":
            return "not a JPEG (no start-of-image marker)"
        if b"\xff\xd9" not in tail:
            return "truncated JPEG (no end-of-image marker)"
    elif suffix == ".png":
        if head != b"\x89PNG\r\n\x1a\n":
            return "not a PNG (bad signature)"
        if b"IEND" not in tail:
            return "truncated PNG (no IEND chunk)"
    return None


def _scan_clip(source: str, mode: str) -> tuple[int, list[str], int]:
    """(frames scanned, bad-frame descriptions, total frames) of one clip folder."""
    folder = Path(source)
    if is_video(folder):
        return 0, [], 0
    try:
        frames = list_frames(folder)
    except OSError:
        return 0, [], 0
    bad = []
    for path in frames:
        if mode == "decode":
            try:
                decode_image_file(path, 16, "pil")
                reason = None
            except FrameDecodeError as err:
                reason = str(err).split(": ", 1)[-1]
        else:
            reason = frame_file_ok(path)
        if reason is not None:
            bad.append(f"{path}: {reason}")
    return len(frames), bad, len(frames)


def _scan_images(report: CheckReport, sources: dict[str, tuple[str, int]], mode: str,
                 progress: Progress | None) -> None:
    items = sorted(sources)
    threads = max(2, min(8, (os.cpu_count() or 1) * 2))
    with ThreadPoolExecutor(threads) as pool:
        for k, (source, (scanned, bad, total)) in enumerate(zip(items, pool.map(lambda s: _scan_clip(s, mode), items))):
            report.frames_scanned += scanned
            clip_id = sources[source][0]
            if bad and len(bad) == total:
                report.add(report.problems, "unreadable_clip", f"clip {clip_id}: none of its {total} frames "
                           f"can be read (e.g. {bad[0]})")
            else:
                for item in bad:
                    report.add(report.warnings, "unreadable_frame", item)
            if k % 128 == 0 or k == len(items) - 1:
                emit_progress(progress, f"scanning frames ({mode})", k + 1, len(items))
