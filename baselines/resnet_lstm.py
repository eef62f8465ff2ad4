"""ResNet18-LSTM, the CNN-RNN row of the DFEW paper's tables (baselines.md section 3).

A standard BasicBlock ResNet-18 encodes each frame to 512-d; a 1-layer LSTM (hidden 512) reads the
T vectors in order; the last step is classified. At 16x112x112, 7 classes: 13.28 M parameters and
7.78 GMACs (fvcore; it does not count the LSTM's 0.017 GMACs). This is our choice of the
standard network: the DFEW repository's class of that name is a Bottleneck/3-layer-LSTM variant.

Accepted input: any T >= 1 and side >= 16, not fixed at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from baselines.layers import LSTMHead, MeanHead, ResNet2d, check_clip, frames_of, input_norm, require
from baselines.weights import load_into
from ifdd_bench.registry import register_model


@dataclass(frozen=True)
class ResNetLSTMConfig:
    """Frame ResNet + LSTM; defaults are ResNet-18 + LSTM(512)."""

    num_classes: int = 7
    frames: int = 16  # T >= 1 (only recorded: the LSTM accepts any length)
    img_size: int = 112  # side >= 16 (only recorded)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # ResNet stage widths
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # BasicBlocks per stage
    lstm: bool = True  # True -> LSTM over frames; False -> temporal mean (order-blind control)
    lstm_hidden: int = 512  # LSTM hidden width
    lstm_layers: int = 1  # stacked LSTM layers
    dropout: float = 0.0  # before the classifier
    pretrained_path: str | None = None  # plain ResNet-18 state dict for the frame encoder (fc dropped)
    normalize: str = "auto"  # auto (ImageNet stats only with pretrained_path) | none | imagenet | kinetics


ABLATIONS = {"full": {}, "mean": {"lstm": False}}


class ResNetLSTM(nn.Module):
    """Per-frame ResNet -> LSTM over time -> last step -> linear."""

    def __init__(self, cfg: ResNetLSTMConfig, name: str = "resnet18_lstm"):
        super().__init__()
        self.cfg, self.name = cfg, name
        require(cfg.frames >= 1, name, f"frames={cfg.frames} is not supported; allowed: >= 1")
        require(cfg.img_size >= 16, name, f"img_size={cfg.img_size} is not supported; allowed: >= 16")
        require(cfg.lstm_layers >= 1 and cfg.lstm_hidden >= 1, name, "lstm_layers and lstm_hidden must be >= 1")
        self.norm = input_norm(cfg.normalize, cfg.pretrained_path is not None, "imagenet", name)
        self.cnn = ResNet2d(cfg.widths, cfg.blocks)
        dim = self.cnn.out_dim
        self.temporal: nn.Module = LSTMHead(dim, cfg.lstm_hidden, cfg.lstm_layers) if cfg.lstm else MeanHead(dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.temporal.out_dim, cfg.num_classes)
        self.pretrained_report = None
        if cfg.pretrained_path is not None:
            self.pretrained_report = load_into(self.cnn, cfg.pretrained_path, kind="resnet18_state_dict",
                                               what=f"{name}'s ResNet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.name, None, None)
        b = x.shape[0]
        f = self.cnn(frames_of(self.norm(x)))  # (B*T, 512)
        f = f.reshape(b, -1, f.shape[1])  # (B, T, 512)
        return self.fc(self.drop(self.temporal(f)))  # (B, K)


# --------------------------------------------------------------------------------------------
# entry points


@register_model("resnet18_lstm", config_cls=ResNetLSTMConfig, ablations=ABLATIONS, family="resnet_lstm",
                description="ResNet-18 frames + 1-layer LSTM(512), last step classified, 16x112")
def resnet18_lstm(cfg: ResNetLSTMConfig) -> nn.Module:
    return ResNetLSTM(cfg, "resnet18_lstm")


@register_model("resnet18_lstm_tiny", config_cls=ResNetLSTMConfig, ablations=ABLATIONS, family="resnet_lstm",
                defaults={"img_size": 64, "widths": (16, 32, 64, 128), "lstm_hidden": 128},
                description="ResNet18-LSTM, CPU geometry: quarter widths, LSTM(128), 16x64")
def resnet18_lstm_tiny(cfg: ResNetLSTMConfig) -> nn.Module:
    return ResNetLSTM(cfg, "resnet18_lstm_tiny")
