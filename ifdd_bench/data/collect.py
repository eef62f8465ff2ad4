"""Record collection shared by the official-layout readers and the list importers.

A reader (:mod:`ifdd_bench.data.readers`) or importer (:mod:`ifdd_bench.data.lists`) parses its
annotation file, then for each clip calls :func:`resolve_clip` (frames found and counted on disk,
or a video file) and ends with :func:`finish_split`, which counts short clips and returns the
:class:`SplitRecords`. A :class:`Collector` gathers the counts and problems of one read: strict
reads raise :class:`DataError` on a problem that would break training, non-strict reads
(``data check``) keep them in ``SplitRecords.problems``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ifdd_bench.data.decode import VIDEO_EXTS, count_video_frames, is_video, list_frames
from ifdd_bench.data.records import ClipRecord, SplitRecords
from ifdd_bench.errors import DataError

#: kinds of problem that would break training (``data check`` exits non-zero on any of them)
FATAL_PROBLEMS = ("missing_root", "missing_split_file", "missing_frame_folder", "layout", "malformed_line",
                  "unknown_label", "missing_clip", "zero_frames", "unreadable_video", "empty_split")

_MAX_LISTED = 5  # problems quoted in an error message before "... and N more"


class Collector:
    """Collects counts and problems of one split read; strict mode raises on fatal problems."""

    def __init__(self, strict: bool, what: str):
        self.strict = strict
        self.what = what
        self.counts: dict[str, int] = {}
        self.problems: dict[str, list[str]] = {}

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def line_error(self, kind: str, message: str, hint: str) -> None:
        """A problem in an annotation line: raise at once when strict (the first bad line names it)."""
        if self.strict:
            raise DataError(message, hint=hint)
        self.problems.setdefault(kind, []).append(message)

    def clip_problem(self, kind: str, item: str) -> None:
        """A problem with one clip: collected, raised together by :meth:`finish` when strict."""
        self.problems.setdefault(kind, []).append(item)

    def finish(self) -> None:
        if not self.strict:
            return
        hints = {
            "missing_clip": "check --data-root and data.frame_source, or run `ifdd-bench data check` "
                            "for the full list",
            "zero_frames": "re-extract those clips' frames or remove them from the split file",
            "unreadable_video": "re-download those videos or extract their frames",
            "empty_split": "check the split file",
        }
        for kind in ("missing_clip", "zero_frames", "unreadable_video", "empty_split"):
            items = self.problems.get(kind)
            if items:
                shown = "; ".join(items[:_MAX_LISTED])
                more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
                label = kind.replace("_", " ")
                raise DataError(f"{self.what}: {len(items)} {label} problem(s): {shown}{more}",
                                hint=hints[kind])


def resolve_clip(frame_dir: Path | None, video_stems: Iterable[Path], collector: Collector,
                 clip_label: str) -> tuple[Path, int] | None:
    """Find a clip's frames: the folder ``frame_dir`` or, failing that, a video file.

    ``video_stems`` are paths without extension (``clips/03747``) tried with each video
    extension. Returns ``(source, num_frames)`` or ``None`` after recording the problem.
    """
    frames = None
    if frame_dir is not None:
        try:
            frames = list_frames(frame_dir)
        except (FileNotFoundError, NotADirectoryError):
            frames = None
        if frames:
            return frame_dir, len(frames)
    video = _find_video(video_stems)
    if video is None:
        if frames == []:
            collector.clip_problem("zero_frames", f"{clip_label}: folder {frame_dir} has no image files")
        else:
            where = frame_dir if frame_dir is not None else next(iter(video_stems), None)
            collector.clip_problem("missing_clip", f"{clip_label}: {where} not found")
        return None
    try:
        n = count_video_frames(video)
    except DataError as err:
        collector.clip_problem("unreadable_video", f"{clip_label}: {err.message}")
        return None
    if n == 0:
        collector.clip_problem("zero_frames", f"{clip_label}: video {video} has no frames")
        return None
    collector.count("video_sources")
    return video, n


def _find_video(stems: Iterable[Path]) -> Path | None:
    for stem in stems:
        if is_video(stem) and stem.is_file():  # the path already names the video file
            return stem
        for ext in VIDEO_EXTS:
            for candidate in (stem.with_name(stem.name + ext), stem.with_name(stem.name + ext.upper())):
                if candidate.is_file():
                    return candidate
    return None


def finish_split(dataset: str, split: str, fold: int, classes: tuple[str, ...], records: list[ClipRecord],
                 annotation: Path, collector: Collector, clip_len: int) -> SplitRecords:
    """Count short clips, flag an empty split, raise collected problems (strict) and build the result."""
    short = sum(1 for r in records if r.num_frames < clip_len)
    if short:
        collector.count("short_clips", short)
    if not records and "empty_split" not in collector.problems:
        collector.clip_problem("empty_split", f"{annotation} lists no usable clip")
    collector.finish()
    return SplitRecords(dataset=dataset, split=split, fold=fold, classes=classes, records=records,
                        annotation_file=annotation, counts=dict(collector.counts),
                        problems={k: list(v) for k, v in collector.problems.items()})
