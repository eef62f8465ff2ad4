"""MViTv2 blocks and backbone: parameter parity (spec 4.2), rel-pos geometry, attention paths."""

import math

import pytest
import torch
import torch.nn.functional as F

from ifdd_bench.models.layers import (
    DropPath,
    Mlp,
    build_rel_pos_mask,
    decomposed_rel_pos,
    gather_rel_pos_tables,
    plain_attention,
    rel_pos_attention,
    rel_pos_index,
)
from ifdd_bench.models.mvit import MultiscaleBlock, MViTBackbone

PAPER = dict(widths=(96, 192, 384, 768), depths=(1, 2, 5, 2), heads=(1, 2, 4, 8), kv_strides=(8, 4, 2, 1))

# spec table 4.2: (params incl. rel-pos, rel-pos params, q grid, kv grid)
BLOCK_TABLE = [
    (142_944, 22_752, (8, 56, 56), (8, 7, 7)),
    (428_352, 12_000, (8, 28, 28), (8, 14, 14)),
    (465_216, 12_000, (8, 28, 28), (8, 7, 7)),
    (1_641_984, 6_624, (8, 14, 14), (8, 14, 14)),
    *[(1_789_440, 6_624, (8, 14, 14), (8, 7, 7))] * 4,
    (6_513_024, 6_624, (8, 7, 7), (8, 14, 14)),
    (7_100_160, 3_936, (8, 7, 7), (8, 7, 7)),
]


def numel(module):
    return sum(p.numel() for p in module.parameters())


def test_backbone_parameter_parity_per_block():
    with torch.device("meta"):  # shapes only: no memory, no init cost
        bb = MViTBackbone(grid=(8, 56, 56), **PAPER)
    assert len(bb.blocks) == 10
    for i, (block, (total, rel, q_thw, k_thw)) in enumerate(zip(bb.blocks, BLOCK_TABLE)):
        attn = block.attn
        rel_params = attn.rel_pos_h.numel() + attn.rel_pos_w.numel() + attn.rel_pos_t.numel()
        assert (numel(block), rel_params) == (total, rel), f"block {i}"
        assert (attn.q_thw, attn.k_thw) == (q_thw, k_thw), f"block {i}"
        assert attn.head_dim == 96
    assert numel(bb) == 23_451_072  # CLS + blocks + final norm
    assert bb.stage_thw == [(8, 56, 56), (8, 28, 28), (8, 14, 14), (8, 7, 7)]


def test_rel_pos_index_matches_the_ratio_formula():
    # equal sizes: plain offset i - j + (k - 1)
    idx = rel_pos_index(7, 7)
    assert idx[0, 0] == 6 and idx[6, 0] == 12 and idx[0, 6] == 0
    # q finer than k (56 vs 7): key index scaled by 8
    idx = rel_pos_index(56, 7)
    assert idx.shape == (56, 7) and idx.max() == 55 + 6 * 8 < 2 * 56 - 1 and idx.min() == 0
    assert idx[10, 1] == int(10 - 1 * 8 + 6 * 8)
    # q coarser than k (7 vs 14): query index scaled by 2
    idx = rel_pos_index(7, 14)
    assert idx[3, 5] == int(3 * 2 - 5 + 13)


