"""Plain records shared by every dataset reader, the list importers and the engine.

A reader turns an official annotation layout into a list of :class:`ClipRecord` per split (helpers
in :mod:`ifdd_bench.data.collect`); the clip dataset turns records into tensors. Class orders live
in :mod:`ifdd_bench.data.labels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ClipRecord:
    """One annotated clip on disk.

    ``source`` is a folder of frame images or a video file; ``num_frames`` is the number of
    frames found there (0 if not counted yet); ``label`` is the 0-based class index.
    """

    clip_id: str
    source: Path
    label: int
    num_frames: int = 0


@dataclass
class SplitRecords:
    """The clips of one split of one fold, with the class names and what the reader noticed."""

    dataset: str
    split: str  # train | val | test
    fold: int
    classes: tuple[str, ...]
    records: list[ClipRecord]
    annotation_file: Path | None = None
    #: documented defect rules applied while reading, e.g. {"label0_skipped": 12, "short_clips": 3}
    counts: dict[str, int] = field(default_factory=dict)
    #: problems that would break training, by kind (``missing_clip``, ``zero_frames``, ``unknown_label``,
    #: ``malformed_line`` ...), each a list of human-readable items naming the file/line or folder.
    #: Filled only by non-strict reads (``data check``); strict reads raise DataError instead.
    problems: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def class_counts(self) -> list[int]:
        """Number of clips per class index."""
        out = [0] * len(self.classes)
        for rec in self.records:
            out[rec.label] += 1
        return out
