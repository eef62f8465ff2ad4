"""Depthwise 3x3x3 convolution whose backward pass uses only forward convolutions (CPU speed).

MViT's pooling layers are depthwise ``Conv3d`` with kernel 3, padding 1 and stride ``(1, s, s)``.
On CPUs without AVX-512, PyTorch's depthwise ``Conv3d`` backward (oneDNN or the native kernel)
is 5-20x slower than its forward on the small token grids of ``ifdd_tiny``. Measured on a 2-core
AVX2 EPYC with torch 2.14, one thread (``benchmarks/bench_depthwise.py``): a ``(128, 16, 8, 4, 4)``
stride-1 pool took 48 ms forward + backward with the built-in kernel and 12 ms here.

The gradients are rewritten as forward convolutions:

* the output of stride ``s`` is every ``s``-th row and column of the stride-1 output, so the
  incoming gradient is first scattered into a zero stride-1 gradient ``(B, C, T, H, W)``;
* ``grad_input`` is the correlation of that gradient with the kernel flipped in t, h and w;
* ``grad_weight[c]`` is the correlation of the padded input of channel ``c`` with the gradient of
  channel ``c``, summed over the batch: one grouped convolution with ``B*C`` groups whose kernel
  is the gradient itself.

The numbers equal ``F.conv3d``'s gradients up to float rounding (``tests/test_depthwise.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: strides up to this can use the rewritten backward; beyond it the scattered stride-1 gradient
#: makes the rewrite slower than the built-in kernel (measured: stride 4 at 16x16, 32 ms vs 21 ms)
MAX_REWRITE_STRIDE = 2
#: a strided pool uses the rewrite only on grids of at most this many cells per frame (measured:
#: stride 2 on 8x8 and 4x4, 2.0-3.3x faster; on 16x16, 0.86x)
MAX_STRIDED_REWRITE_CELLS = 64


def rewrite_pays(stride: int, height: int, width: int) -> bool:
    """Whether :func:`depthwise_conv3d`'s rewritten backward beats the built-in one on the CPU
    for a pool of this stride on an input grid of ``height x width`` (measured; see the constants).
    """
    if stride == 1:
        return True
    return stride <= MAX_REWRITE_STRIDE and height * width <= MAX_STRIDED_REWRITE_CELLS


class _DepthwiseConv3d(torch.autograd.Function):
    """``F.conv3d(x, weight, stride=(1, s, s), padding=1, groups=C)`` with a forward-conv backward."""

    # the backward runs under the forward's autocast state, so its convolutions see the same dtypes
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        return F.conv3d(x, weight, None, (1, stride, stride), 1, 1, x.shape[1])  # (B, C, T, H', W')

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight = ctx.saved_tensors
        s = ctx.stride
        B, C, T, H, W = x.shape
        if s > 1:  # scatter into the stride-1 output's gradient: (B, C, T, H', W') -> (B, C, T, H, W)
            full = grad_out.new_zeros(B, C, T, H, W)
            full[..., ::s, ::s] = grad_out
            grad_out = full
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            padded = F.pad(grad_out, (1, 1, 1, 1, 1, 1))  # (B, C, T+2, H+2, W+2)
            grad_x = F.conv3d(padded, weight.flip(2, 3, 4), None, 1, 0, 1, C)  # (B, C, T, H, W)
        if ctx.needs_input_grad[1]:
            padded = F.pad(x, (1, 1, 1, 1, 1, 1)).reshape(1, B * C, T + 2, H + 2, W + 2)
            kernel = grad_out.reshape(B * C, 1, T, H, W)
            grad_w = F.conv3d(padded, kernel, None, 1, 0, 1, B * C)  # (1, B*C, 3, 3, 3)
            grad_w = grad_w.view(B, C, 3, 3, 3).sum(0).unsqueeze(1)  # (C, 1, 3, 3, 3)
        return grad_x, grad_w, None


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Depthwise 3x3x3 convolution, padding 1, stride ``(1, stride, stride)``, no bias.

    ``x (B, C, T, H, W)``, ``weight (C, 1, 3, 3, 3)`` -> ``(B, C, T, H', W')``. Same numbers as
    ``F.conv3d(x, weight, None, (1, stride, stride), 1, 1, C)``; the backward pass is rewritten as
    forward convolutions for ``stride <= MAX_REWRITE_STRIDE`` (see the module docstring).
    """
    if weight.shape[1:] != (1, 3, 3, 3) or weight.shape[0] != x.shape[1]:
        raise ValueError(f"depthwise_conv3d expects a (C, 1, 3, 3, 3) kernel for {x.shape[1]} channels, "
                         f"got {tuple(weight.shape)}")
    if stride > MAX_REWRITE_STRIDE:
        return F.conv3d(x, weight, None, (1, stride, stride), 1, 1, x.shape[1])
    return _DepthwiseConv3d.apply(x, weight, stride)