def test_rel_pos_mask_matches_brute_force():
    torch.manual_seed(0)
    B, nh, d = 2, 2, 8
    q_thw, k_thw = (2, 4, 4), (2, 2, 2)
    n_q = math.prod(q_thw)
    q = torch.randn(B, nh, n_q, d)
    raw = [torch.randn(2 * max(a, b) - 1, d) for a, b in zip(q_thw, k_thw)]
    idx = [rel_pos_index(a, b) for a, b in zip(q_thw, k_thw)]
    mask = build_rel_pos_mask(*decomposed_rel_pos(q, q_thw, gather_rel_pos_tables(raw, idx)), k_thw)
    assert mask.shape == (B, nh, 1 + n_q, 1 + math.prod(k_thw))
    assert mask[:, :, 0].abs().max() == 0 and mask[:, :, :, 0].abs().max() == 0  # CLS row / column
    for (b, h, n, m) in [(0, 0, 0, 0), (1, 1, 17, 5), (0, 1, 31, 7), (1, 0, 9, 2)]:
        qt, qh, qw = n // 16, (n // 4) % 4, n % 4
        kt, kh, kw = m // 4, (m // 2) % 2, m % 2
        expect = sum(q[b, h, n] @ table[ix[qi, ki]]
                     for table, ix, qi, ki in zip(raw, idx, (qt, qh, qw), (kt, kh, kw)))
        assert torch.allclose(mask[b, h, 1 + n, 1 + m], expect, atol=1e-5)


def _attention_inputs(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    B, nh, d = 2, 2, 16
    q_thw, k_thw = (4, 8, 8), (4, 4, 4)
    q = torch.randn(B, nh, 1 + math.prod(q_thw), d, dtype=dtype)
    k = torch.randn(B, nh, 1 + math.prod(k_thw), d, dtype=dtype)
    v = torch.randn_like(k)
    raw = [torch.randn(2 * max(a, b) - 1, d, dtype=dtype) * 0.3 for a, b in zip(q_thw, k_thw)]
    return [q, k, v, *raw], q_thw, k_thw


def _run_attention(inputs, q_thw, k_thw, impl, grad_out=None):
    leaves = [t.detach().clone().requires_grad_(grad_out is not None) for t in inputs]
    idx = [rel_pos_index(a, b) for a, b in zip(q_thw, k_thw)]
    tables = gather_rel_pos_tables(leaves[3:], idx)
    out = rel_pos_attention(leaves[0], leaves[1], leaves[2], tables, q_thw, k_thw, impl)
    if grad_out is None:
        return out, []
    out.backward(grad_out)
    return out, [t.grad for t in leaves]


def test_sdpa_and_explicit_attention_agree_forward_and_backward():
    inputs, q_thw, k_thw = _attention_inputs(torch.float32)
    grad_out = torch.randn(inputs[0].shape)
    ref, ref_grads = _run_attention(inputs, q_thw, k_thw, "explicit", grad_out)
    out, grads = _run_attention(inputs, q_thw, k_thw, "sdpa", grad_out)  # fused CPU training path
    assert torch.allclose(out, ref, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # fused inference path
        out_eval, _ = _run_attention(inputs, q_thw, k_thw, "sdpa")
    assert torch.allclose(out_eval, ref, atol=1e-5)


def test_attention_against_float64_explicit_formula():
    inputs, q_thw, k_thw = _attention_inputs(torch.float64, seed=1)
    q, k, v, *raw = inputs
    idx = [rel_pos_index(a, b) for a, b in zip(q_thw, k_thw)]
    bias = build_rel_pos_mask(*decomposed_rel_pos(q[:, :, 1:], q_thw, gather_rel_pos_tables(raw, idx)), k_thw)
    expect = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias, -1) @ v
    out, _ = _run_attention([t.float() for t in inputs], q_thw, k_thw, "sdpa")
    assert torch.allclose(out.double(), expect, atol=1e-5)


def test_plain_attention_impls_agree():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 10, 8) for _ in range(3))
    assert torch.allclose(plain_attention(q, k, v, "sdpa"), plain_attention(q, k, v, "explicit"), atol=1e-6)


def test_mlp_recompute_backward_equals_plain():
    torch.manual_seed(0)
    mlp = Mlp(8, 32)
    x = torch.randn(3, 5, 8, requires_grad=True)
    mlp(x).square().sum().backward()  # custom GELU-recompute path
    grads = [x.grad.clone()] + [p.grad.clone() for p in mlp.parameters()]
    x.grad = None
    mlp.zero_grad()
    mlp[2](mlp[1](mlp[0](x))).square().sum().backward()  # plain autograd
    for g, r in zip(grads, [x.grad] + [p.grad for p in mlp.parameters()]):
        assert torch.allclose(g, r, atol=1e-6)


