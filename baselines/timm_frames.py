"""Any timm image model applied per frame, followed by a temporal head (baselines.md section 5).

``backbone`` is a timm model name (``resnet18``, ``vit_tiny_patch16_224``, ``efficientnet_b0``
...), built with ``num_classes=0`` so it returns one ``num_features`` vector per frame. An
optional linear projection (``t_dim``) narrows wide encoders. The temporal head is chosen by
``head``: ``mean`` (temporal average), ``tformer`` (cls token + learned positions + pre-norm
blocks, MLP ratio 2, cls output -> LayerNorm) or ``lstm`` (last step of a 1-layer LSTM).

Sizes at 16x112x112, 7 classes (fvcore): resnet18 + tformer 15.39 M / 7.85 GMACs, vit_tiny (at
112) + tformer 6.09 M / 4.39 GMACs.

Accepted input: any T >= 1 (``tformer`` fixes T at construction: T + 1 positions) and side >= 16;
fixed-size backbones (ViTs) are built at ``img_size``, which must be a multiple of their patch.

Local weights only: ``pretrained_path`` goes to timm through ``pretrained_cfg_overlay`` (timm drops
the classifier and resamples a ViT's position table); nothing is downloaded (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from baselines.layers import InputNorm, check_clip, frames_of, input_norm, require, temporal_head
from baselines.weights import check_file, check_fit, compare, log_report, read_state_dict
from ifdd_bench.errors import CheckpointError, ConfigError, suggest
from ifdd_bench.hashing import sha256_file
from ifdd_bench.models.weight_report import WeightReport
from ifdd_bench.registry import register_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never reach the network from here

import timm  # noqa: E402  (after the offline switch)
from timm.models import get_pretrained_cfg  # noqa: E402


@dataclass(frozen=True)
class TimmFramesConfig:
    """timm frame encoder + temporal head."""

    num_classes: int = 7
    frames: int = 16  # T >= 1; head=tformer sizes its positions by T + 1
    img_size: int = 112  # side >= 16; fixed-size backbones (ViT) are built at this size
    backbone: str = "resnet18"  # any timm model name, optionally with a .tag
    channels: tuple[int, ...] = ()  # () keeps the backbone's widths; e.g. 16,32,64,128 narrows a timm ResNet
    drop_path: float = 0.0  # stochastic depth inside the frame encoder (timm drop_path_rate)
    t_dim: int = 0  # 0 -> temporal width = backbone width; else a Linear projection to t_dim first
    head: str = "tformer"  # mean (temporal average) | tformer (transformer over frames) | lstm (last LSTM step)
    t_depth: int = 2  # tformer blocks
    t_heads: int = 0  # tformer heads; 0 -> t_dim / 64
    t_mlp_ratio: float = 2.0  # tformer MLP width / model width
    dropout: float = 0.1  # temporal head and classifier dropout
    pretrained_path: str | None = None  # timm checkpoint file (.pth/.bin/.safetensors/.npz) for the backbone
    normalize: str = "auto"  # auto (the checkpoint's mean/std only with pretrained_path) | none | imagenet | kinetics


ABLATIONS = {"full": {}, "mean": {"head": "mean"}, "lstm": {"head": "lstm"}}


def check_timm_name(name: str, model: str) -> str:
    """The architecture part of a timm name; unknown names raise with close suggestions."""
    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise ConfigError(f"{model}: backbone={name!r} is not a timm model{suggest(arch, timm.list_models(), n=5)}; "
                          f"list them with python -c 'import timm; print(timm.list_models(\"*resnet*\"))'")
    return arch


def _timm_kwargs(cfg: TimmFramesConfig, model: str, fixed_size: bool) -> dict:
    kwargs: dict = {"num_classes": 0}
    if fixed_size:
        kwargs["img_size"] = cfg.img_size
    if cfg.channels:
        kwargs.update(channels=tuple(cfg.channels), stem_width=cfg.channels[0])
    if cfg.drop_path > 0:
        kwargs["drop_path_rate"] = cfg.drop_path
    return kwargs


def _create(arch: str, kwargs: dict, model: str, **extra) -> nn.Module:
    try:
        return timm.create_model(arch, **kwargs, **extra)
    except TypeError as err:  # a knob this architecture does not take (channels on a ViT ...)
        raise ConfigError(f"{model}: timm model {arch!r} does not accept {sorted(set(kwargs) - {'num_classes', 'img_size'})} "
                          f"({err}); clear the channels / drop_path options for this backbone") from None


def load_timm_backbone(arch: str, kwargs: dict, path: str, model: str) -> tuple[nn.Module, WeightReport]:
    """Build ``arch`` from a local checkpoint via ``pretrained_cfg_overlay`` and report the keys.

    The file's keys are first compared with a randomly initialised copy; a file of another
    architecture raises :class:`CheckpointError` with the key report before timm sees it.
    """
    p = check_file(path)
    skeleton = _create(arch, kwargs, model)
    classifier = get_pretrained_cfg(arch).classifier or "fc"
    drops = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    report, _ = compare(read_state_dict(p), skeleton.state_dict(), path=str(path), sha256=sha256_file(p),
                        kind="timm", drop=tuple(d + "." for d in drops), adapt=("pos_embed",))
    check_fit(report, f"timm {arch}", 0.9)
    overlay = {"file": str(p), "custom_load": p.suffix == ".npz"}
    try:
        backbone = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f"timm could not load {str(path)!r} into {arch}: {err}\n{report.summary()}") from None
    log_report(report)
    return backbone, report


class TimmFrames(nn.Module):
    """timm encoder on each frame -> optional projection -> temporal head -> linear."""

    def __init__(self, cfg: TimmFramesConfig, name: str = "timm_frames"):
        super().__init__()
        self.cfg, self.name = cfg, name
        require(cfg.frames >= 1, name, f"frames={cfg.frames} is not supported; allowed: >= 1")
        require(cfg.img_size >= 16, name, f"img_size={cfg.img_size} is not supported; allowed: >= 16")
        arch = check_timm_name(cfg.backbone, name)
        pcfg = get_pretrained_cfg(arch)
        fixed_size = bool(pcfg is not None and pcfg.fixed_input_size)
        kwargs = _timm_kwargs(cfg, name, fixed_size)
        self.pretrained_report = None
        if cfg.pretrained_path is not None:
            self.backbone, self.pretrained_report = load_timm_backbone(arch, kwargs, cfg.pretrained_path, name)
        else:
            self.backbone = _create(arch, kwargs, name)
        patch = getattr(getattr(self.backbone, "patch_embed", None), "patch_size", None)
        if patch is not None:
            require(cfg.img_size % patch[0] == 0, name,
                    f"img_size={cfg.img_size} is not supported by {arch}; allowed: multiples of its patch size {patch[0]}")
        if cfg.normalize == "auto" and cfg.pretrained_path is not None and pcfg is not None:
            self.norm: nn.Module = InputNorm(pcfg.mean, pcfg.std)  # the checkpoint family's own statistics
        else:
            self.norm = input_norm(cfg.normalize, False, "imagenet", name)
        width = self.backbone.num_features
        self.proj: nn.Module = nn.Linear(width, cfg.t_dim) if cfg.t_dim > 0 else nn.Identity()
        dim = cfg.t_dim or width
        self.temporal = temporal_head(cfg.head, dim, cfg.frames, model=name, depth=cfg.t_depth, heads=cfg.t_heads,
                                      mlp_ratio=cfg.t_mlp_ratio, dropout=cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.temporal.out_dim, cfg.num_classes)
        self._frames = cfg.frames if cfg.head == "tformer" else None
        self._size = cfg.img_size if fixed_size else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.name, self._frames, self._size)
        b = x.shape[0]
        f = self.proj(self.backbone(frames_of(self.norm(x))))  # (B*T, D)
        f = f.reshape(b, -1, f.shape[1])  # (B, T, D)
        return self.fc(self.drop(self.temporal(f)))  # (B, K)


# --------------------------------------------------------------------------------------------
# entry points


@register_model("timm_frames", config_cls=TimmFramesConfig, ablations=ABLATIONS, family="timm_frames",
                description="timm resnet18 per frame + 2-layer temporal transformer (d512), 16x112")
def timm_frames(cfg: TimmFramesConfig) -> nn.Module:
    return TimmFrames(cfg, "timm_frames")


@register_model("timm_frames_tiny", config_cls=TimmFramesConfig, ablations=ABLATIONS, family="timm_frames",
                defaults={"img_size": 64, "channels": (16, 32, 64, 128)},
                description="timm resnet18 (quarter widths) per frame + temporal transformer, 16x64")
def timm_frames_tiny(cfg: TimmFramesConfig) -> nn.Module:
    return TimmFrames(cfg, "timm_frames_tiny")


@register_model("timm_vit_tiny", config_cls=TimmFramesConfig, ablations=ABLATIONS, family="timm_frames",
                defaults={"backbone": "vit_tiny_patch16_224"},
                description="timm ViT-Tiny/16 at 112 per frame + 2-layer temporal transformer (d192), 16x112")
def timm_vit_tiny(cfg: TimmFramesConfig) -> nn.Module:
    return TimmFrames(cfg, "timm_vit_tiny")
