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

THW = tuple  # (T, H, W) token grid


# --------------------------------------------------------------------------------------------
# small modules


def as_laid_out(param: torch.Tensor) -> torch.Tensor:
    """``param`` through a flat view of itself: the same values, no copy, but a gradient laid out like
    ``param`` (its contiguous strides, size-1 dimensions included).

    Autograd returns a view's gradient through ``reshape``, so whatever layout the kernel that used
    the parameter produced -- a channels-last weight gradient from a convolution on channels-last
    input, a slice of ``cat``'s gradient at batch 1 -- arrives at the parameter with its strides.
    DistributedDataParallel needs that: a gradient whose strides differ from its bucket view's (the
    parameter's) is copied element by element each step, with the warning "Grad strides do not match
    bucket view strides". ``tests/test_engine_ddp.py`` checks every registered tiny model.
    """
    return param.view(-1).view(param.shape)


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
        g2 = grad.reshape(-1, grad.shape[-1])
        d_weight = g2.t().mm(F.gelu(h).reshape(-1, h.shape[-1]))  # GELU output freed right after
        d_bias = g2.sum(0)
        d_h = grad.matmul(weight)  # d loss / d GELU output, then turned into d loss / d h in place
        torch.ops.aten.gelu_backward.grad_input(d_h, h, grad_input=d_h)
        return d_h, d_weight, d_bias


class _NormMlpRecompute(torch.autograd.Function):
    """``MLP(LayerNorm(x))`` storing only ``x``: LayerNorm and the first Linear are recomputed in backward.

    Used for the large-token backbone blocks (see ``recompute_tokens``); unlike a generic
    checkpoint it recomputes neither the GELU twice nor the second Linear.
    """

    @staticmethod
    def forward(ctx, x, ln_w, ln_b, w1, b1, w2, b2, eps):  # type: ignore[override]
        ctx.save_for_backward(x, ln_w, ln_b, w1, b1, w2)
        ctx.eps = eps
        h = F.linear(F.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps), w1, b1)
        return F.linear(F.gelu(h), w2, b2)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, ln_w, ln_b, w1, b1, w2 = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in (x, ln_w, ln_b)]
            xn = F.layer_norm(leaves[0], (x.shape[-1],), leaves[1], leaves[2], ctx.eps)
        h = F.linear(xn.detach(), w1, b1)
        g2 = grad.reshape(-1, grad.shape[-1])
        d_w2 = g2.t().mm(F.gelu(h).reshape(-1, h.shape[-1]))
        d_b2 = g2.sum(0)
        d_h = grad.matmul(w2)
        torch.ops.aten.gelu_backward.grad_input(d_h, h, grad_input=d_h)
        del h
        dh2 = d_h.reshape(-1, d_h.shape[-1])
        d_w1 = dh2.t().mm(xn.detach().reshape(-1, x.shape[-1]))
        d_b1 = dh2.sum(0)
        d_x, d_lw, d_lb = torch.autograd.grad(xn, leaves, d_h.matmul(w1))
        return d_x, d_lw, d_lb, d_w1, d_b1, d_w2, d_b2, None


def norm_mlp_recompute(x: torch.Tensor, norm: nn.LayerNorm, mlp: "Mlp") -> torch.Tensor:
    """``mlp(norm(x))`` through :class:`_NormMlpRecompute` (training memory saver)."""
    return _NormMlpRecompute.apply(x, norm.weight, norm.bias, mlp[0].weight, mlp[0].bias, mlp[2].weight,
                                   mlp[2].bias, norm.eps)


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


