"""Per-clip ground truth of a written SynthDFER dataset (``clips.csv``) and its reader.

The split visualiser compares what a model separates with what the generator put in: for every
clip folder the label, identity, expression window (onset, apex, offset frame indices, 0-based)
and the per-frame emotion intensity (T floats; zeros for neutral, whose prototype is zero).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ifdd_bench.data.labels import DFEW_CLASSES
from ifdd_bench.errors import DataError

META_FILE = "synth.json"
TRUTH_FILE = "clips.csv"
TRUTH_COLUMNS = ("clip_id", "video_name", "label", "class", "source_clip", "identity", "fold", "role",
                 "biased", "bg_hue", "onset", "apex", "offset", "peak", "intensity")


@dataclass(frozen=True)
class ClipTruth:
    """What the generator put into one clip folder.

    ``label`` is 0-based (DFEW_CLASSES order, like ``ClipRecord.label``); the CSVs on disk hold
    ``label + 1``. ``role`` is ``both`` (listed in train and test CSVs), ``train`` (the
    context-biased copy, train CSVs only) or ``test`` (unbiased copy, test CSVs only).
    """

    clip_id: str  # 5-digit folder name
    label: int
    class_name: str
    source_clip: int  # generator index i; the two copies of a context-biased clip share it
    identity: int
    fold: int  # 1..5: the fold whose test list holds this clip (or its unbiased copy)
    role: str
    biased: bool  # background hue set from the label
    bg_hue: float
    onset: int
    apex: int
    offset: int
    peak: float
    intensity: tuple[float, ...]  # (T,)

    def to_row(self) -> dict[str, Any]:
        """CSV row (``label`` written 1-based, intensity space-separated)."""
        return {"clip_id": self.clip_id, "video_name": int(self.clip_id), "label": self.label + 1,
                "class": self.class_name, "source_clip": self.source_clip, "identity": self.identity,
                "fold": self.fold, "role": self.role, "biased": int(self.biased),
                "bg_hue": f"{self.bg_hue:.5f}", "onset": self.onset, "apex": self.apex, "offset": self.offset,
                "peak": f"{self.peak:.4f}", "intensity": " ".join(f"{x:.4f}" for x in self.intensity)}


class TruthTable(dict):
    """``{clip_id: ClipTruth}`` keyed by the 5-digit folder name; ``table[1]`` and ``table["1"]`` work too."""

    def __missing__(self, key: Any) -> ClipTruth:
        try:
            padded = f"{int(key):05d}"
        except (TypeError, ValueError):
            raise KeyError(key) from None
        if padded == key or padded not in self:
            raise KeyError(key)
        return self[padded]


def truth_csv_text(rows: list[ClipTruth]) -> str:
    """``clips.csv`` content for ``rows``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TRUTH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_row())
    return buf.getvalue()


def load_meta(root: str | Path) -> dict[str, Any]:
    """The ``synth.json`` of a SynthDFER root; :class:`DataError` if missing or unreadable."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: {root} is not a (complete) SynthDFER dataset",
                        hint="generate one with `ifdd-bench data synth --out-dir PATH`")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); regenerate the dataset") from None


def load_truth(root: str | Path) -> TruthTable:
    """Read the per-clip ground truth of a SynthDFER dataset written by ``generate``.

    Returns a :class:`TruthTable` mapping each 5-digit clip folder name to its :class:`ClipTruth`.
    """
    meta = load_meta(root)
    path = Path(root) / meta.get("truth_file", TRUTH_FILE)
    if not path.is_file():
        raise DataError(f"{path} not found (named by {Path(root) / META_FILE}); regenerate the dataset")
    table = TruthTable()
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(TRUTH_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: header lacks column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"]) - 1
                if not 0 <= label < len(DFEW_CLASSES):
                    raise ValueError(f"label {row['label']} outside 1..{len(DFEW_CLASSES)}")
                truth = ClipTruth(
                    clip_id=f"{int(row['clip_id']):05d}", label=label, class_name=DFEW_CLASSES[label],
                    source_clip=int(row["source_clip"]), identity=int(row["identity"]), fold=int(row["fold"]),
                    role=row["role"], biased=bool(int(row["biased"])), bg_hue=float(row["bg_hue"]),
                    onset=int(row["onset"]), apex=int(row["apex"]), offset=int(row["offset"]),
                    peak=float(row["peak"]), intensity=tuple(float(x) for x in row["intensity"].split()),
                )
            except (ValueError, IndexError, KeyError, TypeError) as err:
                raise DataError(f"{path}, line {line}: malformed row ({err}); regenerate the dataset") from None
            table[truth.clip_id] = truth
    return table
