"""Checkpoints: atomic writes, safe loading, the run identity and the compatibility check before
resuming, and rebuilding a model from a checkpoint (the one loader predict, eval and capture use).

A checkpoint is a plain dict of tensors and Python primitives (loadable with
``torch.load(weights_only=True)``, so opening one never runs pickled code):

``format, kind ("last" | "best"), run_id, model, variant, model_config, data_config,
train_config, protocol, train_hash, classes, epoch (last finished, 0-based), model_state,
optimizer_state, scheduler_state, scaler_state, rng, best, history, torch_version, saved_at``

``best.pt`` carries everything except optimizer/scheduler/scaler state. The configs are enough to
rebuild the model: :func:`load_model` does so (``build_for_checkpoint`` + the weights, eval mode)::

    model, ckpt = load_model("runs/ifdd_tiny-full-synth-f1-s0-unified-1a2b3c4d")   # its best.pt

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then moved over the
old file with ``os.replace``; a failure at any point (full disk, SIGKILL) leaves the previous file
untouched.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ifdd_bench.atomic import atomic_open, write_text_atomic
from ifdd_bench.config import RunSpec, data_identity, to_dict, train_hash
from ifdd_bench.errors import CheckpointError
from ifdd_bench.registry import build_for_checkpoint

FORMAT = "ifdd-bench-checkpoint/1"

#: a run folder's checkpoints (the folder's other files: runfiles.py)
LAST = "last.pt"
BEST = "best.pt"

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


def run_identity(spec: RunSpec, model_cfg: Any) -> dict:
    """The :data:`RESUME_KEYS` of ``spec`` with its resolved model config: what a checkpoint must
    share with the run that resumes from it."""
    data = data_identity(spec.data)
    return {"model": spec.model, "variant": spec.variant, "protocol": spec.train.protocol,
            "train_hash": train_hash(spec.train), "model_config": to_dict(model_cfg), "data_config": data}


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


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file itself, or a run folder's ``best.pt`` (``last.pt`` while training has not
    selected an epoch yet); neither raises :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"run folder {path} holds no {BEST} or {LAST}",
                              hint="train the run first (ifdd-bench run train ...) or pass a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_model(checkpoint: str | os.PathLike, device: torch.device | str = "cpu", *,
               accept: Callable[[dict, Path], None] | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model stored in a checkpoint file or run folder, in eval mode on ``device``.

    Returns ``(model, checkpoint dict)``; the dict gains ``"path"``, the file that was read.
    ``accept(ckpt, path)`` may reject the checkpoint (raise :class:`CheckpointError`) before the
    model is built. The model is built from the stored config without its initial-weight files
    (``registry.build_for_checkpoint``); weights that do not fit it raise :class:`CheckpointError`.
    """
    path = resolve_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    if accept is not None:
        accept(ckpt, path)
    for key in ("model", "model_config", "model_state", "classes", "data_config"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}; it cannot rebuild its model")
    try:
        model = build_for_checkpoint(ckpt["model"], ckpt["model_config"])
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} does not match model {ckpt['model']!r}: {err}") from None
    model.to(device).eval()
    ckpt["path"] = str(path)
    return model, ckpt