def build_rel_pos_mask(rel_t: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, k_thw: THW,
                       rows: tuple[int, int] | None = None) -> torch.Tensor:
    """The additive attention mask ``(B, h, 1 + Nq, 1 + Nk)`` with a zero CLS row and column.

    ``rows=(r0, r1)`` builds only mask rows ``r0:r1`` (row 0 is the CLS query). Written in place
    into one buffer; no autograd (see :class:`RelPosMask`).
    """
    B, nh, n_q, kt = rel_t.shape
    _, kh, kw = k_thw
    r0, r1 = rows if rows is not None else (0, 1 + n_q)
    mask = rel_t.new_empty(B, nh, r1 - r0, 1 + kt * kh * kw)
    mask[..., 0] = 0.0
    g0 = max(r0, 1)  # first grid-query row of the block
    if r0 == 0:
        mask[:, :, 0, :] = 0.0
    inner = mask[:, :, g0 - r0:, 1:].view(B, nh, r1 - g0, kt, kh, kw)  # (B, h, rows, kt, kh, kw) view
    sel = slice(g0 - 1, r1 - 1)
    th = rel_t[:, :, sel, :, None] + rel_h[:, :, sel, None, :]  # (B, h, rows, kt, kh)
    torch.add(th[..., None], rel_w[:, :, sel, None, None, :], out=inner)
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


#: elements of one block of attention scores in the chunked CPU path (2**21 fp32 = 8 MB): small
#: enough to stay in the allocator's reused heap (no fresh pages per block) and in cache
_CHUNK_ELEMENTS = 1 << 21


def _row_chunks(batch_heads: int, lq: int, lk: int) -> list[tuple[int, int]]:
    rows = max(1, _CHUNK_ELEMENTS // max(1, batch_heads * lk))
    return [(r0, min(lq, r0 + rows)) for r0 in range(0, lq, rows)]


def chunked_rel_pos_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         rel: Sequence[torch.Tensor], k_thw: THW, scale: float) -> torch.Tensor:
    """Fused SDPA with the rel-pos mask, one block of query rows at a time (no autograd).

    Never materialises the full ``(B, h, 1+Nq, 1+Nk)`` mask; FLOP counters see ordinary SDPA
    calls whose shapes add up to the full attention.
    """
    B, nh, lq, d = q.shape
    out = q.new_empty(B, nh, lq, v.shape[-1])
    for r0, r1 in _row_chunks(B * nh, lq, k.shape[2]):
        mask = build_rel_pos_mask(*rel, k_thw, rows=(r0, r1)).to(q.dtype)
        out[:, :, r0:r1] = F.scaled_dot_product_attention(q[:, :, r0:r1], k, v, attn_mask=mask, scale=scale)
    return out


_AXES = ("nthwk,tkc->nthwc", "nthwk,hkc->nthwc", "nthwk,wkc->nthwc")
_TABLE_GRADS = ("nthwc,nthwk->tkc", "nthwc,nthwk->hkc", "nthwc,nthwk->wkc")


