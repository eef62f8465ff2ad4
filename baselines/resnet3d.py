"""3D ResNet-18 in the form of Hara et al. (CVPR 2018), the DFEW paper's "3D ResNet-18" row
(baselines.md section 3).

Stem: 7x7x7 convolution with stride (1, 2, 2), BN, ReLU, then a 3x3x3 max-pool with stride 2 in
all three dimensions (this pool is what torchvision's ``r3d_18`` lacks: 5x fewer MACs here).
Four stages of 3x3x3 BasicBlocks [2, 2, 2, 2] with widths 64..512, stride 2 from stage 2 on, 1x1x1
convolution + BN shortcuts; global average pool; linear classifier. At 16x112x112 and 7 classes:
33.21 M parameters, 8.32 GMACs (fvcore).

Parameter names (``conv1``, ``bn1``, ``layer1.0.conv1`` ..., ``fc``) follow Hara's release, so
its state dicts load with ``pretrained_path`` (``fc.*`` dropped).

Accepted input: any T >= 1 and side >= 16 (global pooling), not fixed at construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from baselines.layers import check_clip, input_norm, require
from baselines.weights import load_into
from ifdd_bench.registry import register_model


@dataclass(frozen=True)
class ResNet3dConfig:
    """Hara-style 3D ResNet; defaults are 3D ResNet-18."""

    num_classes: int = 7
    frames: int = 16  # T >= 1 (only recorded: global pooling accepts any length)
    img_size: int = 112  # side >= 16 (only recorded)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # stage widths
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # BasicBlocks per stage (ResNet-18)
    stem_pool: bool = True  # True -> Hara's 3x3x3/2 max-pool after the stem; False -> no pool (r3d_18-like)
    dropout: float = 0.0  # before the classifier
    pretrained_path: str | None = None  # Hara-format state dict (conv1/bn1/layerN/fc names)
    normalize: str = "auto"  # auto (kinetics stats only with pretrained_path) | none | imagenet | kinetics


ABLATIONS = {"full": {}, "no_stem_pool": {"stem_pool": False}}


class BasicBlock3d(nn.Module):
    """Two 3x3x3 conv-BN layers with a residual; a 1x1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_ch != width:
            self.downsample = nn.Sequential(nn.Conv3d(in_ch, width, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNet3d(nn.Module):
    """Hara 3D ResNet with BasicBlocks."""

    def __init__(self, cfg: ResNet3dConfig, name: str = "r3d18_hara"):
        super().__init__()
        self.cfg, self.name = cfg, name
        require(len(cfg.widths) == 4 and len(cfg.blocks) == 4, name, "widths and blocks need 4 entries each")
        require(cfg.frames >= 1, name, f"frames={cfg.frames} is not supported; allowed: >= 1")
        require(cfg.img_size >= 16, name, f"img_size={cfg.img_size} is not supported; allowed: >= 16")
        self.norm = input_norm(cfg.normalize, cfg.pretrained_path is not None, "kinetics", name)
        self.conv1 = nn.Conv3d(3, cfg.widths[0], 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(cfg.widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1) if cfg.stem_pool else nn.Identity()
        in_ch = cfg.widths[0]
        for i, (width, n) in enumerate(zip(cfg.widths, cfg.blocks), start=1):
            setattr(self, f"layer{i}", self._stage(in_ch, width, n, 1 if i == 1 else 2))
            in_ch = width
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(in_ch, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.pretrained_report = None
        if cfg.pretrained_path is not None:
            self.pretrained_report = load_into(self, cfg.pretrained_path, kind="hara_state_dict", what=name)

    @staticmethod
    def _stage(in_ch: int, width: int, n: int, stride: int) -> nn.Sequential:
        blocks: Sequence[nn.Module] = [BasicBlock3d(in_ch, width, stride)] + [BasicBlock3d(width, width)
                                                                               for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.name, None, None)
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.norm(x)))))  # (B, 64, T/2, S/4, S/4)
        x = self.layer2(self.layer1(x))  # (B, 128, T/4, S/8, S/8)
        x = self.layer4(self.layer3(x))  # (B, 512, T/16, S/32, S/32)
        return self.fc(self.drop(self.avgpool(x).flatten(1)))  # (B, K)


# --------------------------------------------------------------------------------------------
# entry points


@register_model("r3d18_hara", config_cls=ResNet3dConfig, ablations=ABLATIONS, family="resnet3d",
                description="3D ResNet-18 (Hara et al.): 7^3 stem + 3^3/2 max-pool, BasicBlock3d [2,2,2,2], 16x112")
def r3d18_hara(cfg: ResNet3dConfig) -> nn.Module:
    return ResNet3d(cfg, "r3d18_hara")


@register_model("r3d18_hara_tiny", config_cls=ResNet3dConfig, ablations=ABLATIONS, family="resnet3d",
                defaults={"img_size": 64, "widths": (16, 32, 64, 128)},
                description="3D ResNet-18 (Hara), CPU geometry: quarter widths, 16x64")
def r3d18_hara_tiny(cfg: ResNet3dConfig) -> nn.Module:
    return ResNet3d(cfg, "r3d18_hara_tiny")
