"""Readers for the official DFEW, FERV39k and MAFW layouts (and SynthDFER, written as DFEW).

``read_split(dataset, root, split, fold)`` returns a :class:`SplitRecords` for the official
``train`` or ``test`` list of a fold, with every clip's frame source resolved and its frames counted.
It dispatches per dataset: lists imported with ``data import`` (:mod:`ifdd_bench.data.lists`)
first, else the official layout below. Class orders, label words and fold counts come from
:mod:`ifdd_bench.data.labels`; clip resolution and problem collection from
:mod:`ifdd_bench.data.collect`.

Layouts accepted (spec ``ifdd-reference.md`` 12, ``literature.md`` 5):

* **DFEW**: ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` (also the renamed
  ``train_single-labeled`` / ``test_single-labeled`` / IFDD's ``val_single-labeled`` folders),
  header ``video_name,label``, labels 1..7 = Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear,
  rows with label 0 (not single-labelled) skipped and counted. Frames in
  ``Clip/clip_224x224_16f/<5-digit id>/`` (``frame_source="16f"``, default),
  ``Clip/clip_224x224/<id>/`` (``"raw"``, variable length) or the videos ``Clip/original/<id>.mp4``
  (``"video"``).
* **FERV39k**: ``4_setups/All_scenes/{train,test}_All.csv`` (or ``All_scenes/`` under the root; the
  test list may be called ``val_All.csv`` as in IFDD), no header, ``Scene/Emotion/clip Emotion``;
  frames under ``2_ClipsforFaceCrop/``. Labels mapped by name.
* **MAFW**: ``<...>/single/no_caption/set_{1..5}/{train,test}.txt`` (``Train & Test Set/``,
  ``split/``, ``anno/`` or IFDD's ``label/no_caption``; ``val.txt`` accepted for the test list),
  lines ``03747.mp4 anger``; frames in ``frames/<stem>/`` (``frame_source="frames"``, default) or
  ``faces/<stem>/`` (``"faces"``), or the videos ``clips/<name>`` (``"video"``). Labels mapped by
  name to the official 11-class order, or with ``label_order="dferclip"`` to DFER-CLIP's order
  (see :data:`ifdd_bench.data.labels.MAFW_OFFICIAL_TO_DFERCLIP`).

Rules for defects real datasets contain (counted in ``SplitRecords.counts``):

* ``label0_skipped``: DFEW rows with label 0.
* ``short_clips``: clips with fewer frames than the clip length; sampling pads them (segment and
  uniform: repeat the last frame; consecutive: the reference's frame-expansion rule).
* ``video_sources``: clips read from a video file because no frame folder exists.

Problems that break training (missing split file, malformed line, unknown label, missing clip
folder, zero-frame clip, empty split) raise :class:`DataError` naming the file/line/folder; with
``strict=False`` they are collected in ``SplitRecords.problems`` instead (``data check``).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Iterable

from ifdd_bench.data import lists
from ifdd_bench.data.collect import Collector, finish_split, resolve_clip
from ifdd_bench.data.labels import DFEW_CLASSES, NUM_FOLDS, classes_for, label_index
from ifdd_bench.data.records import ClipRecord, SplitRecords
from ifdd_bench.errors import ConfigError, DataError, suggest
from ifdd_bench.events import Progress, emit_progress

READ_SPLITS = ("train", "test")
FRAME_SOURCES = {
    "synth": ("16f", "raw"),
    "dfew": ("16f", "raw", "video"),
    "ferv39k": ("facecrop", "video"),
    "mafw": ("frames", "faces", "video"),
}
DEFAULT_FRAME_SOURCE = {"synth": "16f", "dfew": "16f", "ferv39k": "facecrop", "mafw": "frames"}


# --------------------------------------------------------------------------------------------
# layout helpers


def resolve_frame_source(dataset: str, frame_source: str) -> str:
    """``"default"`` -> the dataset's default frame source; unknown names raise ConfigError."""
    if frame_source == "default":
        return DEFAULT_FRAME_SOURCE[dataset]
    valid = FRAME_SOURCES[dataset]
    if frame_source not in valid:
        raise ConfigError(f"data.frame_source={frame_source!r} is not available for {dataset}"
                          f"{suggest(frame_source, valid)}; valid: default, {', '.join(valid)}")
    return frame_source


