"""The rewritten depthwise Conv3d (forward-conv backward) against F.conv3d's own gradients."""

import pytest
import torch
import torch.nn.functional as F

from ifdd_bench.models.depthwise import MAX_REWRITE_STRIDE, depthwise_conv3d, rewrite_pays
from ifdd_bench.models.mvit import HeadPool


def _grads(fn, x, w, grad_out):
    x = x.clone().requires_grad_()
    w = w.clone().requires_grad_()
    out = fn(x, w)
    out.backward(grad_out)
    return out.detach(), x.grad, w.grad


@pytest.mark.parametrize("shape,stride", [
    ((3, 4, 5, 6, 6), 1),
    ((2, 4, 4, 8, 8), 2),
    ((2, 3, 4, 7, 5), 2),  # odd sizes: the last row/column is not reached by the stride
    ((2, 4, 3, 9, 9), 4),  # beyond MAX_REWRITE_STRIDE: the built-in kernel, same contract
])
def test_matches_conv3d_values_and_gradients(shape, stride):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn(shape[1], 1, 3, 3, 3, generator=gen, dtype=torch.float64)
    reference = lambda a, b: F.conv3d(a, b, None, (1, stride, stride), 1, 1, shape[1])  # noqa: E731
    expected = reference(x, w)
    grad_out = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    ref_out, ref_gx, ref_gw = _grads(reference, x, w, grad_out)
    out, gx, gw = _grads(lambda a, b: depthwise_conv3d(a, b, stride), x, w, grad_out)
    assert out.shape == ref_out.shape
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(gx, ref_gx)
    torch.testing.assert_close(gw, ref_gw)


def test_gradcheck_rewritten_path():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 3, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    for stride in range(1, MAX_REWRITE_STRIDE + 1):
        assert torch.autograd.gradcheck(lambda a, b: depthwise_conv3d(a, b, stride), (x, w))


def test_channels_last_view_input():
    """HeadPool hands the conv a channels-last permuted view; the rewrite must accept it."""
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randn(2, 4, 6, 6, 5, generator=gen)  # (B, T, H, W, C)
    w = torch.randn(5, 1, 3, 3, 3, generator=gen)
    view = tokens.permute(0, 4, 1, 2, 3)  # (B, C, T, H, W), not contiguous
    dense = view.contiguous()
    grad_out = torch.randn(2, 5, 4, 3, 3, generator=gen)
    _, gx_view, gw_view = _grads(lambda a, b: depthwise_conv3d(a, b, 2), view, w, grad_out)
    _, gx_dense, gw_dense = _grads(lambda a, b: F.conv3d(a, b, None, (1, 2, 2), 1, 1, 5), dense, w, grad_out)
    torch.testing.assert_close(gx_view, gx_dense)
    torch.testing.assert_close(gw_view, gw_dense)


def test_rejects_a_kernel_that_is_not_depthwise_3x3x3():
    with pytest.raises(ValueError, match=r"\(C, 1, 3, 3, 3\) kernel for 4 channels"):
        depthwise_conv3d(torch.zeros(1, 4, 3, 5, 5), torch.zeros(4, 1, 5, 5, 5), 1)


def test_rewrite_rule():
    assert rewrite_pays(1, 16, 16) and rewrite_pays(2, 8, 8)
    assert not rewrite_pays(2, 16, 16) and not rewrite_pays(4, 4, 4)
    assert not HeadPool(4, 1).cpu_rewrite  # no grid given: the built-in kernel


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_head_pool_same_numbers_with_and_without_rewrite(stride):
    torch.manual_seed(3)
    pool = HeadPool(head_dim=4, stride=stride, grid_hw=(8, 8))
    assert pool.cpu_rewrite == (stride <= MAX_REWRITE_STRIDE)
    grid = torch.randn(2, 2, 4 * 8 * 8, 4)  # (B, heads, T*H*W, d)
    cls = torch.randn(2, 2, 1, 4)

    def run(rewrite: bool):
        # forced on at every stride: the rule keeps strides 4 and 8 on the built-in kernel for speed,
        # but the rewritten gradients must be right there too
        pool.cpu_rewrite = rewrite
        pool.zero_grad()
        g = grid.clone().requires_grad_()
        out = pool(g, cls, (4, 8, 8))
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), g.grad, pool.conv.weight.grad.clone()

    for a, b in zip(run(True), run(False)):
        torch.testing.assert_close(a, b)


def test_cpu_bf16_autocast_backward_runs_and_matches_builtin():
    """Under CPU autocast the forward conv runs in bf16; the rewritten backward must accept bf16
    gradients against the fp32 weight (it failed with a dtype error before custom_fwd/custom_bwd)."""
    torch.manual_seed(4)
    pool = HeadPool(head_dim=8, stride=1, grid_hw=(4, 4))
    grid = torch.randn(2, 2, 4 * 4 * 4, 8)
    cls = torch.randn(2, 2, 1, 8)
    weights = torch.linspace(-1, 1, 2 * 2 * 65 * 8).view(2, 2, 65, 8)  # output (B, h, 1 + 64, d)

    def run(rewrite: bool):
        pool.cpu_rewrite = rewrite
        pool.zero_grad()
        g = grid.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = pool(g, cls, (4, 4, 4))
        (out.float() * weights).sum().backward()
        return g.grad, pool.conv.weight.grad

    gx_new, gw_new = run(True)
    gx_old, gw_old = run(False)
    assert gw_new.dtype == torch.float32 and gx_new.dtype == grid.dtype
    torch.testing.assert_close(gx_new, gx_old, atol=0.05, rtol=0.05)
    torch.testing.assert_close(gw_new, gw_old, atol=0.5, rtol=0.05)


def test_fvcore_counts_the_rewritten_pools():
    """fvcore traces the model; the rewrite must not hide the pooling convolutions from it."""
    from ifdd_bench import registry
    from ifdd_bench.engine.complexity import count_macs

    model = registry.create_model("ifdd_tiny", "full")
    assert any(getattr(m, "cpu_rewrite", False) for m in model.modules())
    clip = torch.rand(1, 3, 16, 64, 64)
    counted = count_macs(model, clip)
    for module in model.modules():
        if hasattr(module, "cpu_rewrite"):
            module.cpu_rewrite = False
    built_in = count_macs(model, clip)
    assert counted.total == built_in.total
    assert not any("Depthwise" in op for op in counted.unsupported)
