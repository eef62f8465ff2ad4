"""torchvision's video ResNets (``r3d_18``, ``mc3_18``, ``r2plus1d_18``), used as-is from the
library (the DFEW repository's baselines; baselines.md section 3).

Built with ``weights=None`` and the task's class count. Optional Kinetics-400 weights come from a
local torchvision state dict (``pretrained_path``; ``fc.*`` dropped). At 16x112x112, 7 classes
(fvcore): r3d_18 33.17 M / 40.74 GMACs, mc3_18 11.49 M / 43.40, r2plus1d_18 31.30 M / 40.64.

Accepted input: any T >= 1 and side >= 16 (global pooling), not fixed at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import video as tv_video_models

from baselines.layers import check_choice, check_clip, input_norm, require
from baselines.weights import load_into
from ifdd_bench.registry import register_model

ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")


@dataclass(frozen=True)
class TvVideoConfig:
    """Which torchvision video ResNet, plus optional local weights."""

    num_classes: int = 7
    frames: int = 16  # T >= 1 (only recorded: global pooling accepts any length)
    img_size: int = 112  # side >= 16 (only recorded)
    arch: str = "r3d_18"  # r3d_18 | mc3_18 | r2plus1d_18
    dropout: float = 0.0  # before the classifier (torchvision has none)
    pretrained_path: str | None = None  # torchvision state dict, e.g. K400 r3d_18-b3b3357e.pth
    normalize: str = "auto"  # auto (K400 stats only with pretrained_path) | none | imagenet | kinetics


class TvVideo(nn.Module):
    """A torchvision video ResNet behind the shared ``(B, C, T, H, W)`` in [0, 1] interface."""

    def __init__(self, cfg: TvVideoConfig, name: str):
        super().__init__()
        self.cfg, self.name = cfg, name
        check_choice(name, "arch", cfg.arch, ARCHS)
        require(cfg.frames >= 1, name, f"frames={cfg.frames} is not supported; allowed: >= 1")
        require(cfg.img_size >= 16, name, f"img_size={cfg.img_size} is not supported; allowed: >= 16")
        self.norm = input_norm(cfg.normalize, cfg.pretrained_path is not None, "kinetics", name)
        self.net = getattr(tv_video_models, cfg.arch)(weights=None, num_classes=cfg.num_classes)
        if cfg.dropout > 0:
            self.net.fc = nn.Sequential(nn.Dropout(cfg.dropout), self.net.fc)
        self.pretrained_report = None
        if cfg.pretrained_path is not None:
            self.pretrained_report = load_into(self.net, cfg.pretrained_path, kind="torchvision_state_dict",
                                               drop=("fc.",), what=f"torchvision {cfg.arch}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.name, None, None)
        return self.net(self.norm(x))  # (B, K)


# --------------------------------------------------------------------------------------------
# entry points


@register_model("r3d_18", config_cls=TvVideoConfig, defaults={"arch": "r3d_18"}, family="tv_video",
                description="torchvision r3d_18 (3D ResNet-18 without stem pool), 16x112")
def r3d_18(cfg: TvVideoConfig) -> nn.Module:
    return TvVideo(cfg, "r3d_18")


@register_model("mc3_18", config_cls=TvVideoConfig, defaults={"arch": "mc3_18"}, family="tv_video",
                description="torchvision mc3_18 (mixed 3D/2D convolutions), 16x112")
def mc3_18(cfg: TvVideoConfig) -> nn.Module:
    return TvVideo(cfg, "mc3_18")


@register_model("r2plus1d_18", config_cls=TvVideoConfig, defaults={"arch": "r2plus1d_18"}, family="tv_video",
                description="torchvision r2plus1d_18 ((2+1)D factorised convolutions), 16x112")
def r2plus1d_18(cfg: TvVideoConfig) -> nn.Module:
    return TvVideo(cfg, "r2plus1d_18")
