"""Complexity counters against closed forms (tiny shapes, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ifdd_bench.engine.complexity import (
    attention_backward_macs,
    attention_macs,
    count_flops,
    count_macs,
    count_params,
    format_ops,
    module_breakdown,
)
from ifdd_bench.models.output import ModelOutput


def test_linear_macs_equal_closed_form():
    lin = nn.Linear(12, 5)
    x = torch.randn(3, 7, 12)  # 21 rows
    macs = count_macs(lin, x)
    assert macs.total == 3 * 7 * 12 * 5
    assert macs.by_operator == {"linear": 3 * 7 * 12 * 5}
    assert macs.counter == "fvcore" and macs.version and "MACs" in macs.unit
    flops = count_flops(lin, x)
    assert flops.total == 2 * macs.total
    assert flops.counter == "torch.utils.flop_counter" and flops.version == torch.__version__


@pytest.mark.parametrize("groups,stride,padding", [(1, 1, 1), (2, (1, 2, 2), (0, 1, 1))])
def test_conv3d_macs_equal_closed_form(groups, stride, padding):
    conv = nn.Conv3d(4, 6, kernel_size=(3, 3, 3), stride=stride, padding=padding, groups=groups)
    x = torch.randn(2, 4, 5, 9, 9)
    out_shape = conv(x).shape  # (B, C_out, T', H', W')
    per_output = (4 // groups) * 3 * 3 * 3
    expected = math.prod(out_shape) * per_output
    assert count_macs(conv, x).total == expected
    assert count_flops(conv, x).total == 2 * expected


class _FusedAttention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class _ExplicitAttention(nn.Module):
    def forward(self, q, k, v):
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, L, S)
        return scores.softmax(-1) @ v  # (B, H, L, Ev)


def test_sdpa_handle_matches_explicit_matmul_formulation():
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 14, 8), torch.randn(2, 3, 14, 6)
    fused, explicit = count_macs(_FusedAttention(), (q, k, v)), count_macs(_ExplicitAttention(), (q, k, v))
    assert fused.total == explicit.total == attention_macs(q.shape, k.shape, v.shape) == 2 * 3 * 10 * 14 * (8 + 6)
    assert "aten::scaled_dot_product_attention" not in fused.unsupported
    assert fused.extra_handles == {"scaled_dot_product_attention": fused.total}
    # torch's counter: the CPU fused kernel (taken when E == Ev) gets our formula; the explicit
    # form is counted as bmm by torch itself
    v = torch.randn(2, 3, 14, 8)
    flops_fused = count_flops(_FusedAttention(), (q, k, v))
    assert "_scaled_dot_product_flash_attention_for_cpu" in flops_fused.by_operator
    assert flops_fused.total == count_flops(_ExplicitAttention(), (q, k, v)).total
    assert flops_fused.total == 2 * count_macs(_FusedAttention(), (q, k, v)).total


def test_sdpa_backward_formula_matches_torch_cuda_convention():
    from torch.utils.flop_counter import sdpa_backward_flop_count

    q, k, v = (2, 4, 10, 8), (2, 4, 12, 8), (2, 4, 12, 8)
    assert 2 * attention_backward_macs(q, k, v) == sdpa_backward_flop_count(q, q, k, v)
    qt, kt, vt = (torch.randn(*s, requires_grad=True) for s in (q, k, v))
    both = count_flops(_FusedAttention(), (qt, kt, vt), backward=True)
    assert both.backward
    assert both.total == 2 * attention_macs(q, k, v) + 2 * attention_backward_macs(q, k, v)


@pytest.mark.parametrize("groups,transposed", [(1, False), (8, False), (4, True)])
def test_conv_backward_counts_grad_input_and_grad_weight_once_each(groups, transposed):
    conv_cls = nn.ConvTranspose3d if transposed else nn.Conv3d
    first = nn.Conv3d(8, 8, 3, padding=1)  # input needs no grad: only its grad-weight is computed
    second = conv_cls(8, 8, 3, padding=1, groups=groups)
    x = torch.randn(1, 8, 4, 6, 6)
    f_first, f_second = count_flops(first, x).total, count_flops(second, first(x)).total
    both = count_flops(nn.Sequential(first, second), x, backward=True)
    assert both.total == (f_first + f_second) + f_first + 2 * f_second


def test_lstm_and_gru_handles_count_every_gate_product():
    lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 5, 8)
    weights = sum(p.numel() for name, p in lstm.named_parameters() if name.startswith("weight"))
    macs = count_macs(lstm, x)
    assert macs.total == 2 * 5 * weights
    assert macs.unsupported == {}
    assert count_flops(lstm, x).total == 2 * macs.total  # oneDNN layer formula agrees
    gru = nn.GRU(8, 16)
    assert count_macs(gru, torch.randn(5, 2, 8)).total == count_flops(gru, torch.randn(5, 2, 8)).total // 2


def test_transformer_fast_paths_are_counted():
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    x = torch.randn(1, 5, 16)
    n, e = 5, 16
    mha = n * e * 3 * e + n * e * e + 2 * n * n * e
    ffn = 2 * n * e * 32
    macs = count_macs(layer, x)
    assert macs.by_operator.get("native_multi_head_attention", 0) + macs.by_operator.get("linear", 0) == mha + ffn
    assert count_flops(layer, x).total == 2 * (mha + ffn)  # fast path kernel formula


def test_unsupported_ops_are_reported_with_counts():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            y = F.gelu(self.lin(x)) + x
            return torch.cdist(y, y)  # has multiply-adds but no handle: must show up

    macs = count_macs(Net(), torch.randn(2, 3, 4))
    assert macs.unsupported["aten::gelu"] == 1
    assert macs.unsupported["aten::cdist"] == 1
    assert macs.total == 2 * 3 * 4 * 4
    assert format_ops({"b": 2, "a": 1}) == "a=1;b=2"


def test_timm_vit_has_no_uncounted_matrix_products():
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, num_classes=3)
    macs = count_macs(vit, torch.randn(1, 3, 32, 32))
    assert "scaled_dot_product_attention" in macs.by_operator
    assert set(macs.unsupported) <= {"aten::add", "aten::gelu", "aten::mul", "aten::softmax"}


def test_params_modes_outputs_and_breakdown():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv3d(3, 4, 1), nn.ReLU())
            self.head = nn.Linear(4, 2)
            self.cls = nn.Parameter(torch.zeros(4))  # free parameter: counted
            self.stem[0].bias.requires_grad_(False)

        def forward(self, x):
            feat = self.stem(x).mean(dim=(2, 3, 4)) + self.cls  # (B, 4)
            logits = self.head(feat)
            return ModelOutput(logits, {"aux": logits.sum() * 0}) if self.training else logits

    net = Net().train()
    x = torch.randn(2, 3, 2, 4, 4)
    assert count_params(net) == {"total": 12 + 4 + 10 + 4, "trainable": 12 + 10 + 4}
    macs = count_macs(net, x, by_module=True)
    assert net.training and all(m.training for m in net.modules())  # mode restored
    assert macs.by_module[""] == macs.total == macs.by_module["stem"] + macs.by_module["head"]
    assert count_flops(net, x, backward=True).total > 2 * macs.total
    rows = module_breakdown(net, x, max_depth=1, macs=macs)
    assert [r["module"] for r in rows] == ["", "stem", "head"]
    assert rows[0]["params"] == 30 and rows[2]["macs"] == 2 * 4 * 2
