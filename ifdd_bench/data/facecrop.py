"""``ifdd-bench data crop``: a folder of raw clips -> the face-crop frame folders the readers take.

::

    summary = crop_folder(Path("MAFW/data/clips"), Path("MAFW/data/faces"))
    summary.cropped, summary.failed      # ["00001", ...], {"00017": "no face found in ..."}

Every video file (``.mp4``, ``.avi`` ...) and every folder that directly holds image frames under
``input_dir`` is one clip; its face crop goes to ``out_dir/<path relative to input_dir without the
extension>/1.jpg .. N.jpg`` (:func:`ifdd_bench.data.faces.crop_clip`). ``clips/03747.mp4`` becomes
``faces/03747/``, the folder MAFW's reader reads with ``data.frame_source=faces``; DFEW's
``Clip/original/00001.mp4`` becomes ``Clip/clip_224x224/00001/`` (``data.frame_source=raw``).

* **Atomic per clip**: a clip's folder appears complete or not at all (written under a hidden name,
  then renamed).
* **Resumable**: a clip whose output folder exists is skipped, so a re-run (after Ctrl-C, or with
  more clips) only does what is missing. Clips that failed are tried again.
* **Clips without a face** (or with an unreadable video) are skipped and listed, in the summary and
  in ``out_dir/face_crop.json``; the settings, the detector and the per-clip detection counts are
  recorded there too, and a re-run with other settings into the same folder is refused.
* The command fails (exit 1) only when no clip could be cropped; real datasets have clips without a
  detectable face (DFEW left out 362 of its 12,059 single-labelled clips for that reason).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ifdd_bench.atomic import json_text, write_text_atomic
from ifdd_bench.data.decode import IMAGE_EXTS, is_video, list_frames
from ifdd_bench.data.faces import CropConfig, FaceDetector, crop_clip
from ifdd_bench.errors import ConfigError, DataError
from ifdd_bench.events import Progress, emit_progress

MANIFEST = "face_crop.json"


@dataclass
class CropFolderSummary:
    """What :func:`crop_folder` did."""

    input_dir: Path
    out_dir: Path
    total: int  # clips found under input_dir
    cropped: list[str] = field(default_factory=list)  # clips cropped by this call
    finished_before: list[str] = field(default_factory=list)  # clips whose folder already existed
    failed: dict[str, str] = field(default_factory=dict)  # clip -> why it was skipped
    manifest: Path | None = None

    @property
    def ok(self) -> bool:
        """False when clips were tried and none of them could be cropped."""
        return not self.failed or bool(self.cropped or self.finished_before)

    def as_dict(self) -> dict[str, Any]:
        return {"input_dir": str(self.input_dir), "out_dir": str(self.out_dir), "total": self.total,
                "cropped": self.cropped, "finished_before": self.finished_before, "failed": self.failed,
                "manifest": str(self.manifest) if self.manifest else None, "ok": self.ok}


def find_clips(input_dir: Path) -> dict[str, Path]:
    """Clips under ``input_dir``: ``{relative name without extension: video file or frame folder}``.

    A folder that directly holds image files is one clip (not searched further); hidden entries are
    ignored. Two sources with one name (``a.mp4`` and ``a.avi``) raise DataError.
    """
    clips: dict[str, Path] = {}
    clashes: list[str] = []

    def add(name: str, path: Path) -> None:
        if name in clips:
            clashes.append(f"{clips[name].name} and {path.name} ({name})")
        clips.setdefault(name, path)

    for dirpath, dirnames, filenames in os.walk(input_dir):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        visible = sorted(f for f in filenames if not f.startswith("."))
        if here != input_dir and any(os.path.splitext(f)[1].lower() in IMAGE_EXTS for f in visible):
            add(here.relative_to(input_dir).as_posix(), here)
            dirnames[:] = []
            continue
        for name in visible:
            path = here / name
            if is_video(path):
                add(path.relative_to(input_dir).with_suffix("").as_posix(), path)
    if clashes:
        raise DataError(f"{input_dir}: {len(clashes)} clip name(s) have two sources: "
                        f"{'; '.join(clashes[:5])}", hint="keep one source per clip name (their crops would share "
                                                          "one folder)")
    return dict(sorted(clips.items()))


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    hint = "delete it (the crop folders stay valid)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path} cannot be read: {err}", hint=hint) from None
    parts = ("settings", "detector", "clips")
    if not isinstance(manifest, dict) or any(not isinstance(manifest.get(k, {}), dict) for k in parts):
        raise DataError(f"{path} is not a face-crop manifest (an object with {', '.join(parts)} objects)", hint=hint)
    return manifest


def _check_settings(old: dict[str, Any], cfg: CropConfig, detector: str, manifest: Path) -> None:
    """A folder holds crops of one setting: refuse to add crops made differently."""
    if not old.get("clips"):
        return
    before = old.get("settings", {})
    differ = [k for k, v in cfg.settings().items() if k in before and before[k] != v]
    if old.get("detector", {}).get("detector") not in (None, detector):
        differ.append("detector")
    if differ:
        shown = ", ".join(f"{k}={before.get(k, old.get('detector', {}).get('detector'))!r}" for k in differ)
        raise ConfigError(f"{manifest.parent} holds crops made with {shown}; this call asks for "
                          + ", ".join(f"{k}={cfg.settings().get(k, detector)!r}" for k in differ),
                          hint="use the same settings to resume, or another --out-dir")


def _crop_one(source: Path, target: Path, cfg: CropConfig,
              detector: FaceDetector) -> tuple[dict[str, Any] | None, str | None]:
    """Crop one clip: ``(summary, None)`` or ``(None, why it failed)``."""
    for stale in target.parent.glob(f".{target.name}.partial-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return crop_clip(source, target, cfg, detector=detector).summary(), None
    except DataError as err:
        return None, err.message
    except OSError as err:  # e.g. a full disk or a folder that became read-only: this clip fails, not the run
        return None, f"cannot write {target}: {err.strerror or err}"


def crop_folder(input_dir: Path, out_dir: Path, cfg: CropConfig | None = None, *, workers: int = 1,
                progress: Progress | None = None) -> CropFolderSummary:
    """Crop the face of every clip under ``input_dir`` into ``out_dir`` (see the module docstring).

    ``workers > 1`` crops that many clips at once in threads (OpenCV single-threaded meanwhile).
    Progress comes as ``data_progress`` events (stage ``face crop``).
    """
    cfg = cfg or CropConfig()
    input_dir, out_dir = Path(input_dir).expanduser(), Path(out_dir).expanduser()
    if not input_dir.is_dir():
        raise DataError(f"input folder {input_dir} does not exist" if not input_dir.exists()
                        else f"{input_dir} is not a folder", hint="pass the folder that holds the raw videos")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out-dir {out_dir} is a file", hint="pass a folder (it is created if missing)")
    if out_dir.resolve().is_relative_to(input_dir.resolve()):
        raise ConfigError(f"the output folder {out_dir} is inside the input folder {input_dir}",
                          hint="its crops would be read as clips on the next run; choose a folder outside it")
    detector = FaceDetector()
    clips = find_clips(input_dir)
    if not clips:
        raise DataError(f"no video files or frame folders found under {input_dir}",
                        hint="videos: .mp4 .avi .mkv .mov .webm; frame folders: folders of .jpg/.png frames")
    manifest = out_dir / MANIFEST
    old = _read_manifest(manifest)
    _check_settings(old, cfg, detector.describe()["detector"], manifest)
    summary = CropFolderSummary(input_dir=input_dir, out_dir=out_dir, total=len(clips), manifest=manifest)
    stats: dict[str, Any] = dict(old.get("clips", {}))
    todo: list[str] = []
    for name in clips:
        target = out_dir / name
        if target.is_dir() and list_frames(target):
            summary.finished_before.append(name)
        elif target.exists():
            summary.failed[name] = f"{target} exists but holds no frames; remove it to crop this clip"
        else:
            todo.append(name)
    done = len(clips) - len(todo)
    emit_progress(progress, "face crop", done, len(clips))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the crop folder {out_dir}: {err.strerror or err}",
                        hint="choose a writable --out-dir") from None
    try:
        if workers == 1:
            results = ((name, _crop_one(clips[name], out_dir / name, cfg, detector)) for name in todo)
            done = _collect(results, summary, stats, progress, done, len(clips))
        else:
            done = _crop_threaded(todo, clips, out_dir, cfg, workers, summary, stats, progress, done)
    finally:  # also after Ctrl-C: the clips finished so far are recorded
        failed = {k: v for k, v in old.get("failed", {}).items() if k not in stats}  # not tried again yet
        failed.update(summary.failed)
        record = {"settings": cfg.settings(), "detector": detector.describe(),
                  "clips": dict(sorted(stats.items())), "failed": dict(sorted(failed.items()))}
        write_text_atomic(manifest, json_text(record))
    summary.cropped.sort()
    return summary


def _crop_threaded(todo: list[str], clips: dict[str, Path], out_dir: Path, cfg: CropConfig, workers: int,
                   summary: CropFolderSummary, stats: dict[str, Any], progress: Progress | None, done: int) -> int:
    """Crop ``todo`` in ``workers`` threads, each with its own detector, OpenCV itself single-threaded.

    Threads, not processes: decoding (PyAV), detection (OpenCV), resizing and JPEG encoding
    (Pillow) release the GIL, and threads neither pay for a fresh interpreter nor meet OpenCV's
    thread pool in a forked child.
    """
    import cv2

    local = threading.local()

    def work(name: str) -> tuple[dict[str, Any] | None, str | None]:
        if not hasattr(local, "detector"):
            local.detector = FaceDetector()
        return _crop_one(clips[name], out_dir / name, cfg, local.detector)

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(work, name): name for name in todo}
            try:
                return _collect(((futures[f], f.result()) for f in as_completed(futures)), summary, stats, progress,
                                done, len(clips))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        cv2.setNumThreads(before)


def _collect(results, summary: CropFolderSummary, stats: dict[str, Any], progress: Progress | None, done: int,
             total: int) -> int:
    for name, (clip_stats, error) in results:
        if error is None:
            summary.cropped.append(name)
            stats[name] = clip_stats
        else:
            summary.failed[name] = error
            stats.pop(name, None)
        done += 1
        emit_progress(progress, "face crop", done, total)
    return done