def _first_existing(candidates: Iterable[Path]) -> Path | None:
    for path in candidates:
        if path.exists():
            return path
    return None


def _tagged(kind: str, message: str, hint: str) -> DataError:
    """A DataError carrying the problem kind ``data check`` files it under."""
    err = DataError(message, hint=hint)
    err.kind = kind  # type: ignore[attr-defined]
    return err


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"data root {root} does not exist",
                        hint="pass --data-root (or data.data_root=) pointing at the dataset folder as shipped")
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder", hint="pass the dataset folder, not a file")


def _missing_split(dataset: str, split: str, fold: int, looked: list[Path], root: Path) -> DataError:
    rel = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in looked]
    tried = ", ".join(rel[:2]) + (f" and {len(rel) - 2} other spellings" if len(rel) > 2 else "")
    return _tagged("missing_split_file",
                   f"{dataset} {split} list for fold {fold} not found under {root} (looked for: {tried})",
                   hint=f"point --data-root at the {dataset.upper()} folder as its owners ship it "
                        "(or import your own lists with `ifdd-bench data import`)")


# --------------------------------------------------------------------------------------------
# DFEW (and SynthDFER)

_DFEW_SPLIT_DIRS = {
    "train": ("train(single-labeled)", "train_single-labeled", "train(single_labeled)", "train_single_labeled"),
    "test": ("test(single-labeled)", "test_single-labeled", "val_single-labeled", "test(single_labeled)",
             "test_single_labeled"),
}
_DFEW_FRAME_DIRS = {"16f": "clip_224x224_16f", "raw": "clip_224x224"}
_DFEW_ID = re.compile(r"(\d+)(?:\.\w+)?")


def read_dfew(root: Path, split: str, fold: int, *, frame_source: str = "16f", clip_len: int = 16,
              strict: bool = True, dataset: str = "dfew", progress: Progress | None = None) -> SplitRecords:
    """Read one official DFEW split CSV (1-based labels, label-0 rows skipped) and resolve its clips."""
    _check_root(root)
    split_root = root / "EmoLabel_DataSplit"
    looked = [split_root / d / f"set_{fold}.csv" for d in _DFEW_SPLIT_DIRS[split]]
    annotation = _first_existing(looked)
    if annotation is None:
        raise _missing_split(dataset, split, fold, looked, root)
    what = f"{dataset} fold {fold} {split} ({annotation})"
    collector = Collector(strict, what)
    rows = _parse_dfew_csv(annotation, collector)
    classes = DFEW_CLASSES
    records: list[ClipRecord] = []
    for k, (clip_num, label) in enumerate(rows):
        name = f"{clip_num:05d}"
        if frame_source == "video":
            frame_dir, stems = None, [root / "Clip" / "original" / name]
        else:
            frame_dir = root / "Clip" / _DFEW_FRAME_DIRS[frame_source] / name
            stems = [frame_dir]
        found = resolve_clip(frame_dir, stems, collector, f"clip {name} ({annotation.name})")
        if found is not None:
            records.append(ClipRecord(clip_id=name, source=found[0], label=label, num_frames=found[1]))
        if k % 256 == 0:
            emit_progress(progress, f"{dataset} fold {fold} {split}", k, len(rows))
    emit_progress(progress, f"{dataset} fold {fold} {split}", len(rows), len(rows))
    return finish_split(dataset, split, fold, classes, records, annotation, collector, clip_len)


def _parse_dfew_csv(path: Path, collector: Collector) -> list[tuple[int, int]]:
    """``(clip number, 0-based label)`` rows of a DFEW split CSV; label-0 rows counted and skipped."""
    rows: list[tuple[int, int]] = []
    seen_content = False
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            first = not seen_content
            seen_content = True
            if len(cells) < 2:
                collector.line_error("malformed_line", f"{path}:{lineno}: expected 'video_name,label', got "
                                     f"{','.join(row)!r}", "fix or delete that line")
                continue
            vid, lab = cells[-2], cells[-1]
            match = _DFEW_ID.fullmatch(vid)
            if first and not lab.lstrip("-").isdigit():
                continue  # header line
            if match is None or not lab.lstrip("-").isdigit():
                collector.line_error("malformed_line", f"{path}:{lineno}: expected an integer clip id and an "
                                     f"integer label, got {','.join(row)!r}", "fix or delete that line")
                continue
            label = int(lab)
            if label == 0:
                collector.count("label0_skipped")
                continue
            if not 1 <= label <= len(DFEW_CLASSES):
                collector.line_error("unknown_label", f"{path}:{lineno}: label {label} is outside 0..7 "
                                     "(1..7 = Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear)",
                                     "DFEW split files use the official 1-based labels")
                continue
            rows.append((int(match.group(1)), label - 1))
    return rows


