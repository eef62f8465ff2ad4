"""Building blocks shared by the baseline families.

* :class:`InputNorm` - optional mean/std normalisation of the [0, 1] input (pretrained weights).
* :class:`ResNet2d` - a BasicBlock ResNet trunk with torchvision/timm key names
  (``conv1``, ``bn1``, ``layer1.0.conv1`` ...) so plain ResNet-18 state dicts load into it.
* :class:`Attention`, :class:`TransformerBlock` - a pre-norm transformer block.
* temporal heads mapping per-frame features ``(B, T, D)`` to one clip vector ``(B, D')``:
  :class:`MeanHead`, :class:`TransformerHead`, :class:`LSTMHead` (chosen once, at construction).
* :func:`frames_of`, :func:`check_clip`, :func:`require` - reshaping and clear input errors.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from ifdd_bench.errors import ConfigError
from ifdd_bench.models.layers import as_laid_out

#: per-channel statistics of the usual pretraining sets, applied to [0, 1] input
NORM_STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "kinetics": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),
}
NORM_CHOICES = ("auto", "none", *NORM_STATS)


# --------------------------------------------------------------------------------------------
# input handling


def require(ok: bool, model: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<model>: <message>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{model}: {message}")


def check_choice(model: str, key: str, value: str, choices: Sequence[str]) -> None:
    """Raise a ConfigError naming ``key`` and its allowed values unless ``value`` is one of them."""
    require(value in choices, model, f"{key}={value!r} is not supported; allowed: {', '.join(choices)}")


def check_clip(x: torch.Tensor, model: str, frames: int | None, size: int | None) -> None:
    """Check a model input ``(B, C, T, H, W)`` against the geometry the model was built for.

    ``frames`` / ``size`` of ``None`` mean "any". A mismatch raises :class:`ConfigError` telling
    the user which model keys to set.
    """
    if x.dim() != 5:
        raise ConfigError(f"{model}: expects a clip tensor (B, C, T, H, W), got shape {tuple(x.shape)}")
    _, _, t, h, w = x.shape
    if (frames is not None and t != frames) or (size is not None and (h != size or w != size)):
        built = ", ".join(s for s in (f"frames={frames}" if frames is not None else "",
                                      f"img_size={size}" if size is not None else "") if s)
        raise ConfigError(
            f"{model}: input clip is {t}x{h}x{w} (T x H x W) but the model was built for {built}; "
            f"build it with matching model.frames / model.img_size or change data.frames / data.size")


def frames_of(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B*T, C, H, W)``: every frame becomes one image of the batch."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class InputNorm(nn.Module):
    """Subtract a per-channel mean and divide by a std on ``(B, C, T, H, W)`` input in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def input_norm(choice: str, pretrained: bool, auto_stats: str, model: str) -> nn.Module:
    """The normalisation module for a config's ``normalize`` field.

    ``auto`` means: ``auto_stats`` (imagenet / kinetics) when pretrained weights are loaded, none
    otherwise (the reference repos feed pixels / 255 to scratch models).
    """
    check_choice(model, "normalize", choice, NORM_CHOICES)
    if choice == "auto":
        choice = auto_stats if pretrained else "none"
    if choice == "none":
        return nn.Identity()
    return InputNorm(*NORM_STATS[choice])


# --------------------------------------------------------------------------------------------
# 2-D ResNet trunk (torchvision / timm key names)


def halve(n: int, times: int = 1) -> int:
    """Spatial size after ``times`` stride-2 layers with 'same' padding (conv 7/2 p3, pool 3/2 p1, conv 3/2 p1)."""
    for _ in range(times):
        n = (n - 1) // 2 + 1
    return n


