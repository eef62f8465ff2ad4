"""Shared building blocks: stochastic depth, MLP, initialisation helpers and attention.

Attention comes in two implementations selected by name (``attn_impl``), both computing the same
function:

* ``"sdpa"`` (default) - :func:`torch.nn.functional.scaled_dot_product_attention`, the fused kernel.
* ``"explicit"`` - ``softmax(q k^T * scale + bias) v`` with plain matmuls; the numerical reference
  for tests and the in-process baseline of the speed benchmark.

MViTv2's decomposed relative positions enter attention as an additive float mask of shape
``(B, heads, 1 + Nq, 1 + Nk)`` whose CLS row and column are zero. The mask is built from three
small per-axis terms (``rel_t``, ``rel_h``, ``rel_w``, see :func:`decomposed_rel_pos`) by
:class:`RelPosMask`, an autograd function whose backward reduces the attention-sized gradient
straight back to the three terms.

On CPU, PyTorch's fused SDPA kernel does not differentiate through a float mask (it silently
falls back to the unfused math path, which materialises and keeps every attention matrix). For
training on CPU :class:`_FusedRelPosAttentionCPU` therefore runs the fused kernel forward with a
mask it builds itself and keeps nothing attention-sized for backward: the backward recomputes the
attention probabilities block by block (one block alive at a time), like flash attention does.
On CUDA the native SDPA backward (memory-efficient kernel) handles the mask gradient directly.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ATTN_IMPLS = ("sdpa", "explicit")
THW = tuple  # (T, H, W) token grid


# --------------------------------------------------------------------------------------------
# small modules


class DropPath(nn.Module):
    """Stochastic depth per sample ("row" mode): zero a sample's branch with probability ``p``.

    Survivors are scaled by ``1 / (1 - p)``; identity in eval mode or when ``p == 0``.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


def recompute_ok(x: torch.Tensor) -> bool:
    """Use a memory-saving custom backward: training, and no autocast on this device."""
    device = x.device.type
    return torch.is_grad_enabled() and not (torch.amp.is_autocast_available(device)
                                            and torch.is_autocast_enabled(device))


class _GeluLinear(torch.autograd.Function):
    """``Linear(GELU(h))`` keeping only ``h`` for backward (GELU recomputed, its output not stored)."""

    @staticmethod
    def forward(ctx, h, weight, bias):  # type: ignore[override]
        ctx.save_for_backward(h, weight)
        return F.linear(F.gelu(h), weight, bias)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        h, weight = ctx.saved_tensors
        y = F.gelu(h)
        g2 = grad.reshape(-1, grad.shape[-1])
        d_weight = g2.t().mm(y.reshape(-1, y.shape[-1]))
        d_bias = g2.sum(0)
        d_h = torch.ops.aten.gelu_backward(grad.matmul(weight), h)
        return d_h, d_weight, d_bias


class Mlp(nn.Sequential):
    """Linear -> GELU (exact) -> Linear; module names ``0`` and ``2`` (``1`` is the activation).

    In training (without autocast) the GELU output is recomputed in backward instead of stored,
    which saves one hidden-sized activation per MLP; the numbers are the same.
    """

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self[0](x)
        if recompute_ok(h) and h.requires_grad:
            return _GeluLinear.apply(h, self[2].weight, self[2].bias)
        return self[2](self[1](h))


def init_trunc_normal(module: nn.Module, std: float) -> None:
    """Truncated-normal (bounds +-2 absolute) Linear weights with zero bias; LayerNorm to 1 / 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# decomposed relative positions (MViTv2)


def rel_pos_table_size(q_size: int, k_size: int) -> int:
    """Rows of a relative-position table covering every (query, key) offset on one axis."""
    return 2 * max(q_size, k_size) - 1


def rel_pos_index(q_size: int, k_size: int) -> torch.Tensor:
    """Table row for every (query i, key j) pair on one axis, resolution-ratio scaled.

    ``i * max(k/q, 1) - j * max(q/k, 1) + (k - 1) * max(q/k, 1)``, truncated to an integer, so the
    offset is measured on the finer of the two grids. Returns ``(q_size, k_size)`` int64.
    """
    q_ratio = max(k_size / q_size, 1.0)
    k_ratio = max(q_size / k_size, 1.0)
    rows = [[int(i * q_ratio - j * k_ratio + (k_size - 1) * k_ratio) for j in range(k_size)] for i in range(q_size)]
    return torch.tensor(rows, dtype=torch.long)


def gather_rel_pos_tables(tables: Sequence[torch.Tensor], indices: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``(R_t, R_h, R_w)`` tables ``(rows, d)`` looked up by :func:`rel_pos_index` -> ``(q_axis, k_axis, d)``."""
    return tuple(table[idx] for table, idx in zip(tables, indices))