# --------------------------------------------------------------------------------------------
# FERV39k

_FERV_SPLIT_DIRS = ("4_setups/All_scenes", "All_scenes", "4_setups/All_Scenes")


def read_ferv39k(root: Path, split: str, fold: int = 1, *, frame_source: str = "facecrop", clip_len: int = 16,
                 strict: bool = True, label_order: str = "official",
                 progress: Progress | None = None) -> SplitRecords:
    """Read ``{train,test}_All.csv`` (space-separated ``Scene/Emotion/clip Emotion``, no header)."""
    _check_root(root)
    if fold != 1:
        raise ConfigError(f"FERV39k has one official train/test split; data.fold must be 1, got {fold}")
    names = ("train_All.csv",) if split == "train" else ("test_All.csv", "val_All.csv")
    looked = [root / d / n for d in _FERV_SPLIT_DIRS for n in names]
    annotation = _first_existing(looked)
    if annotation is None:
        raise _missing_split("ferv39k", split, fold, looked, root)
    classes = classes_for("ferv39k", label_order)
    what = f"ferv39k {split} ({annotation})"
    collector = Collector(strict, what)
    frame_root = root / "2_ClipsforFaceCrop"
    if not frame_root.is_dir():
        frame_root = root
    rows = _parse_word_list(annotation, collector, classes, "Scene/Emotion/clip Emotion")
    records: list[ClipRecord] = []
    for k, (rel, label) in enumerate(rows):
        rel_path = Path(rel.strip("/"))
        clip_id = rel_path.as_posix()
        if frame_source == "video":
            frame_dir, stems = None, [root / "clips" / rel_path, frame_root / rel_path]
        else:
            frame_dir, stems = frame_root / rel_path, [frame_root / rel_path]
        found = resolve_clip(frame_dir, stems, collector, f"clip {clip_id} ({annotation.name})")
        if found is not None:
            records.append(ClipRecord(clip_id=clip_id, source=found[0], label=label, num_frames=found[1]))
        if k % 256 == 0:
            emit_progress(progress, f"ferv39k {split}", k, len(rows))
    emit_progress(progress, f"ferv39k {split}", len(rows), len(rows))
    return finish_split("ferv39k", split, 1, classes, records, annotation, collector, clip_len)


def _parse_word_list(path: Path, collector: Collector, classes: tuple[str, ...],
                     expected: str) -> list[tuple[str, int]]:
    """``(first field, class index)`` for whitespace-separated lines whose LAST field is a label word."""
    rows: list[tuple[str, int]] = []
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                collector.line_error("malformed_line", f"{path}:{lineno}: expected '{expected}', got {line.strip()!r}",
                                     "fix or delete that line")
                continue
            word = fields[-1]
            label = label_index(word, classes)
            if label is None:
                compound = "_" in word or "," in word
                hint = ("this looks like a compound (multi-label) list; use the single-label lists"
                        if compound else f"valid labels: {', '.join(classes)}")
                collector.line_error("unknown_label", f"{path}:{lineno}: unknown label {word!r}"
                                     f"{suggest(word.lower(), classes)}", hint)
                continue
            rows.append((" ".join(fields[:-1]) if len(fields) > 2 else fields[0], label))
    return rows


# --------------------------------------------------------------------------------------------
# MAFW

_MAFW_LIST_PARENTS = ("Train & Test Set/single/no_caption", "split/single/no_caption", "anno/single/no_caption",
                      "single/no_caption", "label/no_caption", "data/split/single/no_caption")


def _find_mafw_lists(root: Path) -> list[Path]:
    parents = [root / p for p in _MAFW_LIST_PARENTS]
    if not any(p.is_dir() for p in parents):  # shallow search for any .../single/no_caption
        for dirpath, dirnames, _ in os.walk(root):
            depth = Path(dirpath).relative_to(root).parts
            if len(depth) > 5:
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if d not in ("frames", "faces", "clips")]
            if Path(dirpath).name == "no_caption" and "single" in depth:
                parents.append(Path(dirpath))
    return parents