class ResNet2d(nn.Module):
    """BasicBlock ResNet trunk without the classifier: ResNet-18 is ``widths=(64,128,256,512)``,
    ``blocks=(2,2,2,2)``.

    The stem is the torchvision one (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), so an input of side S
    gives maps of side S/4, S/4, S/8, S/16, S/32 after the stem and the four stages. Attribute and
    parameter names follow torchvision, so a torchvision or timm ResNet-18 state dict (minus
    ``fc.*``) loads one-to-one. Initialisation: Kaiming-normal (fan_out, ReLU) convolutions,
    BN weight 1 / bias 0.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4 or min(widths) < 1 or min(blocks) < 1:
            raise ConfigError(f"ResNet2d: widths and blocks need 4 positive entries, got {tuple(widths)}, {tuple(blocks)}")
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = widths[0]
        stages = []
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            stages.append(self._stage(in_ch, width, n, stride))
            in_ch = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_dim = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_ch: int, width: int, n: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or in_ch != width:
            down = nn.Sequential(nn.Conv2d(in_ch, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
        layers = [BasicBlock(in_ch, width, stride, down)]
        layers += [BasicBlock(width, width) for _ in range(n - 1)]
        return nn.Sequential(*layers)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` -> ``(N, widths[0], S/4, S/4)``."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` -> pooled features ``(N, widths[-1])``."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, C4, S/32, S/32)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, C4)


# --------------------------------------------------------------------------------------------
# transformer


class Attention(nn.Module):
    """Multi-head self-attention over ``(B, N, D)`` tokens with ``heads * dim_head`` inner width."""

    def __init__(self, dim: int, heads: int, dim_head: int, qkv_bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim)
        self.attn_dropout = dropout
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, dim_head)
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, heads, N, dim_head)
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head)  # (B, N, inner)
        return self.drop(self.proj(out))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` (MLP: Linear, GELU, Linear)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, *, qkv_bias: bool = False,
                 dropout: float = 0.0, gelu: str = "none"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head, qkv_bias=qkv_bias, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(approximate=gelu), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _heads_for(dim: int, heads: int, model: str) -> tuple[int, int]:
    """``(heads, dim_head)``; ``heads=0`` picks dim/64 heads (at least 1); dim must divide evenly."""
    if heads <= 0:
        heads = max(1, dim // 64)
    require(dim % heads == 0, model, f"temporal width {dim} is not divisible by t_heads={heads}")
    return heads, dim // heads


# --------------------------------------------------------------------------------------------
# temporal heads: (B, T, D) -> (B, out_dim)


class MeanHead(nn.Module):
    """Average over time: no temporal order is used."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)  # (B, D)


class TransformerHead(nn.Module):
    """Learned cls token + learned positional embedding over ``T + 1`` tokens, ``depth`` pre-norm
    blocks; returns the cls output (through a final LayerNorm when ``final_norm``).

    ``init_std`` of 0 draws the cls token and positions from N(0, 1) (Former-DFER), otherwise a
    truncated normal with that std (ViT style).
    """

    def __init__(self, dim: int, frames: int, depth: int, heads: int, dim_head: int, mlp_dim: int, *,
                 qkv_bias: bool = False, dropout: float = 0.0, final_norm: bool = False, init_std: float = 0.0):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, frames + 1, dim))
        for p in (self.cls, self.pos):
            if init_std == 0:
                nn.init.normal_(p)
            else:
                nn.init.trunc_normal_(p, std=init_std)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, dim_head, mlp_dim, qkv_bias=qkv_bias,
                                                       dropout=dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        cls = as_laid_out(self.cls).expand(b, -1, -1)  # (B, 1, D); at B=1 cat's gradient slice is restrided
        x = torch.cat([cls, x], dim=1) + self.pos  # (B, T+1, D)
        x = self.blocks(self.drop(x))
        return self.norm(x[:, 0])  # (B, D)


class LSTMHead(nn.Module):
    """LSTM over time; the output of the last time step summarises the clip."""

    def __init__(self, dim: int, hidden: int, layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (B, T, hidden)
        return out[:, -1]  # (B, hidden)


TEMPORAL_HEADS = ("mean", "tformer", "lstm")


def temporal_head(kind: str, dim: int, frames: int, *, model: str, depth: int = 2, heads: int = 0,
                  mlp_ratio: float = 2.0, dropout: float = 0.0, qkv_bias: bool = True,
                  final_norm: bool = True, init_std: float = 0.02, lstm_hidden: int = 0) -> nn.Module:
    """Build one of :data:`TEMPORAL_HEADS` for ``dim``-wide per-frame features."""
    check_choice(model, "head", kind, TEMPORAL_HEADS)
    if kind == "mean":
        return MeanHead(dim)
    if kind == "lstm":
        return LSTMHead(dim, lstm_hidden or dim)
    heads, dim_head = _heads_for(dim, heads, model)
    require(depth >= 1, model, f"t_depth={depth} must be >= 1 for head=tformer")
    return TransformerHead(dim, frames, depth, heads, dim_head, int(math.ceil(dim * mlp_ratio)),
                           qkv_bias=qkv_bias, dropout=dropout, final_norm=final_norm, init_std=init_std)
