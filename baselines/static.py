"""Static control: a frame classifier that sees every frame on its own and averages the T
per-frame predictions.

It has no access to temporal order or to differences between frames, so on SynthDFER (where the
label lives in the change of expression, not in any single frame) it marks what appearance alone
achieves: the reference point the benchmark is designed against. A cheap CNN (quarter-width
ResNet-10 at 64x64 by default) so it trains on a CPU in minutes.

Accepted input: any T >= 1 and side >= 16, not fixed at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from baselines.layers import ResNet2d, check_choice, check_clip, frames_of, input_norm, require
from baselines.weights import load_into
from ifdd_bench.registry import register_model

POOLS = ("logits", "probs")
ABLATIONS = {"full": {}, "probs": {"pool": "probs"}}


@dataclass(frozen=True)
class StaticConfig:
    """Per-frame CNN whose frame predictions are averaged."""

    num_classes: int = 7
    frames: int = 16  # T >= 1 (only recorded)
    img_size: int = 64  # side >= 16 (only recorded)
    widths: tuple[int, ...] = (16, 32, 64, 128)  # ResNet stage widths
    blocks: tuple[int, ...] = (1, 1, 1, 1)  # BasicBlocks per stage (ResNet-10)
    pool: str = "logits"  # logits -> mean of frame logits | probs -> log of the mean frame softmax
    dropout: float = 0.0  # before the frame classifier
    pretrained_path: str | None = None  # ResNet state dict of matching widths for the frame encoder
    normalize: str = "auto"  # auto (ImageNet stats only with pretrained_path) | none | imagenet | kinetics


class MeanLogits(nn.Module):
    """``(B, T, K)`` frame logits -> ``(B, K)`` by averaging logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class MeanProbs(nn.Module):
    """``(B, T, K)`` frame logits -> ``(B, K)`` log of the averaged frame probabilities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.softmax(dim=-1).mean(dim=1).clamp_min(1e-12).log()


class StaticControl(nn.Module):
    """Frame CNN -> per-frame logits -> average over frames."""

    def __init__(self, cfg: StaticConfig, name: str = "static_control"):
        super().__init__()
        self.cfg, self.name = cfg, name
        check_choice(name, "pool", cfg.pool, POOLS)
        require(cfg.frames >= 1, name, f"frames={cfg.frames} is not supported; allowed: >= 1")
        require(cfg.img_size >= 16, name, f"img_size={cfg.img_size} is not supported; allowed: >= 16")
        self.norm = input_norm(cfg.normalize, cfg.pretrained_path is not None, "imagenet", name)
        self.cnn = ResNet2d(cfg.widths, cfg.blocks)
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.cnn.out_dim, cfg.num_classes)
        self.pool = MeanLogits() if cfg.pool == "logits" else MeanProbs()
        self.pretrained_report = None
        if cfg.pretrained_path is not None:
            self.pretrained_report = load_into(self.cnn, cfg.pretrained_path, kind="resnet_state_dict",
                                               what=f"{name}'s ResNet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.name, None, None)
        b = x.shape[0]
        logits = self.fc(self.drop(self.cnn(frames_of(self.norm(x)))))  # (B*T, K)
        return self.pool(logits.reshape(b, -1, logits.shape[1]))  # (B, K)


# --------------------------------------------------------------------------------------------
# entry points


@register_model("static_control", config_cls=StaticConfig, ablations=ABLATIONS, family="static",
                description="static control: per-frame CNN, frame logits averaged (cannot use dynamics), 16x64")
def static_control(cfg: StaticConfig) -> nn.Module:
    return StaticControl(cfg, "static_control")
