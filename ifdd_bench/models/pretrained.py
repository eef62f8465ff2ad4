"""Initialise IFDD's embedding and backbone from a local file: torchvision's Kinetics-400
``mvit_v2_s`` state dict (spec 4.4, A1), or a pretext weight file written by ``ifdd-bench run
pretrain`` (:data:`PRETEXT_FORMAT`; the shipped ``synth-pretext`` file is one).

:func:`load_pretrained` tells the two apart by the file's ``format`` field.

Nothing is ever downloaded: the caller passes the path of a file saved with
``torch.save(torchvision.models.video.mvit_v2_s(weights=...).state_dict(), path)`` (or a
checkpoint dict holding such a state dict under ``"state_dict"`` / ``"model"``).

Mapping (the authors' loading helpers, which the published runs never call):

* ``conv_proj.*``            -> ``embed.proj.*``
* ``pos_encoding.class_token`` -> ``backbone.cls_token``
* MViTv2-S blocks 0-7        -> our blocks 0-7 (same geometry)
* MViTv2-S blocks 14, 15     -> our blocks 8, 9 (the stage-3 blocks); S blocks 8-13 are unused
* ``norm.*``                 -> ``backbone.norm.*``; the K400 ``head`` is skipped.

Inside a block torchvision's names differ from ours only in a few places
(``attn.project.0`` -> ``attn.project``, ``pool_*.pool`` -> ``pool_*.conv``,
``pool_*.norm_act.0`` -> ``pool_*.norm``, ``mlp.3`` -> ``mlp.2``). The load is non-strict: the
returned :class:`~ifdd_bench.models.weight_report.WeightReport` lists matched keys, model keys left at their initialisation
(pyramid, ISSM, LADM, head), unused file keys and shape mismatches (e.g. at ``ifdd_tiny`` size),
plus the file's SHA-256 for the run record.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ifdd_bench.errors import CheckpointError
from ifdd_bench.hashing import sha256_file
from ifdd_bench.models.weight_report import WeightReport

log = logging.getLogger(__name__)

PRETEXT_FORMAT = "ifdd-bench-pretext/1"
#: config fields a pretext weight file must share with the model that loads it (backbone geometry)
GEOMETRY_KEYS = ("frames", "img_size", "in_chans", "input_norm", "embed_kernel", "patch_stride", "widths",
                 "depths", "heads", "kv_strides", "mlp_ratio", "taps")
#: names accepted by ``IFDDConfig.pretrained`` besides a path: weight files shipped in the package
BUILTIN_WEIGHTS = {"synth-pretext": Path(__file__).parent / "weights" / "ifdd_tiny_synth_mvm.pt"}

#: MViTv2-S block index -> IFDD (MFViT_XS) block index
BLOCK_MAP = {**{i: i for i in range(8)}, 14: 8, 15: 9}
_INNER_RENAMES = (
    (re.compile(r"^attn\.project\.0\."), "attn.project."),
    (re.compile(r"^attn\.(pool_[qkv])\.pool\."), r"attn.\1.conv."),
    (re.compile(r"^attn\.(pool_[qkv])\.norm_act\.0\."), r"attn.\1.norm."),
    (re.compile(r"^mlp\.3\."), "mlp.2."),
)


def map_key(key: str) -> str | None:
    """Our parameter name for a torchvision ``mvit_v2_s`` key, or None when it has no place."""
    if key.startswith("conv_proj."):
        return "embed.proj." + key[len("conv_proj."):]
    if key == "pos_encoding.class_token":
        return "backbone.cls_token"
    if key.startswith("norm."):
        return "backbone." + key
    m = re.match(r"^blocks\.(\d+)\.(.+)$", key)
    if m is None or int(m.group(1)) not in BLOCK_MAP:
        return None
    inner = m.group(2)
    for pattern, repl in _INNER_RENAMES:
        inner = pattern.sub(repl, inner)
    return f"backbone.blocks.{BLOCK_MAP[int(m.group(1))]}.{inner}"


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    obj = _read_file(path)
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"pretrained file {str(path)!r} holds no state dict of tensors")
    return obj


def load_k400_mvit_v2_s(model: nn.Module, path: str | Path) -> WeightReport:
    """Copy the matching tensors of a local K400 ``mvit_v2_s`` state dict into an IFDD model.

    Non-strict: keys that do not map, or map to a tensor of another shape, are reported and
    skipped. Logs the report at INFO level and returns it.
    """
    path = Path(path)
    source = _read_state_dict(path)
    report = WeightReport(path=str(path), sha256=sha256_file(path), kind="k400_mvit_v2_s")
    target = model.state_dict()
    update: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        ours = map_key(key)
        if ours is None or ours not in target:
            report.unexpected.append(key)
        elif tuple(target[ours].shape) != tuple(value.shape):
            report.mismatched.append(f"{key}: {tuple(value.shape)} vs {ours}: {tuple(target[ours].shape)}")
        else:
            update[ours] = value
    report.matched = sorted(update)
    report.missing = sorted(set(target) - set(update))
    with torch.no_grad():
        for key, value in update.items():
            target[key].copy_(value.to(target[key].dtype))
    log.info("%s", report.summary())
    return report


def backbone_geometry(cfg: object) -> dict:
    """The backbone-defining fields of an IFDD config (:data:`GEOMETRY_KEYS`; tuples as lists)."""
    out = {}
    for key in GEOMETRY_KEYS:
        value = getattr(cfg, key)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def resolve_weights(name_or_path: str | Path) -> Path:
    """Path of a :data:`BUILTIN_WEIGHTS` name, or the given path."""
    builtin = BUILTIN_WEIGHTS.get(str(name_or_path))
    if builtin is not None and not builtin.is_file():
        raise CheckpointError(f"the shipped weight file {str(name_or_path)!r} is missing ({builtin})",
                              hint="reinstall ifdd-bench, or re-create it with `ifdd-bench run pretrain --out "
                                   f"{builtin}`")
    return builtin if builtin is not None else Path(name_or_path)


def _read_file(path: Path) -> object:
    if not path.is_file():
        raise CheckpointError(f"pretrained file {str(path)!r} does not exist; give a local torchvision "
                              f"mvit_v2_s state-dict file, a `run pretrain` weight file, or one of "
                              f"{', '.join(BUILTIN_WEIGHTS)} (nothing is downloaded)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types
        raise CheckpointError(f"pretrained file {str(path)!r} cannot be read as a torch state dict: {err}") from None


def load_pretrained(model: nn.Module, name_or_path: str | Path) -> WeightReport:
    """Initialise ``model`` from a pretext weight file (strict) or a K400 state dict (non-strict)."""
    path = resolve_weights(name_or_path)
    obj = _read_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == PRETEXT_FORMAT:
        return load_pretext_backbone(model, path, obj)
    return load_k400_mvit_v2_s(model, path)


def load_pretext_backbone(model: nn.Module, path: str | Path, obj: Mapping | None = None) -> WeightReport:
    """Copy a pretext file's embedding + backbone into ``model``; every other key stays as initialised.

    Strict where it matters: the file's backbone geometry must equal the model's, and every
    ``embed.*`` / ``backbone.*`` tensor of the model must be in the file with its shape, otherwise
    :class:`CheckpointError` names the first differences.
    """
    path = Path(path)
    obj = _read_file(path) if obj is None else obj
    if not isinstance(obj, Mapping) or obj.get("format") != PRETEXT_FORMAT:
        raise CheckpointError(f"{path} is not a pretext weight file (format {PRETEXT_FORMAT})")
    want, have = backbone_geometry(model.cfg), obj.get("geometry", {})
    differ = [f"{k}: file {have.get(k)!r} vs model {want[k]!r}" for k in want if have.get(k) != want[k]]
    if differ:
        made_for = ", ".join(f"{k}={have.get(k)}" for k in ("frames", "img_size"))
        raise CheckpointError(f"pretext weights {path} were trained for another backbone ({'; '.join(differ[:4])})",
                              hint=f"use the geometry they were made for ({obj.get('model')}, {made_for}), train "
                                   "from scratch (e.g. --model ifdd_tiny), or pre-train for this geometry with "
                                   "`ifdd-bench run pretrain`")
    source, target = obj["state_dict"], model.state_dict()
    report = WeightReport(path=str(path), sha256=sha256_file(path), kind="ifdd_pretext")
    wanted = [k for k in target if k.startswith(("embed.", "backbone."))]
    absent = [k for k in wanted if k not in source]
    report.mismatched = [f"{k}: {tuple(source[k].shape)} vs {tuple(target[k].shape)}" for k in wanted
                         if k in source and tuple(source[k].shape) != tuple(target[k].shape)]
    report.unexpected = sorted(k for k in source if k not in target)
    if absent or report.mismatched or report.unexpected:
        raise CheckpointError(f"pretext weights {path} do not fit this model: missing {absent[:4]}, "
                              f"shape mismatches {report.mismatched[:4]}, unknown keys {report.unexpected[:4]}")
    with torch.no_grad():
        for key in wanted:
            target[key].copy_(source[key].to(target[key].dtype))
    report.matched = sorted(wanted)
    report.missing = sorted(set(target) - set(wanted))
    log.info("%s", report.summary())
    return report