def read_mafw(root: Path, split: str, fold: int, *, frame_source: str = "frames", clip_len: int = 16,
              strict: bool = True, label_order: str = "official", progress: Progress | None = None) -> SplitRecords:
    """Read MAFW ``single/no_caption/set_k/{train,test}.txt`` (``03747.mp4 anger``) and resolve clips."""
    _check_root(root)
    names = ("train.txt",) if split == "train" else ("test.txt", "val.txt")
    looked = [parent / f"set_{fold}" / n for parent in _find_mafw_lists(root) for n in names]
    annotation = _first_existing(looked)
    if annotation is None:
        raise _missing_split("mafw", split, fold, looked, root)
    classes = classes_for("mafw", label_order)
    collector = Collector(strict, f"mafw fold {fold} {split} ({annotation})")
    rows = _parse_word_list(annotation, collector, classes, "03747.mp4 anger")
    frame_root = None
    if frame_source != "video":
        frame_root = _first_existing([root / frame_source, root / "data" / frame_source])
    video_roots = [root / "clips", root / "data" / "clips", root / "videos"]
    if frame_source != "video" and frame_root is None:
        raise _tagged("missing_frame_folder", f"mafw frame folder {frame_source!r} not found under {root} "
                        f"(looked for {frame_source}/ and data/{frame_source}/)",
                        hint="choose data.frame_source=frames|faces|video to match what you extracted")
    records: list[ClipRecord] = []
    for k, (name, label) in enumerate(rows):
        stem = name.split(".", 1)[0]
        frame_dir = None if frame_root is None else frame_root / stem
        stems = ([frame_root / stem] if frame_root is not None else []) + [v / stem for v in video_roots]
        found = resolve_clip(frame_dir, stems, collector, f"clip {name} ({annotation.name})")
        if found is not None:
            records.append(ClipRecord(clip_id=stem, source=found[0], label=label, num_frames=found[1]))
        if k % 256 == 0:
            emit_progress(progress, f"mafw fold {fold} {split}", k, len(rows))
    emit_progress(progress, f"mafw fold {fold} {split}", len(rows), len(rows))
    return finish_split("mafw", split, fold, classes, records, annotation, collector, clip_len)


# --------------------------------------------------------------------------------------------
# dispatch


def read_split(dataset: str, root: Path | str, split: str, fold: int, *, frame_source: str = "default",
               label_order: str = "official", clip_len: int = 16, strict: bool = True,
               progress: Progress | None = None) -> SplitRecords:
    """Read the official ``split`` (``train`` | ``test``) of ``fold`` of ``dataset`` under ``root``.

    Lists imported with ``ifdd-bench data import`` (``<root>/ifdd_splits/``) take precedence over
    the official files. ``clip_len`` is the number of frames a clip needs before padding (used to
    count ``short_clips``). With ``strict=False`` problems are collected in ``.problems``.

    Example::

        recs = read_split("dfew", "/data/DFEW", "train", 1)
        len(recs), recs.class_counts(), recs.counts   # 9356, [1956, ...], {"short_clips": 0}
    """
    root = Path(root).expanduser()
    if split not in READ_SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(READ_SPLITS)}")
    classes_for(dataset, label_order)  # validates both names
    source = resolve_frame_source(dataset, frame_source)
    if not 1 <= fold <= NUM_FOLDS[dataset]:
        if NUM_FOLDS[dataset] == 1:
            raise ConfigError(f"{dataset} has one official train/test split; data.fold must be 1, got {fold}")
        raise ConfigError(f"data.fold={fold} is out of range for {dataset} (1..{NUM_FOLDS[dataset]})")
    if lists.has_imported(root, fold):
        return lists.read_imported(root, dataset, split, fold, label_order=label_order, clip_len=clip_len,
                                   strict=strict, progress=progress)
    if dataset in ("dfew", "synth"):
        return read_dfew(root, split, fold, frame_source=source, clip_len=clip_len, strict=strict,
                         dataset=dataset, progress=progress)
    if dataset == "ferv39k":
        return read_ferv39k(root, split, fold, frame_source=source, clip_len=clip_len, strict=strict,
                            label_order=label_order, progress=progress)
    return read_mafw(root, split, fold, frame_source=source, clip_len=clip_len, strict=strict,
                     label_order=label_order, progress=progress)