class _FusedRelPosAttentionCPU(torch.autograd.Function):
    """Relative-position attention for CPU training: chunked fused forward, recomputing backward.

    Inputs: pooled ``q, k, v (B, h, 1+N, d)`` and the gathered tables ``R_t, R_h, R_w``
    (``(q_axis, k_axis, d)``). Saves q, k, v, the tables and the output - nothing attention-sized
    and no permuted copies of q. Backward walks blocks of query rows (``_CHUNK_ELEMENTS`` scores
    at a time): recompute ``P = softmax(s q k^T + M)`` for the block, then ``dV += P^T dO``,
    ``dS = P * (dO V^T - rowsum(dO * O))``, ``dQ = s dS K``, ``dK += s dS^T Q``; the mask gradient
    ``dS`` is reduced to the per-axis terms and finally to ``dQ`` and the tables.
    """

    @staticmethod
    def forward(ctx, q, k, v, r_t, r_h, r_w, q_thw, k_thw, scale):  # type: ignore[override]
        rel = decomposed_rel_pos(q[:, :, 1:], q_thw, (r_t, r_h, r_w))
        out = chunked_rel_pos_sdpa(q, k, v, rel, k_thw, scale)
        ctx.save_for_backward(q, k, v, r_t, r_h, r_w, out)
        ctx.q_thw, ctx.k_thw, ctx.scale = tuple(q_thw), tuple(k_thw), scale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, r_t, r_h, r_w, out = ctx.saved_tensors
        scale, q_thw, k_thw = ctx.scale, ctx.q_thw, ctx.k_thw
        tables = (r_t, r_h, r_w)
        kt, kh, kw = k_thw
        B, nh, lq, d = q.shape
        lk = k.shape[2]
        n = B * nh
        rel = [t.reshape(n, 1, lq - 1, -1) for t in decomposed_rel_pos(q[:, :, 1:], q_thw, tables)]
        qf, kf, vf = q.reshape(n, lq, d), k.reshape(n, lk, d), v.reshape(n, lk, -1)
        go = grad_out.reshape(n, lq, -1)
        delta = (go * out.reshape(n, lq, -1)).sum(-1, keepdim=True)  # (n, lq, 1) = rowsum(dP * P)
        dq = q.new_empty(n, lq, d)
        dk, dv = torch.zeros_like(kf), torch.zeros_like(vf)
        g_rel = [q.new_empty(n, lq - 1, size) for size in k_thw]  # d loss / d rel_{t,h,w}
        for r0, r1 in _row_chunks(n, lq, lk):
            mask = build_rel_pos_mask(*rel, k_thw, rows=(r0, r1)).view(n, r1 - r0, lk).to(q.dtype)
            qc = qf[:, r0:r1]
            p = torch.baddbmm(mask, qc, kf.transpose(1, 2), alpha=scale)  # scores (n, rows, lk)
            del mask
            p = torch.softmax(p, dim=-1)
            goc = go[:, r0:r1]
            dv.baddbmm_(p.transpose(1, 2), goc)
            ds = torch.bmm(goc, vf.transpose(1, 2))  # dP
            ds.sub_(delta[:, r0:r1]).mul_(p)  # dS, in place
            del p
            torch.bmm(ds, kf, out=dq[:, r0:r1]).mul_(scale)
            dk.baddbmm_(ds.transpose(1, 2), qc, alpha=scale)
            g0 = max(r0, 1)
            g = ds[:, g0 - r0:, 1:].reshape(n, r1 - g0, kt, kh, kw)  # mask gradient of the grid rows
            g_th = g.sum(-1)
            g_rel[0][:, g0 - 1:r1 - 1] = g_th.sum(-1)
            g_rel[1][:, g0 - 1:r1 - 1] = g_th.sum(-2)
            g_rel[2][:, g0 - 1:r1 - 1] = g.sum((-3, -2))
        q6 = qf[:, 1:].reshape(n, *q_thw, d)
        d_tables = []
        for g, table, to_q, to_table in zip(g_rel, tables, _AXES, _TABLE_GRADS):
            g6 = g.view(n, *q_thw, -1)
            dq[:, 1:] += torch.einsum(to_q, g6, table).reshape(n, lq - 1, d)
            d_tables.append(torch.einsum(to_table, q6, g6))
        return (dq.view(B, nh, lq, d), dk.view(B, nh, lk, d), dv.view(B, nh, lk, -1), *d_tables,
                None, None, None)


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

    ``sdpa`` on CPU runs the fused kernel on blocks of query rows (never a full mask) and, in
    training, the recomputing backward of :class:`_FusedRelPosAttentionCPU`; on other devices
    it hands the full mask to the fused kernel and lets autograd differentiate it.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, *tables))
    if impl == "sdpa" and q.device.type == "cpu" and needs_grad and recompute_ok(q):
        return _FusedRelPosAttentionCPU.apply(q, k, v, *tables, q_thw, k_thw, scale)
    rel = decomposed_rel_pos(q[:, :, 1:], q_thw, tables)  # (B, h, Nq, k_axis) x 3
    if impl == "explicit":
        mask = RelPosMask.apply(*rel, k_thw)
        scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, h, 1+Nq, 1+Nk)
        scores.add_(mask)  # in place: the matmul's backward does not need its output
        return torch.matmul(scores.softmax(dim=-1), v)
    if q.device.type == "cpu" and not needs_grad:
        return chunked_rel_pos_sdpa(q, k, v, rel, k_thw, scale)
    mask = RelPosMask.apply(*rel, k_thw).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str = "sdpa") -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``(B, h, L, d)`` tensors, fused or explicit."""
    if impl == "explicit":
        scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
        return torch.matmul(scores.softmax(dim=-1), v)
    return F.scaled_dot_product_attention(q, k, v)
