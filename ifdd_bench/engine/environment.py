"""The environment record of a run (``environment.json``): what produced the numbers.

Versions (Python, torch, torchvision, timm, numpy), platform, CPU and accelerator, git commit
(and whether the tree had local changes), the seeds, the SHA-256 of every weight file the model
config points to, the precision actually used and the data set description.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from dataclasses import fields, is_dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch

from ifdd_bench.hashing import sha256_file

_REPO_ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """``(commit sha, tree has uncommitted changes)`` of the source checkout; ``("unknown", False)``
    when not in a git checkout or git is missing."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return sha or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def git_sha() -> str:
    """Commit of the source checkout, suffixed ``+dirty`` when tracked files were modified."""
    sha, dirty = git_state()
    return f"{sha}+dirty" if dirty and sha != "unknown" else sha


def weight_files(model_cfg: Any) -> dict[str, str]:
    """``{field: sha256}`` for every string field of the model config naming an existing file
    (pretrained weights, text descriptors ...), shipped weights named by their builtin name
    (``pretrained="synth-pretext"``) included."""
    from ifdd_bench.models.pretrained import BUILTIN_WEIGHTS

    values: Mapping[str, Any]
    if is_dataclass(model_cfg):
        values = {f.name: getattr(model_cfg, f.name) for f in fields(model_cfg)}
    else:
        values = dict(model_cfg or {})
    out = {}
    for key, value in values.items():
        if isinstance(value, str) and value in BUILTIN_WEIGHTS:
            value = str(BUILTIN_WEIGHTS[value])
        if isinstance(value, str) and value and os.path.isfile(value):
            out[key] = f"{Path(value).resolve()} sha256:{sha256_file(value)}"
    return out


def device_description(device: torch.device) -> str:
    """Human-readable device name, e.g. ``"cuda:0 NVIDIA H100 80GB HBM3"`` or ``"cpu (x86_64, 2 cores)"``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def environment_record(*, device: torch.device, seeds: Mapping[str, Any], model_cfg: Any = None,
                       dataset_info: Mapping[str, Any] | None = None, world_size: int = 1,
                       precision: str = "fp32", notes: list[str] | None = None,
                       weights_loaded: Mapping[str, Any] | None = None) -> dict:
    """JSON-ready description of the software, hardware and inputs of a run; ``weights_loaded`` is
    what loading the initial weights reported (file, SHA-256, matched / missing / unexpected keys)."""
    import numpy
    import timm
    import torchvision

    sha, dirty = git_state()
    record = {
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device_description(device),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "world_size": world_size,
        "precision": precision,
        "git_sha": sha,
        "git_dirty": dirty,
        "command": " ".join(sys.argv),
        "seeds": dict(seeds),
        "weight_files": weight_files(model_cfg) if model_cfg is not None else {},
        "weights_loaded": dict(weights_loaded) if weights_loaded else None,
        "dataset": dict(dataset_info or {}),
        "notes": list(notes or []),
    }
    return record
