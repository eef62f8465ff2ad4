"""Multiscale vision transformer blocks (MViTv2 flavour) and IFDD's 4-stage backbone.

One block (spec 4.3), for ``C_in -> C_out`` channels, ``h`` heads of width ``d = C_out / h``:

1. ``xn = LN1(x)``; ``q, k, v = Linear(C_in, 3 C_out)(xn)`` split into heads.
2. q, k and v are each pooled on their token grid by a depthwise Conv3d (kernel 3^3, no bias;
   stride ``(1, s_q, s_q)`` for q and ``(1, s_kv, s_kv)`` for k/v), CLS set aside and put back,
   then LayerNorm over ``d`` (CLS included).
3. Attention with decomposed relative positions (an additive mask from the *unscaled* pooled q,
   CLS row/column zero), residual pooling (pooled q added to every non-CLS output), heads merged,
   ``Linear(C_out, C_out)``.
4. Skip: ``Linear(C_in, C_out)(xn)`` when the width changes, else ``x``; max-pooled
   (kernel (1,3,3), stride (1,2,2)) on the grid when q is pooled. ``x = skip + DropPath(attn)``.
5. ``x = x + DropPath(MLP(LN2(x)))`` with ``MLP = Linear(C, 4C), GELU, Linear(4C, C)``.

Token layout everywhere: ``(B, 1 + T*H*W, C)``, CLS first, grid tokens in (t, h, w) order.
Pooling runs on channels-last 3-D views of the token tensors, so tokens go in and out of the
convolutions without transposing copies. All LayerNorms use eps 1e-6.

The backbone (spec 4.1-4.5) stacks ``depths`` blocks per stage; the first block of stages 1..3
doubles the width and halves the query grid; the k/v stride per stage is ``kv_strides``. It
returns the stage taps: the output of the last block of each requested stage, the last stage
after the final LayerNorm.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ifdd_bench.models.depthwise import depthwise_conv3d, rewrite_pays
from ifdd_bench.models.layers import (
    THW,
    DropPath,
    as_laid_out,
    Mlp,
    gather_rel_pos_tables,
    norm_mlp_recompute,
    init_trunc_normal,
    rel_pos_attention,
    recompute_ok,
    rel_pos_index,
    rel_pos_table_size,
)

LN_EPS = 1e-6


def pooled_size(n: int, stride: int, kernel: int = 3) -> int:
    """Grid length after a conv/pool with padding ``kernel // 2``."""
    pad = kernel // 2
    return (n + 2 * pad - kernel) // stride + 1