def decomposed_rel_pos(
    q: torch.Tensor,
    q_thw: THW,
    tables: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-axis relative-position logits of the non-CLS queries.

    ``q``: ``(B, heads, Nq, d)`` queries without CLS (unscaled, after pooling and norm);
    ``tables``: gathered ``(R_t, R_h, R_w)``, each ``(q_axis, k_axis, d)``
    (:func:`gather_rel_pos_tables`).
    Returns ``rel_t (B, h, Nq, k_t)``, ``rel_h (B, h, Nq, k_h)``, ``rel_w (B, h, Nq, k_w)``: the
    logit added for query n and key (t, h, w) is ``rel_t[n, t] + rel_h[n, h] + rel_w[n, w]``.
    """
    B, nh, n_q, d = q.shape
    qt, qh, qw = q_thw
    r_t, r_h, r_w = tables
    grid = q.reshape(B, nh, qt, qh, qw, d)
    rel_t = torch.einsum("bythwc,tkc->bythwk", grid, r_t)  # (B, h, qt, qh, qw, k_t)
    rel_h = torch.einsum("bythwc,hkc->bythwk", grid, r_h)  # (B, h, qt, qh, qw, k_h)
    rel_w = torch.einsum("bythwc,wkc->bythwk", grid, r_w)  # (B, h, qt, qh, qw, k_w)
    return (rel_t.reshape(B, nh, n_q, -1), rel_h.reshape(B, nh, n_q, -1), rel_w.reshape(B, nh, n_q, -1))


def build_rel_pos_mask(rel_t: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, k_thw: THW) -> torch.Tensor:
    """The additive attention mask ``(B, h, 1 + Nq, 1 + Nk)`` with a zero CLS row and column.

    Written in place into one buffer; no autograd (see :class:`RelPosMask`).
    """
    B, nh, n_q, kt = rel_t.shape
    _, kh, kw = k_thw
    mask = rel_t.new_empty(B, nh, 1 + n_q, 1 + kt * kh * kw)
    mask[:, :, 0, :] = 0.0
    mask[:, :, 1:, 0] = 0.0
    inner = mask[:, :, 1:, 1:].view(B, nh, n_q, kt, kh, kw)  # (B, h, Nq, kt, kh, kw) view
    th = rel_t[..., :, None] + rel_h[..., None, :]  # (B, h, Nq, kt, kh)
    torch.add(th[..., None], rel_w[..., None, None, :], out=inner)
    return mask


def reduce_rel_pos_grad(grad_mask: torch.Tensor, k_thw: THW) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``rel_t, rel_h, rel_w`` from the gradient of the full mask."""
    B, nh, lq, _ = grad_mask.shape
    kt, kh, kw = k_thw
    g = grad_mask[:, :, 1:, 1:].reshape(B, nh, lq - 1, kt, kh, kw)  # view when contiguous
    g_th = g.sum(-1)  # (B, h, Nq, kt, kh)
    return g_th.sum(-1), g_th.sum(-2), g.sum((-3, -2))


class RelPosMask(torch.autograd.Function):
    """Differentiable :func:`build_rel_pos_mask` whose backward is two reductions."""

    @staticmethod
    def forward(ctx, rel_t, rel_h, rel_w, k_thw):  # type: ignore[override]
        ctx.k_thw = tuple(k_thw)
        return build_rel_pos_mask(rel_t, rel_h, rel_w, k_thw)

    @staticmethod
    def backward(ctx, grad_mask):  # type: ignore[override]
        g_t, g_h, g_w = reduce_rel_pos_grad(grad_mask, ctx.k_thw)
        return g_t, g_h, g_w, None


def _rel_terms(q_grid: torch.Tensor, q_thw: THW, tables: Sequence[torch.Tensor]):
    """:func:`decomposed_rel_pos` for gathered tables on ``q_grid (n, Nq, d)`` (no head axis)."""
    n, _, d = q_grid.shape
    g = q_grid.reshape(n, *q_thw, d)  # (n, qt, qh, qw, d)
    r_t, r_h, r_w = tables
    return (torch.einsum("nthwc,tkc->nthwk", g, r_t).reshape(n, -1, r_t.shape[1]),
            torch.einsum("nthwc,hkc->nthwk", g, r_h).reshape(n, -1, r_h.shape[1]),
            torch.einsum("nthwc,wkc->nthwk", g, r_w).reshape(n, -1, r_w.shape[1]))


class _FusedRelPosAttentionCPU(torch.autograd.Function):
    """Relative-position attention for CPU training: fused SDPA forward, recomputing backward.

    Inputs are the pooled ``q, k, v (B, h, 1+N, d)`` and the gathered per-axis tables
    ``R_t (qt, kt, d), R_h (qh, kh, d), R_w (qw, kw, d)``. Saves only q, k, v, the tables and the
    output - nothing attention-sized and no permuted copies of q. The backward walks the
    batch*heads in chunks (at most ~64 MB of scores alive): it recomputes the rel-pos terms, the
    mask and ``P = softmax(s q k^T + M)``, then ``dV = P^T dO``,
    ``dS = P * (dO V^T - rowsum(dO * O))``, ``dQ = s dS K + (rel-pos part)``, ``dK = s dS^T Q``
    and reduces ``dS`` to the rel-pos terms and the tables.
    """

    @staticmethod
    def forward(ctx, q, k, v, r_t, r_h, r_w, q_thw, k_thw, scale):  # type: ignore[override]
        B, nh, lq, d = q.shape
        rel = [t.view(B, nh, lq - 1, -1) for t in _rel_terms(q[:, :, 1:].reshape(B * nh, lq - 1, d), q_thw,
                                                                  (r_t, r_h, r_w))]
        mask = build_rel_pos_mask(*rel, k_thw).to(q.dtype)
        del rel
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        del mask
        ctx.save_for_backward(q, k, v, r_t, r_h, r_w, out)
        ctx.q_thw, ctx.k_thw, ctx.scale = tuple(q_thw), tuple(k_thw), scale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, r_t, r_h, r_w, out = ctx.saved_tensors
        scale, q_thw, k_thw = ctx.scale, ctx.q_thw, ctx.k_thw
        tables = (r_t, r_h, r_w)
        B, nh, lq, d = q.shape
        lk = k.shape[2]
        n_all = B * nh
        qf, kf, vf = (t.reshape(n_all, -1, d) for t in (q, k, v))
        of, gof = out.reshape(n_all, lq, d), grad_out.reshape(n_all, lq, d)
        dq, dk, dv = (t.new_empty(n_all, t.shape[2], d) for t in (q, k, v))
        d_tables = [torch.zeros_like(t) for t in tables]
        per = max(1, int((16 << 20) // max(1, lq * lk)))
        for s in range(0, n_all, per):
            e = min(n_all, s + per)
            qg = qf[s:e, 1:]  # (n, Nq, d) grid queries
            rel = [t.unsqueeze(1) for t in _rel_terms(qg, q_thw, tables)]
            mask = build_rel_pos_mask(*rel, k_thw).squeeze(1).to(q.dtype)  # (n, lq, lk)
            del rel
            p = torch.baddbmm(mask, qf[s:e], kf[s:e].transpose(1, 2), alpha=scale)
            del mask
            p = torch.softmax(p, dim=-1)  # (n, lq, lk)
            go = gof[s:e]
            torch.bmm(p.transpose(1, 2), go, out=dv[s:e])
            ds = torch.bmm(go, vf[s:e].transpose(1, 2))  # dP (n, lq, lk)
            ds.sub_((go * of[s:e]).sum(-1, keepdim=True)).mul_(p)  # dS in place
            del p
            torch.bmm(ds, kf[s:e], out=dq[s:e]).mul_(scale)
            torch.bmm(ds.transpose(1, 2), qf[s:e], out=dk[s:e]).mul_(scale)
            g_rel = reduce_rel_pos_grad(ds.unsqueeze(1), k_thw)  # each (n, 1, Nq, k_axis)
            del ds
            n = e - s
            g6 = qg.reshape(n, *q_thw, d)
            for axis, (g, table, dtab) in enumerate(zip(g_rel, tables, d_tables)):
                shape = [n, *q_thw, table.shape[1]]
                g = g.reshape(shape)  # (n, qt, qh, qw, k_axis)
                sub = "thw"[axis]
                dq[s:e, 1:] += torch.einsum(f"nthwk,{sub}kc->nthwc", g, table).reshape(n, lq - 1, d)
                dtab += torch.einsum(f"nthwc,nthwk->{sub}kc", g6, g)
        shape = (B, nh, -1, d)
        return (dq.view(shape), dk.view(shape), dv.view(shape), *d_tables, None, None, None)


def rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    q_thw: THW,
    k_thw: THW,
    impl: str = "sdpa",
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + M) v`` with ``M`` the zero-CLS relative-position mask.

    ``q (B, h, 1+Nq, d)`` pooled and normalised (its grid part gives the rel-pos logits),
    ``k, v (B, h, 1+Nk, d)``, ``tables`` the gathered ``R_t, R_h, R_w`` (``(q_axis, k_axis, d)``
    each), ``q_thw`` / ``k_thw`` the grids. Returns ``(B, h, 1+Nq, d)``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    needs_grad = recompute_ok(q) and any(t.requires_grad for t in (q, k, v, *tables))
    if impl == "sdpa" and needs_grad and q.device.type == "cpu":
        return _FusedRelPosAttentionCPU.apply(q, k, v, *tables, q_thw, k_thw, scale)
    rel = decomposed_rel_pos(q[:, :, 1:], q_thw, tables)
    mask = RelPosMask.apply(*rel, k_thw)
    if impl == "explicit":
        scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, h, 1+Nq, 1+Nk)
        scores.add_(mask)  # in place: the matmul's backward does not need its output
        return torch.matmul(scores.softmax(dim=-1), v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=scale)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str = "sdpa") -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``(B, h, L, d)`` tensors, fused or explicit."""
    if impl == "explicit":
        scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
        return torch.matmul(scores.softmax(dim=-1), v)
    return F.scaled_dot_product_attention(q, k, v)
