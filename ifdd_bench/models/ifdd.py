"""IFDD: lifting-scheme implicit disentanglement of facial dynamics (Wang & Chai, arXiv 2412.13168).

A faithful re-implementation of the authors' published model (spec:
``shared/design/ifdd-reference.md`` sections 2-10), with every component behind a switch of
:class:`IFDDConfig` resolved at construction, so each ablation is an ordinary module.

Data flow for a ``(B, 3, T, H, W)`` clip in [0, 1] (paper geometry in brackets)::

    Embedding      Conv3d 3->96 k(3,7,7) s(2,4,4) (+ temporal avg-pool for 32 frames)  (B, 96, 8, 56, 56)
    MViTBackbone   10 multiscale blocks, taps after stages 2 and 3   (B, 1569, 384), (B, 393, 768)
    Pyramid        per-frame dilated conv on stage 2, concat, 1x1 conv                    (B, 392, 768)
    top            one of
      LADMTop      split (ISSM | lazy) -> WaveNorm -> update/predict cross-attention lifting ->
                   detail refinement -> token compression                              feature (B, 768)
      SplitOnlyTop split -> compress the detail group (Linear with bias)               feature (B, 768)
      GapTop       mean of the pyramid tokens                                          feature (B, 768)
    head           Dropout(0.5) -> Linear(768, K)                                      logits  (B, K)

Output convention (``ifdd_bench.models.output``):

* ``model.eval()``: ``forward(x)`` returns logits ``(B, K)``.
* ``model.train()``: ``forward(x)`` returns ``ModelOutput(logits, losses, extras)``.
  ``losses = {"lift": lambda_lift * L_lift}`` only when ``lambda_lift > 0`` (LADM top); the engine
  adds ``sum(losses.values())`` to the classification loss. ``extras`` (detached, stable names
  used by ``ifdd-bench viz splits``):

  - ``"pool_a"``  ``(B, h, w)``: channel/time mean of (pair-averaged input - approximation group),
    the quantity the lifting loss pulls to zero (LADM and split-only tops).
  - ``"detail"``  ``(B, C)``: the feature fed to the head (compressed detail / GAP vector).
  - ``"pos_a"``, ``"pos_d"`` ``(B, T'/2)``: frame coordinates (in units of the T' = 8 token
    frames, 0..T'-1) that the approximation and detail groups were sampled at. ISSM: the
    fractional positions actually interpolated (after the ``issm_grid`` convention and clamping);
    lazy split: the fixed even / odd frames. Absent for the GAP top (no split).
  - ``"similarity"`` ``(B, T', T')``: ISSM's inter-frame similarity ``S`` (ISSM only).

Registered presets (bottom of this file): ``ifdd`` (paper geometry, 16x224x224),
``ifdd_tiny`` (same architecture at CPU size, 16x64x64), ``ifdd_tiny_pretext`` (``ifdd_tiny``
with the shipped pretext backbone) and ``ifdd_tiny_frozen`` (the same, backbone frozen); the
config and the named variants live in the torch-free ``ifdd_bench.models.ifdd_config``
(:class:`IFDDConfig`, :data:`ABLATIONS`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ifdd_bench.errors import ConfigError
from ifdd_bench.models.ifdd_config import (ABLATIONS, FRAME_MODES, INPUT_NORMS, TOKEN_FRAMES, IFDDConfig,
                                           ablation_overrides)
from ifdd_bench.models.layers import DropPath, Mlp, as_laid_out, plain_attention
from ifdd_bench.models.memo import FeatureMemo
from ifdd_bench.models.mvit import MViTBackbone
from ifdd_bench.models.output import ModelOutput
from ifdd_bench.registry import register_model

#: ifdd_tiny preset: same architecture (4 stages, pooling attention, rel-pos, taps 2+3, pyramid,
#: ISSM, LADM) at CPU size: 16x64x64 input -> stage grids 16, 8, 4, 2.
TINY: dict[str, Any] = {
    "img_size": 64,
    "widths": (16, 32, 64, 128),
    "depths": (1, 1, 2, 1),
    "heads": (1, 2, 4, 8),
    # at this size attention matrices are tiny and the fused kernel's per-call overhead dominates:
    # the explicit formulation (same numbers) trains ~30% faster here
    "attn_impl": "explicit",
    # from scratch on [0, 1] input the tiny model sits at chance on SynthDFER for 6+ epochs; with
    # standardised input it fits the same clips (docs/models.md, "Presets"); the paper preset keeps the
    # reference's un-normalised input for parity with the K400-initialised original
    "input_norm": "kinetics",
    # the regularisers of the 37M-parameter recipe (stochastic depth 0.2, head dropout 0.5) are
    # meant for 40k-clip datasets and 100 epochs; on ~1k SynthDFER clips and a CPU budget of a few
    # epochs they keep the tiny model at chance for longer than the budget (docs/models.md, "Presets")
    "drop_path": 0.0,
    "ladm_drop_path": 0.0,
    "head_dropout": 0.0,
}


# ============================================================================================
# modules


class Standardise(nn.Module):
    """``(x - mean) / std`` per channel of a ``(B, C, T, H, W)`` clip; no parameters.

    The statistics are non-persistent buffers: they follow ``.to(device)`` but stay out of state
    dicts and parameter counts, so checkpoints and the K400 mapping are the same with or without it.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        shape = (1, len(mean), 1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean).view(shape), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(std).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std  # (B, C, T, H, W)