class HeadPool(nn.Module):
    """Depthwise Conv3d over each head's token grid, CLS kept aside, then LayerNorm (spec 4.3)."""

    def __init__(self, head_dim: int, stride: int, kernel: int = 3, grid_hw: tuple[int, int] | None = None):
        super().__init__()
        self.conv = nn.Conv3d(head_dim, head_dim, kernel, stride=(1, stride, stride), padding=kernel // 2,
                              groups=head_dim, bias=False)
        self.norm = nn.LayerNorm(head_dim, eps=LN_EPS)
        # oneDNN's channels-last depthwise backward is fast up to stride 4 but pathologically slow
        # at stride 8 (block 0's k/v: ~3 s vs ~0.1 s per call on 2 cores); use channels-first there
        self.channels_first = stride >= 8
        # on the CPU, pools where it is measured to pay (``grid_hw``: the input grid) run through
        # depthwise_conv3d, whose backward avoids the slow built-in depthwise kernels of AVX2
        # machines (same numbers; ifdd_bench/models/depthwise.py)
        self.stride = stride
        self.cpu_rewrite = kernel == 3 and grid_hw is not None and rewrite_pays(stride, *grid_hw)

    def forward(self, grid: torch.Tensor, cls: torch.Tensor, thw: THW) -> torch.Tensor:
        """``grid (B, h, T*H*W, d)`` contiguous, ``cls (B, h, 1, d)`` -> ``(B, h, 1 + N', d)``."""
        B, nh, _, d = grid.shape
        t, h, w = thw
        x = grid.view(B * nh, t, h, w, d).permute(0, 4, 1, 2, 3)  # (B*h, d, T, H, W) channels-last view
        if self.channels_first:
            x = x.contiguous()
        # (not while fvcore traces the model: the rewrite is an opaque PythonOp it would count as 0 MACs)
        weight = as_laid_out(self.conv.weight)  # its gradient comes back laid out like the parameter (DDP)
        if self.cpu_rewrite and not x.is_cuda and not torch.jit.is_tracing():
            x = depthwise_conv3d(x, weight, self.stride)  # (B*h, d, T, H', W')
        else:
            conv = self.conv
            x = F.conv3d(x, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        x = x.permute(0, 2, 3, 4, 1).reshape(B, nh, -1, d)  # (B, h, N', d), a view when channels-last
        # normalise before re-attaching CLS (LayerNorm is per token): the conv then receives a dense
        # channels-last gradient from the norm instead of a strided slice of the concatenation's
        return torch.cat([self.norm(cls), self.norm(x)], dim=2)


class MultiscaleAttention(nn.Module):
    """Pooling attention with residual pooling and decomposed relative positions."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, thw: THW, q_stride: int, kv_stride: int,
                 attn_impl: str = "sdpa"):
        super().__init__()
        if dim_out % heads:
            raise ValueError(f"width {dim_out} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.dim_out = heads, dim_out // heads, dim_out
        self.attn_impl = attn_impl
        self.recompute = False  # set by the backbone for large-token blocks (training memory)
        t, h, w = thw
        self.thw = tuple(thw)
        self.q_thw = (t, pooled_size(h, q_stride), pooled_size(w, q_stride))
        self.k_thw = (t, pooled_size(h, kv_stride), pooled_size(w, kv_stride))
        self.qkv = nn.Linear(dim_in, 3 * dim_out)
        self.project = nn.Linear(dim_out, dim_out)
        self.pool_q = HeadPool(self.head_dim, q_stride, grid_hw=(h, w))
        self.pool_k = HeadPool(self.head_dim, kv_stride, grid_hw=(h, w))
        self.pool_v = HeadPool(self.head_dim, kv_stride, grid_hw=(h, w))
        # relative-position tables sized as MViTv2 does from the block's input grid
        size = max(h, w)
        spatial = rel_pos_table_size(size // q_stride, size // kv_stride)
        self.rel_pos_h = nn.Parameter(torch.zeros(spatial, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(spatial, self.head_dim))
        self.rel_pos_t = nn.Parameter(torch.zeros(rel_pos_table_size(t, t), self.head_dim))
        for axis, qn, kn, table in zip("thw", self.q_thw, self.k_thw, (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)):
            if rel_pos_table_size(qn, kn) != table.shape[0]:
                raise ValueError(f"relative-position table for axis {axis} has {table.shape[0]} rows, "
                                 f"grid {qn}x{kn} needs {rel_pos_table_size(qn, kn)}")
            self.register_buffer(f"idx_{axis}", rel_pos_index(qn, kn), persistent=False)
        residual_mask = torch.ones(1 + math.prod(self.q_thw), 1)
        residual_mask[0] = 0.0
        self.register_buffer("residual_mask", residual_mask, persistent=False)  # (1+Nq, 1)

    def pooled_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 1 + T*H*W, C_in)`` -> pooled, normalised ``q (B, h, 1+Nq, d)``, ``k, v (B, h, 1+Nk, d)``."""
        B, L, _ = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.heads, self.head_dim)
        # split / unbind (not slicing) so that backward concatenates gradients instead of
        # scattering each one into a zero-filled full-size buffer
        cls, grid = qkv.split([1, L - 1], dim=1)
        cls = cls.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, 1, d)
        grid = grid.permute(2, 0, 3, 1, 4).contiguous().unbind(0)  # 3 x (B, h, N, d): the one copy
        return (self.pool_q(grid[0], cls[0], self.thw), self.pool_k(grid[1], cls[1], self.thw),
                self.pool_v(grid[2], cls[2], self.thw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + T*H*W, C_in)`` -> ``(B, 1 + Nq, C_out)``."""
        B = x.shape[0]
        if self.recompute and x.requires_grad and recompute_ok(x):
            # keep neither the (3, B, h, N, d) pooling input nor the pre-norm maps: recomputed in backward
            q, k, v = checkpoint(self.pooled_qkv, x, use_reentrant=False)
        else:
            q, k, v = self.pooled_qkv(x)
        tables = gather_rel_pos_tables((self.rel_pos_t, self.rel_pos_h, self.rel_pos_w),
                                       (self.idx_t, self.idx_h, self.idx_w))  # (q_axis, k_axis, d) each
        out = rel_pos_attention(q, k, v, tables, self.q_thw, self.k_thw, self.attn_impl)  # (B, h, 1+Nq, d)
        out = out + q * self.residual_mask  # residual pooling, CLS row excluded
        out = out.transpose(1, 2).reshape(B, -1, self.dim_out)  # (B, 1+Nq, C_out)
        return self.project(out)


class SkipMaxPool(nn.Module):
    """Max-pool the non-CLS skip tokens on their grid: kernel (1,3,3), stride (1,2,2), pad (0,1,1)."""

    def __init__(self, thw: THW, stride: int):
        super().__init__()
        self.thw = tuple(thw)
        self.pool = nn.MaxPool3d((1, stride + 1, stride + 1), stride=(1, stride, stride),
                                 padding=(0, (stride + 1) // 2, (stride + 1) // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        t, h, w = self.thw
        cls, grid = x.split([1, L - 1], dim=1)
        grid = grid.reshape(B, t, h, w, C).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
        grid = self.pool(grid.contiguous(memory_format=torch.channels_last_3d))  # (B, C, T, H', W')
        grid = grid.permute(0, 2, 3, 4, 1).reshape(B, -1, C)  # (B, N', C)
        return torch.cat([cls, grid], dim=1)


class MultiscaleBlock(nn.Module):
    """One MViTv2 block (pooling attention + MLP) on ``(B, 1 + N, C)`` tokens."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, thw: THW, q_stride: int, kv_stride: int,
                 drop_path: float = 0.0, mlp_ratio: float = 4.0, attn_impl: str = "sdpa"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim_in, eps=LN_EPS)
        self.attn = MultiscaleAttention(dim_in, dim_out, heads, thw, q_stride, kv_stride, attn_impl)
        self.norm2 = nn.LayerNorm(dim_out, eps=LN_EPS)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        # skip path: projection of the *normalised* input when the width changes (proj_after_attn)
        self.project = nn.Linear(dim_in, dim_out) if dim_in != dim_out else None
        self.pool_skip = SkipMaxPool(thw, q_stride) if q_stride > 1 else nn.Identity()
        self.thw_in, self.thw_out = tuple(thw), self.attn.q_thw
        self.recompute = False

    def set_recompute(self, flag: bool) -> None:
        """Training memory saver: recompute pooled q/k/v, the pooled skip and the MLP in backward."""
        self.recompute = self.attn.recompute = bool(flag)

    def skip_path(self, x: torch.Tensor, xn: torch.Tensor) -> torch.Tensor:
        """Projected (when the width changes) and pooled (when q is pooled) skip tokens."""
        return self.pool_skip(x if self.project is None else self.project(xn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.norm1(x)
        if self.recompute and self.project is not None and xn.requires_grad and recompute_ok(xn):
            skip = checkpoint(self.skip_path, x, xn, use_reentrant=False)  # recomputed in backward
        else:
            skip = self.skip_path(x, xn)
        x = skip + self.drop_path(self.attn(xn))
        if self.recompute and x.requires_grad and recompute_ok(x):
            return x + self.drop_path(norm_mlp_recompute(x, self.norm2, self.mlp))  # stores only x
        return x + self.drop_path(self.mlp_branch(x))

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        """``MLP(LN2(x))``."""
        return self.mlp(self.norm2(x))


class MViTBackbone(nn.Module):
    """CLS token + multiscale blocks + final LayerNorm; returns the requested stage taps.

    ``grid``: token grid ``(T', H0, W0)`` after the patch embedding. ``taps``: stage indices whose
    outputs are returned (the last one must be the last stage, which gets the final norm).
    """

    def __init__(self, widths: Sequence[int], depths: Sequence[int], heads: Sequence[int],
                 kv_strides: Sequence[int], grid: THW, taps: Sequence[int] = (2, 3),
                 drop_path: float = 0.2, mlp_ratio: float = 4.0, attn_impl: str = "sdpa",
                 recompute_tokens: int = 0):
        super().__init__()
        self.widths, self.taps = tuple(widths), tuple(taps)
        self.cls_token = nn.Parameter(torch.zeros(widths[0]))
        total = sum(depths)
        blocks, stage_last, thw, dim, i = [], [], tuple(grid), widths[0], 0
        self.stage_thw: list[THW] = []
        for s, (width, depth, nh) in enumerate(zip(widths, depths, heads)):
            for j in range(depth):
                q_stride = 2 if (s > 0 and j == 0) else 1
                rate = drop_path * i / (total - 1) if total > 1 else 0.0
                block = MultiscaleBlock(dim, width, nh, thw, q_stride, kv_strides[s], rate, mlp_ratio, attn_impl)
                block.set_recompute(recompute_tokens > 0 and 1 + math.prod(thw) >= recompute_tokens)
                blocks.append(block)
                thw, dim, i = block.thw_out, width, i + 1
            stage_last.append(i - 1)
            self.stage_thw.append(thw)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(widths[-1], eps=LN_EPS)
        self._tap_after = {stage_last[s]: s for s in self.taps if s != len(widths) - 1}
        init_trunc_normal(self, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for block in self.blocks:
            for table in (block.attn.rel_pos_h, block.attn.rel_pos_w, block.attn.rel_pos_t):
                nn.init.trunc_normal_(table, std=0.02)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C0, T', H0, W0)`` embedding -> list of tap tokens ``(B, 1 + N_s, C_s)``."""
        B, C = x.shape[:2]
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C0) view
        x = torch.cat([self.cls_token.expand(B, 1, C), tokens], dim=1)  # (B, 1+N, C0)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._tap_after:
                taps.append(x)  # stage output before the next stage (no norm)
        taps.append(self.norm(x))  # last stage after the final LayerNorm
        return taps
