"""Checkpoints: atomic writes, safe loading, and the compatibility check before resuming.

A checkpoint is a plain dict of tensors and Python primitives (loadable with
``torch.load(weights_only=True)``, so opening one never runs pickled code):

``format, kind ("last" | "best"), run_id, model, variant, model_config, data_config,
train_config, protocol, train_hash, classes, epoch (last finished, 0-based), model_state,
optimizer_state, scheduler_state, scaler_state, rng, best, history, torch_version, saved_at``

``best.pt`` carries everything except optimizer/scheduler/scaler state. The configs are enough to
rebuild the model: :func:`ifdd_bench.registry.build_from_config(ckpt["model"], ckpt["model_config"])`.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then moved over the
old file with ``os.replace``; a failure at any point (full disk, SIGKILL) leaves the previous file
untouched.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ifdd_bench.atomic import atomic_open, write_text_atomic
from ifdd_bench.errors import CheckpointError

FORMAT = "ifdd-bench-checkpoint/1"

#: keys whose values must agree between a checkpoint and the run that resumes from it
RESUME_KEYS = ("model", "variant", "protocol", "train_hash", "model_config", "data_config")


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically; a failed write raises :class:`CheckpointError`
    and leaves any existing file at ``path`` unchanged."""
    path = Path(path)
    try:
        with atomic_open(path, "wb", fsync=True) as fh:
            torch.save(obj, fh)
    except OSError as err:
        kept = " (the previous checkpoint is intact)" if path.exists() else ""
        reason = "disk full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        unwritable = err.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}{kept}",
                              hint="check that the runs folder is writable or choose another --runs-dir"
                              if unwritable else
                              "free disk space or choose another --runs-dir, then re-run to resume") from None


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    """Load an ifdd-bench checkpoint; a missing, unreadable or foreign file raises
    :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several unpickling errors
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})",
                              hint="the file is damaged or was not written by ifdd-bench") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ifdd-bench checkpoint (expected format {FORMAT})")
    return ckpt


def check_resumable(ckpt: Mapping[str, Any], expected: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` when ``ckpt`` was written by a different run setup.

    ``expected`` holds the :data:`RESUME_KEYS` of the run about to resume. The message names
    every differing key (and, for configs, the differing fields).
    """
    problems = []
    for key in RESUME_KEYS:
        have, want = ckpt.get(key), expected.get(key)
        if have == want:
            continue
        if isinstance(have, Mapping) and isinstance(want, Mapping):
            fields = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            detail = ", ".join(f"{k}: {have.get(k)!r} in checkpoint vs {want.get(k)!r} now" for k in fields)
            problems.append(f"{key} differs ({detail})")
        else:
            problems.append(f"{key}: {have!r} in checkpoint vs {want!r} now")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} belongs to a different run: " + "; ".join(problems),
            hint="re-run with the original settings to resume, pass --restart to train this run from "
                 "scratch, or use another --runs-dir",
        )


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a small text file atomically (temp file + ``os.replace``); failures raise
    :class:`CheckpointError` naming the file, and the old file stays."""
    try:
        write_text_atomic(path, text, fsync=True)
    except OSError as err:
        raise CheckpointError(f"cannot write {path}: {err.strerror or err}",
                              hint="free disk space or choose another --runs-dir, then re-run to resume") from None