def test_block_shapes_and_cls_handling():
    torch.manual_seed(0)
    block = MultiscaleBlock(16, 32, 2, (4, 8, 8), q_stride=2, kv_stride=2)
    x = torch.randn(2, 1 + 4 * 8 * 8, 16)
    y = block(x)
    assert y.shape == (2, 1 + 4 * 4 * 4, 32)
    assert block.thw_out == (4, 4, 4) and block.attn.k_thw == (4, 4, 4)
    assert torch.isfinite(y).all()
    # the skip of a pooled block is the max-pooled projection of the normalised input
    with torch.no_grad():
        proj = block.project(block.norm1(x))[:, 1:].reshape(2, 4, 8, 8, 32).permute(0, 4, 1, 2, 3)
        pooled = F.max_pool3d(proj, (1, 3, 3), (1, 2, 2), (0, 1, 1)).flatten(2).transpose(1, 2)
        assert torch.allclose(block.pool_skip(block.project(block.norm1(x)))[:, 1:], pooled)


def test_block_sdpa_equals_explicit_with_gradients():
    torch.manual_seed(0)
    blocks = {impl: MultiscaleBlock(16, 32, 2, (4, 8, 8), 2, 2, attn_impl=impl) for impl in ("sdpa", "explicit")}
    blocks["explicit"].load_state_dict(blocks["sdpa"].state_dict())
    x = torch.randn(2, 1 + 256, 16)
    outs, grads = {}, {}
    for impl, block in blocks.items():
        outs[impl] = block(x)
        outs[impl].square().mean().backward()
        grads[impl] = {n: p.grad for n, p in block.named_parameters()}
    assert torch.allclose(outs["sdpa"], outs["explicit"], atol=1e-5)
    for name, g in grads["sdpa"].items():
        assert torch.allclose(g, grads["explicit"][name], atol=1e-5, rtol=1e-4), name


def test_backbone_taps_shapes_tiny():
    torch.manual_seed(0)
    bb = MViTBackbone((16, 32, 64, 128), (1, 1, 2, 1), (1, 2, 4, 8), (8, 4, 2, 1), grid=(8, 16, 16), taps=(1, 2, 3))
    taps = bb(torch.randn(2, 16, 8, 16, 16))
    assert [t.shape for t in taps] == [(2, 1 + 8 * 64, 32), (2, 1 + 8 * 16, 64), (2, 1 + 8 * 4, 128)]
    # the last tap is layer-normalised over channels (weight 1, bias 0 at init)
    assert torch.allclose(taps[-1].mean(-1), torch.zeros(2, 33), atol=1e-5)


def test_drop_path_drops_whole_samples():
    dp = DropPath(0.5)
    x = torch.ones(64, 3, 4)
    torch.manual_seed(0)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()  # all-or-nothing per sample
    dp.eval()
    assert torch.equal(dp(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_recomputing_block_matches_plain_block():
    torch.manual_seed(0)
    plain = MultiscaleBlock(16, 32, 2, (4, 8, 8), q_stride=2, kv_stride=2)
    lean = MultiscaleBlock(16, 32, 2, (4, 8, 8), q_stride=2, kv_stride=2)
    lean.load_state_dict(plain.state_dict())
    lean.set_recompute(True)  # checkpointed q/k/v pooling and skip, MLP through _NormMlpRecompute
    x = torch.randn(2, 1 + 256, 16, requires_grad=True)
    grads = []
    for block in (plain, lean):
        x.grad = None
        out = block(x)
        out.square().mean().backward()
        grads.append([out.detach(), x.grad.clone()] + [p.grad.clone() for p in block.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