class Embedding(nn.Module):
    """Optional input standardisation, Conv3d (stride (s_t, 4, 4)), temporal avg-pool for 32 frames."""

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        t_stride, t_pool = FRAME_MODES[cfg.frames]
        kt, kh, kw = cfg.embed_kernel
        stats = INPUT_NORMS[cfg.input_norm]
        self.standardise = Standardise(*stats) if stats is not None else nn.Identity()
        self.proj = nn.Conv3d(cfg.in_chans, cfg.widths[0], (kt, kh, kw), stride=(t_stride, cfg.patch_stride, cfg.patch_stride),
                              padding=(kt // 2, kh // 2, kw // 2))
        self.pool = nn.AvgPool3d((t_pool, 1, 1), stride=(t_pool, 1, 1)) if t_pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.proj(self.standardise(x)))  # (B, C0, T', H/4, W/4)


class Pyramid(nn.Module):
    """PAN aggregation (spec 5): per-frame dilated strided 3x3 conv per earlier tap, concat, 1x1 conv.

    Returns tokens ``(B, T' * h * w, C_last)`` in (t, h, w) order. With one tap: its tokens.
    """

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        grids = [cfg.stage_grids[s] for s in cfg.taps]
        self.widths = [cfg.widths[s] for s in cfg.taps]
        self.grids, last = grids, grids[-1]
        self.lateral = nn.ModuleList(
            nn.Conv2d(c, c, 3, stride=g // last, dilation=g // last, padding=g // last, bias=False)
            for c, g in zip(self.widths[:-1], grids[:-1]))
        self.fuse = nn.Conv2d(sum(self.widths), self.widths[-1], 1, bias=False) if len(grids) > 1 else None

    @staticmethod
    def _frames(x: torch.Tensor, g: int) -> torch.Tensor:
        """Tap tokens ``(B, 1+T'*g*g, C)`` -> per-frame maps ``(B*T', C, g, g)``.

        Channels-first: measured faster than channels-last for these dense 2-D convs on CPU.
        """
        B, _, C = x.shape
        return x[:, 1:].reshape(B * TOKEN_FRAMES, g, g, C).permute(0, 3, 1, 2).contiguous()

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        B, C = taps[-1].shape[0], self.widths[-1]
        if self.fuse is None:
            return taps[-1][:, 1:]  # (B, N, C)
        maps = [conv(self._frames(x, g)) for conv, x, g in zip(self.lateral, taps, self.grids)]
        maps.append(self._frames(taps[-1], self.grids[-1]))
        y = self.fuse(torch.cat(maps, dim=1))  # (B*T', C, h, w)
        return y.permute(0, 2, 3, 1).reshape(B, -1, C)  # (B, T'*h*w, C)


@dataclass
class SplitOutput:
    """Two token groups ``(B, T'/2 * h * w, C)`` and visualisation extras."""

    approx: torch.Tensor
    detail: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def _autocast_off(device_type: str):
    """Context disabling autocast on ``device_type`` (a no-op where autocast does not exist)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def sample_frames(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of frames at fractional positions (no grid_sample).

    ``x (B, T, ...)``, ``pos (B, K)`` in ``[0, T-1]`` -> ``(B, K, ...)``:
    ``(1 - a) x[floor p] + a x[floor p + 1]``, differentiable in ``x`` and in ``pos``.
    """
    B, T = x.shape[:2]
    lo = pos.detach().floor().clamp(0, T - 2)  # (B, K); p = T-1 uses (T-2, T-1) with a = 1
    alpha = (pos - lo).to(x.dtype)  # (B, K), carries the gradient to the positions
    idx = lo.long()
    rows = torch.arange(B, device=x.device)[:, None]
    x0, x1 = x[rows, idx], x[rows, idx + 1]  # (B, K, ...)
    return torch.lerp(x0, x1, alpha.view(B, -1, *([1] * (x.ndim - 2))))


class LazySplit(nn.Module):
    """Fixed lazy-wavelet split (spec 6.4): approximation = even frames, detail = odd frames."""

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        t = cfg.token_grid[0]
        self.register_buffer("even", torch.arange(0, t, 2, dtype=torch.float32), persistent=False)
        self.register_buffer("odd", torch.arange(1, t, 2, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> SplitOutput:
        """``x (B, T', h*w, C)``."""
        B, _, _, C = x.shape
        a = x[:, 0::2].reshape(B, -1, C)  # (B, T'/2*h*w, C)
        d = x[:, 1::2].reshape(B, -1, C)
        return SplitOutput(a, d, {"pos_a": self.even.expand(B, -1), "pos_d": self.odd.expand(B, -1)})


class ISSM(nn.Module):
    """Inter-frame static-dynamic splitting module, the fixed HEAD version (spec 6.1).

    Frame descriptors ``phi_t = vec(GELU(conv1x1(avgpool(X_t))))``, similarity
    ``S = phi phi^T / C``, offsets ``o_a = r tanh(W_a vec(softmax(S)))`` and
    ``o_d = r tanh(W_d vec(softmax(-S)))`` around the even / odd frames, fractional positions
    (``issm_grid``) and linear interpolation in time.
    """

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        t, _, _ = cfg.token_grid
        c = cfg.widths[-1]
        self.frames, self.dim, self.range = t, c, float(cfg.issm_range)
        self.pool_size = min(cfg.issm_pool, cfg.token_grid[1])  # 7 at paper size (identity pool)
        self.descriptor = nn.Conv2d(c, cfg.issm_channels, 1)  # default init (spec 6.2)
        self.offset_a = nn.Linear(t * t, t // 2, bias=False)
        self.offset_d = nn.Linear(t * t, t // 2, bias=False)
        # reference grid_sample with align_corners=False on g = 2i/(T'-1) - 1:
        # p = i * T'/(T'-1) - 0.5 (spec 6.1 step 7); aligned: p = i
        if cfg.issm_grid == "reference":
            self.pos_scale, self.pos_shift = t / (t - 1), -0.5
        else:
            self.pos_scale, self.pos_shift = 1.0, 0.0
        self.register_buffer("even", torch.arange(0, t, 2, dtype=torch.float32), persistent=False)
        self.register_buffer("odd", torch.arange(1, t, 2, dtype=torch.float32), persistent=False)
        if cfg.parity_dead_params:  # built, never called by the reference (81 params)
            self.time_project = nn.Sequential(nn.Linear(t, t), nn.GELU(), nn.Linear(t, 1))
            self.time_project.requires_grad_(False)
        for lin in (m for m in self.modules() if isinstance(m, nn.Linear)):  # offsets (+ dead time MLP)
            nn.init.trunc_normal_(lin.weight, std=0.03)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def positions(self, index: torch.Tensor) -> torch.Tensor:
        """Frame coordinates actually sampled for lattice-plus-offset indices ``(B, K)``."""
        return (index * self.pos_scale + self.pos_shift).clamp(0.0, float(self.frames - 1))

    def forward(self, x: torch.Tensor) -> SplitOutput:
        """``x (B, T', h*w, C)`` -> two groups ``(B, T'/2*h*w, C)``."""
        B, t, hw, C = x.shape
        g = math.isqrt(hw)
        maps = x.reshape(B * t, g, g, C).permute(0, 3, 1, 2)  # (B*T', C, h, w) channels-last view
        maps = F.adaptive_avg_pool2d(maps, self.pool_size)
        with _autocast_off(x.device.type):  # positions in fp32 under AMP
            desc = self.descriptor  # weight through as_laid_out: maps are channels-last, the weight is not
            phi = F.conv2d(maps.float(), as_laid_out(desc.weight), desc.bias)  # (B*T', ch, p, p)
            phi = F.gelu(phi).reshape(B, t, -1)  # (B, T', ch*p*p)
            sim = torch.matmul(phi * (1.0 / self.dim), phi.transpose(1, 2))  # (B, T', T')
            o_a = self.range * torch.tanh(self.offset_a(sim.softmax(-1).flatten(1)))  # (B, T'/2)
            o_d = self.range * torch.tanh(self.offset_d((-sim).softmax(-1).flatten(1)))
            pos_a = self.positions(self.even + o_a)  # (B, T'/2)
            pos_d = self.positions(self.odd + o_d)
        a = sample_frames(x, pos_a).reshape(B, -1, C)  # (B, T'/2*h*w, C)
        d = sample_frames(x, pos_d).reshape(B, -1, C)
        extras = {"pos_a": pos_a.detach(), "pos_d": pos_d.detach(), "similarity": sim.detach()}
        return SplitOutput(a, d, extras)


def make_split(cfg: IFDDConfig) -> nn.Module:
    """ISSM when ``cfg.issm`` else the lazy split."""
    return ISSM(cfg) if cfg.issm else LazySplit(cfg)


class LiftingStep(nn.Module):
    """Cross-attention of the lifting scheme (spec 7.1 step 3) with the value shortcut.

    ``out = Linear(concat_h(softmax(Q_h K_h^T / sqrt(d)) V_h) + V)`` with ``Q`` from the group
    being changed and ``K, V = Linear(C, 2C)`` from the other group.
    """

    def __init__(self, dim: int, heads: int, attn_impl: str):
        super().__init__()
        self.heads, self.attn_impl = heads, attn_impl
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        B, N, C = target.shape
        h = self.heads
        q = self.q(target).view(B, N, h, C // h).transpose(1, 2)  # (B, h, N, d)
        k, v = self.kv(source).view(B, source.shape[1], 2, h, C // h).permute(2, 0, 3, 1, 4)  # (B, h, M, d) each
        out = plain_attention(q, k, v, self.attn_impl) + v  # value shortcut
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class SelfAttention(nn.Module):
    """Multi-head self-attention (qkv Linear, fused or explicit attention, output Linear)."""

    def __init__(self, dim: int, heads: int, attn_impl: str):
        super().__init__()
        self.heads, self.attn_impl = heads, attn_impl
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        out = plain_attention(q, k, v, self.attn_impl)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


@dataclass
class TopOutput:
    """What a top hands to the head and to the lifting loss."""

    feature: torch.Tensor  # (B, C) fed to the head
    pool_a: torch.Tensor | None = None  # (B, h, w) for the lifting loss
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def approximation_gap(tokens: torch.Tensor, approx: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """``pool_a (B, h, w)``: mean over channels and T'/2 of (frame-pair average of tokens - approx).

    Equals the reference's relaxed lifting constraint (spec 7.1 step 7); the pair average followed
    by the mean over time is the mean over all T' frames.
    """
    B, _, C = tokens.shape
    t, h, w = grid
    mean_in = tokens.view(B, t, h * w, C).mean(dim=(1, 3))  # (B, h*w)
    mean_a = approx.view(B, t // 2, h * w, C).mean(dim=(1, 3))
    return (mean_in - mean_a).view(B, h, w)


class LADMTop(nn.Module):
    """Lifting-based aggregation-disentanglement module (spec 7) plus token compression."""

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        t, h, w = self.grid = cfg.token_grid
        c, heads = cfg.widths[-1], cfg.ladm_heads
        self.split = make_split(cfg)
        self.norm_a = nn.LayerNorm(c) if cfg.wave_norm else nn.Identity()
        self.norm_d = nn.LayerNorm(c) if cfg.wave_norm else nn.Identity()
        self.update = LiftingStep(c, heads, cfg.attn_impl)  # A <- A + CA(A, D)
        self.predict = LiftingStep(c, heads, cfg.attn_impl)  # D <- D - CA(D, A)
        self.lift: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = (
            self._update_then_predict if cfg.update_first else self._predict_then_update)
        self.norm1 = nn.LayerNorm(c)
        self.attn = SelfAttention(c, heads, cfg.attn_impl)
        self.norm2 = nn.LayerNorm(c)
        self.mlp = Mlp(c, 4 * c)
        self.drop_path = DropPath(cfg.ladm_drop_path)
        self.compress = nn.Linear(t // 2 * h * w, 1, bias=False)  # learned weights over the tokens
        if cfg.parity_dead_params:  # the reference's unused position tables (44,544 at paper size)
            self.spatial_pos = nn.Parameter(torch.zeros(h * w, c), requires_grad=False)
            self.temporal_pos = nn.Parameter(torch.zeros(t, c), requires_grad=False)
            self.class_pos = nn.Parameter(torch.zeros(c), requires_grad=False)

    def _update_then_predict(self, a: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = a + self.update(a, d)
        return a, d - self.predict(d, a)

    def _predict_then_update(self, a: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = d - self.predict(d, a)
        return a + self.update(a, d), d

    def forward(self, tokens: torch.Tensor) -> TopOutput:
        """``tokens (B, T'*h*w, C)`` pyramid output."""
        B, _, C = tokens.shape
        t, h, w = self.grid
        groups = self.split(tokens.view(B, t, h * w, C))  # two (B, T'/2*h*w, C)
        a, d = self.lift(self.norm_a(groups.approx), self.norm_d(groups.detail))
        y = d + self.drop_path(self.attn(self.norm1(d)))  # detail refinement
        z = self.drop_path(self.mlp(self.norm2(y)))  # no residual here (reference, bug B9)
        feature = self.compress(z.transpose(1, 2)).squeeze(-1)  # (B, C)
        return TopOutput(feature, approximation_gap(tokens, a, self.grid), groups.extras)


class SplitOnlyTop(nn.Module):
    """Split then compress the detail group with ``Linear(T'/2*h*w, 1)`` (with bias); no LADM."""

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        t, h, w = self.grid = cfg.token_grid
        self.split = make_split(cfg)
        self.compress = nn.Linear(t // 2 * h * w, 1)
        if isinstance(self.split, ISSM):
            # only the detail group reaches the head and no loss uses pool_a here, so the
            # approximation offset head is dead (as in the reference); frozen, still counted
            self.split.offset_a.requires_grad_(False)

    def forward(self, tokens: torch.Tensor) -> TopOutput:
        B, _, C = tokens.shape
        t, h, w = self.grid
        groups = self.split(tokens.view(B, t, h * w, C))
        feature = self.compress(groups.detail.transpose(1, 2)).squeeze(-1)  # (B, C)
        return TopOutput(feature, approximation_gap(tokens, groups.approx, self.grid), groups.extras)


class GapTop(nn.Module):
    """Global average of the pyramid tokens (extra baseline, not in the reference code)."""

    def __init__(self, cfg: IFDDConfig):
        super().__init__()

    def forward(self, tokens: torch.Tensor) -> TopOutput:
        return TopOutput(tokens.mean(dim=1))


TOP_MODULES = {"ladm": LADMTop, "split_only": SplitOnlyTop, "gap": GapTop}


class Head(nn.Module):
    """Dropout then Linear(C, K); weights truncated normal std 0.01, bias 0 (spec 8)."""

    def __init__(self, dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


def lifting_loss(pool_a: torch.Tensor, weight: float = 0.1, reduction: str = "sum") -> torch.Tensor:
    """``weight * reduce_b mean_{h,w} SmoothL1_beta=1(pool_a[b], 0)`` (spec 9.2).

    ``reduction="sum"`` sums the per-sample means over the batch as the reference does (bug B1:
    0.1 * B relative weight); ``"mean"`` averages them.
    """
    per_sample = F.smooth_l1_loss(pool_a, torch.zeros_like(pool_a), reduction="none", beta=1.0)
    per_sample = per_sample.flatten(1).mean(dim=1)  # (B,)
    reduced = per_sample.sum() if reduction == "sum" else per_sample.mean()
    return weight * reduced


class LiftingLoss(nn.Module):
    """The weighted lifting loss as a named auxiliary loss ``{"lift": ...}``."""

    def __init__(self, weight: float, reduction: str):
        super().__init__()
        self.weight, self.reduction = float(weight), reduction

    def forward(self, top: TopOutput) -> dict[str, torch.Tensor]:
        return {"lift": lifting_loss(top.pool_a, self.weight, self.reduction)}


class NoAuxLoss(nn.Module):
    """No auxiliary loss (lambda_lift = 0 or no LADM)."""

    def forward(self, top: TopOutput) -> dict[str, torch.Tensor]:
        return {}


def _tracing() -> bool:
    """True while torch.jit traces or torch.export / dynamo compiles the model."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class IFDD(nn.Module):
    """The IFDD model family; every variant is this class built from an :class:`IFDDConfig`."""

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        self.cfg = cfg
        self.expected_shape = (cfg.in_chans, cfg.frames, cfg.img_size, cfg.img_size)
        g0 = cfg.stage_grids[0]
        self.embed = Embedding(cfg)
        self.backbone = MViTBackbone(cfg.widths, cfg.depths, cfg.heads, cfg.kv_strides, (TOKEN_FRAMES, g0, g0),
                                     cfg.taps, cfg.drop_path, cfg.mlp_ratio, cfg.attn_impl, cfg.recompute_tokens)
        self.pyramid = Pyramid(cfg)
        self.top = TOP_MODULES[cfg.top_kind](cfg)
        self.head = Head(cfg.widths[-1], cfg.num_classes, cfg.head_dropout)
        use_lift = cfg.lambda_lift > 0 and cfg.top_kind == "ladm"
        self.aux_loss = LiftingLoss(cfg.lambda_lift, cfg.lift_reduction) if use_lift else NoAuxLoss()
        self.pretrained_report = None
        if cfg.pretrained:
            from ifdd_bench.models.pretrained import load_pretrained

            self.pretrained_report = load_pretrained(self, cfg.pretrained)
        self.memo: FeatureMemo | None = None
        # backbone taps (B, 1+N_s, C_s) of a clip batch: with gradient, or from the frozen backbone
        self.features = self._frozen_taps if cfg.freeze_backbone else self._backbone_taps
        if cfg.freeze_backbone:
            self.embed.requires_grad_(False)
            self.backbone.requires_grad_(False)
            self.train(self.training)  # frozen parts to eval mode

    def train(self, mode: bool = True) -> "IFDD":
        """As :meth:`nn.Module.train`, but a frozen embedding and backbone always stay in eval mode."""
        super().train(mode)
        if self.cfg.freeze_backbone:
            self.embed.eval()
            self.backbone.eval()
        return self

    def enable_feature_memo(self, budget_mb: float) -> None:
        """Memoise the frozen backbone's taps per clip (:class:`FeatureMemo`), within ``budget_mb``.

        Only for a frozen backbone (``freeze_backbone``). Loading a state dict empties the memo.
        Tracing and exporting bypass it.
        """
        if not self.cfg.freeze_backbone:
            raise ConfigError("a feature memo needs a frozen backbone: set freeze_backbone=true, or turn the "
                              "memo off (train.feature_cache_mb=0)")
        self.memo = FeatureMemo(self._backbone_taps, budget_mb)

    def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`nn.Module.load_state_dict`; empties the feature memo first (the weights may differ)."""
        if self.memo is not None:
            self.memo.clear()
        return super().load_state_dict(state_dict, *args, **kwargs)

    def _backbone_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(self.embed(x))  # taps (B, 1+N_s, C_s)

    def _frozen_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Taps of the frozen backbone, without gradient: from the memo when one is on (not while tracing)."""
        if self.memo is not None and not _tracing():
            return self.memo(x)
        with torch.no_grad():
            return self._backbone_taps(x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` unless ``x`` is ``(B, C, T, H, W)`` matching the config."""
        if x.ndim != 5 or tuple(x.shape[1:]) != self.expected_shape:
            c, t, s, _ = self.expected_shape
            raise ConfigError(f"IFDD input has shape {tuple(x.shape)}; expected (B, {c}, {t}, {s}, {s}) "
                              f"(B, C, T, H, W) for this config (frames={t}, img_size={s}); resize the clips "
                              "or set frames / img_size")

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """``x (B, 3, T, H, W)`` in [0, 1] -> logits (eval) or :class:`ModelOutput` (train)."""
        self.check_input(x)
        feats = self.features(x)  # taps (B, 1+N_s, C_s)
        tokens = self.pyramid(feats)  # (B, T'*h*w, C)
        top = self.top(tokens)
        logits = self.head(top.feature)  # (B, K)
        if not self.training:
            return logits
        extras = dict(top.extras)
        extras["detail"] = top.feature.detach()
        if top.pool_a is not None:
            extras["pool_a"] = top.pool_a.detach()
        return ModelOutput(logits, self.aux_loss(top), extras)


def count_parameters(model: nn.Module) -> int:
    """``sum(p.numel())`` over every parameter (the reference's count; includes frozen dead ones)."""
    return sum(p.numel() for p in model.parameters())


# ============================================================================================
# registered presets


@register_model("ifdd", config_cls=IFDDConfig, ablations=ablation_overrides(), family="ifdd",
                description="IFDD, paper geometry (16x224x224; frames=32 for MAFW)")
def ifdd(cfg: IFDDConfig) -> IFDD:
    """IFDD, paper geometry (16x224x224; frames=32 for MAFW)."""
    return IFDD(cfg)


@register_model("ifdd_tiny", config_cls=IFDDConfig, defaults=TINY, ablations=ablation_overrides(), family="ifdd",
                description="IFDD, same architecture at CPU size (16x64x64, widths 16-128)")
def ifdd_tiny(cfg: IFDDConfig) -> IFDD:
    """IFDD, same architecture at CPU size (16x64x64, widths 16-128)."""
    return IFDD(cfg)


@register_model("ifdd_tiny_pretext", config_cls=IFDDConfig, defaults={**TINY, "pretrained": "synth-pretext"},
                ablations=ablation_overrides(), family="ifdd",
                description="ifdd_tiny with its embedding + backbone from the shipped SynthDFER masked-video pretext")
def ifdd_tiny_pretext(cfg: IFDDConfig) -> IFDD:
    """``ifdd_tiny`` whose embedding and backbone start from ``synth-pretext`` (``ifdd-bench run pretrain``).

    The CPU stand-in for the paper's Kinetics-400 initialisation: pyramid, ISSM, LADM and head start
    from scratch, as they do in the paper.
    """
    return IFDD(cfg)


@register_model("ifdd_tiny_frozen", config_cls=IFDDConfig,
                defaults={**TINY, "pretrained": "synth-pretext", "freeze_backbone": True},
                ablations=ablation_overrides(), family="ifdd",
                description="ifdd_tiny_pretext with its backbone frozen: trains pyramid, split, LADM and head")
def ifdd_tiny_frozen(cfg: IFDDConfig) -> IFDD:
    """``ifdd_tiny_pretext`` whose embedding and backbone stay fixed at the shipped masked-video weights.

    The default ablation's model (recipes ``synth-default``, 15 epochs, and ``synth-frozen``, 40):
    every ablation row trains the parts IFDD adds
    (pyramid, ISSM or the lazy split, LADM, head) on the same label-neutral features, with the
    backbone's features computed once per clip (docs/models.md, "Presets").
    """
    return IFDD(cfg)


__all__ = [
    "ABLATIONS", "IFDD", "IFDDConfig", "ISSM", "LADMTop", "LazySplit", "SplitOnlyTop", "GapTop", "Pyramid",
    "Embedding", "lifting_loss", "sample_frames", "count_parameters", "TINY",
]
