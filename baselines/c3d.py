"""C3D (Tran et al., ICCV 2015) as used by the DFEW paper's baselines (baselines.md section 3).

Eight 3x3x3 convolutions (64, 128, 256, 256, 512, 512, 512, 512) with ReLU, five max-pools
((1,2,2), then 2x2x2 four times, the last one padded (0,1,1)), then fc6 -> fc7 -> classifier with
dropout 0.5. At 16x112x112 the last map is 512 x 1 x 4 x 4 = 8192 features: 78.02 M parameters,
38.55 GMACs (fvcore, 7 classes).

Accepted input: T >= 16 and any side >= 16, fixed at construction; fc6's input width is derived
from ``frames`` and ``img_size`` (8192 only at the original 16 x 112). Shorter clips cannot pass
the four temporal poolings; the error says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from baselines.layers import check_clip, input_norm, require
from baselines.weights import load_into
from ifdd_bench.registry import register_model


@dataclass(frozen=True)
class C3DConfig:
    """C3D widths; defaults are the original network."""

    num_classes: int = 7
    frames: int = 16  # T >= 16; fixes fc6's input width together with img_size
    img_size: int = 112  # square side >= 16
    widths: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512, 512)  # conv1a, conv2a, conv3a/b, conv4a/b, conv5a/b
    fc_dim: int = 4096  # width of fc6 and fc7
    dropout: float = 0.5  # after fc6 and fc7
    pretrained_path: str | None = None  # state dict with conv1 ... conv5b / fc6 / fc7 names (fc8 dropped)
    normalize: str = "auto"  # auto (kinetics stats only with pretrained_path) | none | imagenet | kinetics


#: layer names of the widely used Sports-1M port, so its state dict loads by name
_CONV_NAMES = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
#: the pool after each block: (kernel = stride, padding)
_POOLS = (((1, 2, 2), (0, 0, 0)), ((2, 2, 2), (0, 0, 0)), ((2, 2, 2), (0, 0, 0)), ((2, 2, 2), (0, 0, 0)),
          ((2, 2, 2), (0, 1, 1)))


def pooled_shape(frames: int, size: int) -> tuple[int, int, int]:
    """``(T', H', W')`` of the last map for a ``frames x size x size`` input (3x3x3 convs keep sizes)."""
    t, h = frames, size
    for kernel, pad in _POOLS:
        t = (t + 2 * pad[0] - kernel[0]) // kernel[0] + 1
        h = (h + 2 * pad[1] - kernel[1]) // kernel[1] + 1
    return t, h, h


class C3D(nn.Module):
    """C3D: 8 conv3d layers in 5 blocks, 2 hidden fully connected layers, linear classifier."""

    def __init__(self, cfg: C3DConfig, name: str = "c3d"):
        super().__init__()
        self.cfg, self.name = cfg, name
        require(len(cfg.widths) == 8, name, f"widths needs 8 entries, got {len(cfg.widths)}")
        t, h, w = pooled_shape(cfg.frames, cfg.img_size)
        require(t >= 1, name, f"frames={cfg.frames} is not supported; allowed: >= 16 (four temporal 2x poolings)")
        require(cfg.img_size >= 16, name, f"img_size={cfg.img_size} is not supported; allowed: >= 16")
        self.norm = input_norm(cfg.normalize, cfg.pretrained_path is not None, "kinetics", name)
        in_ch = 3
        for conv_name, width in zip(_CONV_NAMES, cfg.widths):  # conv1, conv2, conv3a ... conv5b
            setattr(self, conv_name, nn.Conv3d(in_ch, width, 3, padding=1))
            in_ch = width
        for i, (kernel, pad) in enumerate(_POOLS, start=1):
            setattr(self, f"pool{i}", nn.MaxPool3d(kernel, stride=kernel, padding=pad))
        self.fc6 = nn.Linear(in_ch * t * h * w, cfg.fc_dim)
        self.fc7 = nn.Linear(cfg.fc_dim, cfg.fc_dim)
        self.fc8 = nn.Linear(cfg.fc_dim, cfg.num_classes)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(cfg.dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.pretrained_report = None
        if cfg.pretrained_path is not None:
            self.pretrained_report = load_into(self, cfg.pretrained_path, kind="c3d_state_dict", drop=("fc8.",),
                                               what=name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, S, S)`` -> last pooled map ``(B, 512, T/16, S/32 + 1, S/32 + 1)`` (1x4x4 at 16x112)."""
        x = self.pool1(self.relu(self.conv1(x)))  # (B, 64, T, S/2, S/2)
        x = self.pool2(self.relu(self.conv2(x)))  # (B, 128, T/2, S/4, S/4)
        x = self.pool3(self.relu(self.conv3b(self.relu(self.conv3a(x)))))  # (B, 256, T/4, S/8, S/8)
        x = self.pool4(self.relu(self.conv4b(self.relu(self.conv4a(x)))))  # (B, 512, T/8, S/16, S/16)
        return self.pool5(self.relu(self.conv5b(self.relu(self.conv5a(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.name, self.cfg.frames, self.cfg.img_size)
        f = self.features(self.norm(x)).flatten(1)  # (B, C5 * T' * H' * W'), 8192 at 16x112
        f = self.drop(self.relu(self.fc6(f)))  # (B, fc_dim)
        f = self.drop(self.relu(self.fc7(f)))  # (B, fc_dim)
        return self.fc8(f)  # (B, K)


# --------------------------------------------------------------------------------------------
# entry points


@register_model("c3d", config_cls=C3DConfig, family="c3d",
                description="C3D (ICCV'15) as in the DFEW baselines: 8 conv3d + fc 4096x2, 16x112")
def c3d(cfg: C3DConfig) -> nn.Module:
    return C3D(cfg, "c3d")


@register_model("c3d_tiny", config_cls=C3DConfig, family="c3d",
                defaults={"img_size": 64, "widths": (16, 32, 64, 64, 128, 128, 128, 128), "fc_dim": 512},
                description="C3D, CPU geometry: quarter widths, fc 512, 16x64")
def c3d_tiny(cfg: C3DConfig) -> nn.Module:
    return C3D(cfg, "c3d_tiny")
