"""Local pretrained weights: read a user-supplied file, match its keys, load, report, hash.

Nothing here downloads. A baseline config names a file with ``pretrained_path``; the family calls
:func:`load_into` (plain state dicts: torchvision, timm, Hara, ResNet-18) or :func:`timm_report`
(timm's own loader does the adapting). Both return a :class:`WeightReport` that is logged and
attached to the model as ``model.pretrained_report`` so the engine can write
``report.as_dict()`` (path, SHA-256, kind, key lists) into the run record.

Example::

    >>> report = load_into(model.cnn, "resnet18.pth", kind="resnet18", drop=("fc.",))
    >>> report.sha256[:12], len(report.matched), report.missing
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ifdd_bench.errors import CheckpointError
from ifdd_bench.hashing import sha256_file
from ifdd_bench.models.weight_report import WeightReport

log = logging.getLogger(__name__)

#: container keys under which checkpoints commonly keep the state dict
_CONTAINER_KEYS = ("state_dict", "model", "module", "net", "state_dict_ema", "model_state", "weights")
#: prefixes left by DataParallel / DDP / torch.compile wrappers
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def check_file(path: str | os.PathLike | None, key: str = "pretrained_path") -> Path:
    """The path as :class:`Path`; a missing file raises a :class:`CheckpointError` naming ``key``."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise CheckpointError(
            f"{key}={str(path)!r}: no such file. Weights are never downloaded; put the file there "
            f"or set {key}=none for random initialisation")
    return p


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weight file (``.pt/.pth/.bin`` or ``.safetensors``), unwrapped from common
    containers (``state_dict``, ``model`` ...) and with DataParallel / compile prefixes removed."""
    p = check_file(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure means "not a weight file"
        raise CheckpointError(f"pretrained_path={str(path)!r} is not a readable weight file ({err})") from None
    for _ in range(3):  # nested containers: {"model": {"state_dict": ...}}
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"pretrained_path={str(path)!r} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"pretrained_path={str(path)!r} holds no tensors (keys: {list(obj)[:8]})")
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _best_prefix(file_keys: Iterable[str], target_keys: set[str]) -> str:
    """The leading ``a.`` / ``a.b.`` prefix whose removal makes the most file keys hit the target."""
    file_keys = list(file_keys)
    candidates = {""}
    for k in file_keys:
        parts = k.split(".")
        for depth in (1, 2):
            if len(parts) > depth:
                candidates.add(".".join(parts[:depth]) + ".")

    def hits(prefix: str) -> int:
        return sum(1 for k in file_keys if k.startswith(prefix) and k[len(prefix):] in target_keys)

    return max(sorted(candidates), key=lambda p: (hits(p), -len(p)))


def compare(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, path: str, sha256: str,
            kind: str, drop: tuple[str, ...] = (), adapt: tuple[str, ...] = ()) -> tuple[WeightReport, dict]:
    """Match a file's tensors to a target state dict: returns the report and the loadable subset.

    ``drop``: file-key prefixes skipped on purpose (the classifier). ``adapt``: target names whose
    shape may differ because the loader resamples them (a ViT's ``pos_embed``).
    """
    prefix = _best_prefix(state, set(target))
    report = WeightReport(path=path, sha256=sha256, kind=kind, prefix=prefix)
    loadable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if any(name.startswith(d) for d in drop):
            report.dropped.append(name)
        elif name not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) == tuple(target[name].shape):
            report.matched.append(name)
            loadable[name] = value
        elif name in adapt:
            report.adapted.append(name)
        else:
            report.mismatched.append(f"{name}: file {tuple(value.shape)} vs model {tuple(target[name].shape)}")
    seen = set(loadable) | set(report.adapted) | {m.split(":")[0] for m in report.mismatched}
    report.missing = [k for k in target if k not in seen]
    return report, loadable


def check_fit(report: WeightReport, module_name: str, min_fraction: float) -> None:
    if report.mismatched or report.fraction < min_fraction:
        raise CheckpointError(
            f"pretrained_path={report.path!r} does not fit {module_name}: the file provides "
            f"{report.fraction:.0%} of its tensors (need {min_fraction:.0%}) with {len(report.mismatched)} "
            f"shape mismatches; is it the right architecture and width?\n{report.summary()}")


def log_report(report: WeightReport) -> None:
    """Log the key report: one summary line at WARNING when anything is missing/unexpected, else INFO."""
    level = logging.WARNING if (report.missing or report.unexpected) else logging.INFO
    log.log(level, "%s", report.summary())


def load_into(module: nn.Module, path: str | os.PathLike, *, kind: str, drop: tuple[str, ...] = ("fc.",),
              min_fraction: float = 0.9, what: str | None = None) -> WeightReport:
    """Load the matching tensors of ``path`` into ``module`` (non-strict) and report.

    Keys are matched after removing the best-fitting leading prefix (``backbone.``, ``resnet18.``
    ...). Shape mismatches, or a file providing less than ``min_fraction`` of the module's tensors,
    raise :class:`CheckpointError` showing the key report (a file of another architecture).
    """
    p = check_file(path)
    sha = sha256_file(p)
    report, loadable = compare(read_state_dict(p), module.state_dict(), path=str(path), sha256=sha,
                               kind=kind, drop=drop)
    check_fit(report, what or type(module).__name__, min_fraction)
    module.load_state_dict(loadable, strict=False)
    log_report(report)
    return report
