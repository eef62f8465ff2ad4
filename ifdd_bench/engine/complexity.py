"""Model complexity that says how it was counted: parameters, MACs (fvcore) and FLOPs (torch).

Three numbers, three counters, never mixed:

* :func:`count_params`  ``sum(p.numel())`` over ``model.parameters()`` (total and trainable).
* :func:`count_macs`    fvcore's ``FlopCountAnalysis`` (jit-trace based). fvcore counts one
  multiply-accumulate as one unit, so its "flops" are **MACs**; this is the number most DFER papers
  print as "GFLOPs". fvcore has no handle for several matrix-product ops that our models emit, so
  we add handles for them (:data:`EXTRA_MAC_HANDLES`); every op that is still not counted is
  returned in ``MacCount.unsupported`` with how often it ran.
* :func:`count_flops`   ``torch.utils.flop_counter.FlopCounterMode`` (dispatch based), 2 FLOPs per
  MAC. Torch registers formulas for the CUDA attention kernels but not for the CPU fused attention
  kernel, the native transformer fast paths or the oneDNN RNN layer, and its convolution-backward
  formula ignores ``groups``; we pass formulas for those (:data:`EXTRA_FLOP_FORMULAS`) through
  ``custom_mapping`` (no global registry is modified).

Counts are shape-based, so they are taken on CPU in fp32 whatever device is later timed.

Example::

    >>> import torch
    >>> lin = torch.nn.Linear(8, 4)
    >>> count_macs(lin, torch.randn(2, 8)).total      # 2 * 8 * 4
    64
    >>> count_flops(lin, torch.randn(2, 8)).total     # 2 FLOPs per MAC
    128
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "MacCount",
    "FlopCount",
    "count_params",
    "count_macs",
    "count_flops",
    "module_breakdown",
    "attention_macs",
    "EXTRA_MAC_HANDLES",
    "EXTRA_FLOP_FORMULAS",
    "format_ops",
]

FVCORE = "fvcore"
TORCH_COUNTER = "torch.utils.flop_counter"


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # pragma: no cover - fvcore is a hard dependency
        return "unknown"


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass counted by fvcore (+ our extra handles).

    ``by_operator`` maps fvcore's short op name (``linear``, ``conv``, ``matmul``,
    ``scaled_dot_product_attention`` ...) to MACs; ``by_module`` maps module names as in
    ``model.named_modules()`` (``""`` = whole model) to MACs and is filled only on request;
    ``unsupported`` maps every op fvcore met but did not count (``aten::add`` ...) to how many
    times it ran; ``extra_handles`` maps the ops our handles counted to their MACs.
    """

    total: int
    by_operator: dict[str, int]
    by_module: dict[str, int]
    unsupported: dict[str, int]
    extra_handles: dict[str, int] = field(default_factory=dict)
    counter: str = FVCORE
    version: str = field(default_factory=lambda: _dist_version("fvcore"))
    unit: str = "MACs (one multiply-accumulate = 1)"


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward (or forward + backward) pass counted by torch's FlopCounterMode.

    2 FLOPs per multiply-accumulate; elementwise ops, softmax and normalisation count 0.
    ``by_operator`` maps aten op names (``mm``, ``convolution`` ...) to FLOPs; ``by_module`` maps
    the counter's module paths (class-name rooted, e.g. ``Net.block.0``) to FLOPs.
    """

    total: int
    by_operator: dict[str, int]
    by_module: dict[str, int]
    backward: bool = False
    counter: str = TORCH_COUNTER
    version: str = field(default_factory=lambda: torch.__version__)
    unit: str = "FLOPs (2 per multiply-accumulate)"


# ------------------------------------------------------------------------------------------
# parameters


def count_params(model: nn.Module) -> dict[str, int]:
    """``{"total": n, "trainable": m}``: numel summed over (deduplicated) parameters.

    Every ``nn.Parameter`` counts, including free tensors such as cls tokens and
    relative-position tables that module-hook counters (thop) skip.
    """
    params = list(model.parameters())
    return {
        "total": int(sum(p.numel() for p in params)),
        "trainable": int(sum(p.numel() for p in params if p.requires_grad)),
    }


# ------------------------------------------------------------------------------------------
# closed forms shared by both counters


def attention_macs(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """MACs of ``softmax(q @ k^T) @ v`` for q ``(..., L, E)``, k ``(..., S, E)``, v ``(..., S, Ev)``.

    Scores cost ``L*S*E`` and the weighted sum ``L*S*Ev`` per leading index of the query (batch x
    query heads; grouped-query attention repeats key/value heads, so the query's heads count).
    Masks, scaling, softmax and dropout are not multiply-accumulates and are ignored.
    """
    rows = math.prod(int(d) for d in query_shape[:-1])  # B * H_q * L
    keys = int(key_shape[-2])  # S
    return rows * keys * (int(query_shape[-1]) + int(value_shape[-1]))


def attention_backward_macs(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """MACs of the fused attention backward: recomputed scores, then grads of v, scores, q and k.

    Same convention as torch's own formula for the CUDA fused kernels (5 products), so CPU and
    GPU training FLOPs agree.
    """
    rows = math.prod(int(d) for d in query_shape[:-1])
    keys = int(key_shape[-2])
    e, ev = int(query_shape[-1]), int(value_shape[-1])
    return rows * keys * (3 * e + 2 * ev)


def _mha_macs(batch: int, len_q: int, len_kv: int, embed: int) -> int:
    """Packed-projection multi-head attention: q/k/v projections, attention, output projection."""
    projections = batch * (len_q + 2 * len_kv) * embed * embed + batch * len_q * embed * embed
    attention = batch * len_q * len_kv * 2 * embed  # summed over heads: H * d = E
    return projections + attention


def _tokens_and_embed(shape: Sequence[int]) -> tuple[int, int, int]:
    """(batch, length, embed) of a (B, L, E) or unbatched (L, E) tensor shape."""
    if len(shape) == 2:
        return 1, int(shape[0]), int(shape[1])
    return int(shape[0]), int(shape[1]), int(shape[2])


# ------------------------------------------------------------------------------------------
# fvcore handles (inputs/outputs are torch._C.Value of the traced graph)


def _shape(value: Any) -> list[int] | None:
    return value.type().sizes() if value.isCompleteTensor() else None


def _require(shape: list[int] | None, op: str) -> list[int]:
    if shape is None:
        raise ValueError(f"fvcore handle for {op}: input shape unknown in the traced graph")
    return shape


def _sdpa_mac_handle(inputs: list[Any], outputs: list[Any]) -> Counter:
    q, k, v = (_require(_shape(x), "scaled_dot_product_attention") for x in inputs[:3])
    return Counter({"scaled_dot_product_attention": attention_macs(q, k, v)})


def _native_mha_mac_handle(inputs: list[Any], outputs: list[Any]) -> Counter:
    b, lq, e = _tokens_and_embed(_require(_shape(inputs[0]), "_native_multi_head_attention"))
    _, lk, _ = _tokens_and_embed(_require(_shape(inputs[1]), "_native_multi_head_attention"))
    return Counter({"native_multi_head_attention": _mha_macs(b, lq, lk, e)})


def _encoder_layer_mac_handle(inputs: list[Any], outputs: list[Any]) -> Counter:
    # (src, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu, norm_first, eps,
    #  norm_w1, norm_b1, norm_w2, norm_b2, ffn_w1, ffn_b1, ffn_w2, ffn_b2, mask, mask_type)
    b, n, e = _tokens_and_embed(_require(_shape(inputs[0]), "_transformer_encoder_layer_fwd"))
    ffn = math.prod(_require(_shape(inputs[14]), "ffn_weight_1")) + math.prod(_require(_shape(inputs[16]), "ffn_weight_2"))
    return Counter({"transformer_encoder_layer": _mha_macs(b, n, n, e) + b * n * ffn})


def _rnn_mac_handle(inputs: list[Any], outputs: list[Any]) -> Counter:
    """aten::lstm / gru / rnn_tanh / rnn_relu, padded (``.input``) or packed (``.data``) overload.

    Every 2-D weight (input-hidden, hidden-hidden, LSTM projection) of every layer and direction is
    applied once per token, so MACs = tokens * sum(numel of 2-D weights). Gate nonlinearities and
    elementwise products are not counted (as for every other op).
    """
    lists = [i for i, v in enumerate(inputs[:4]) if isinstance(v.type(), torch._C.ListType)]
    params_value = inputs[lists[-1]]
    weights = [_shape(w) for w in params_value.node().inputs()]
    weight_macs = sum(math.prod(s) for s in weights if s is not None and len(s) == 2)
    first = _require(_shape(inputs[0]), "rnn")
    second = _shape(inputs[1]) if not isinstance(inputs[1].type(), torch._C.ListType) else None
    packed = second is not None and len(second) == 1  # (data, batch_sizes, ...)
    tokens = first[0] if packed or len(first) == 2 else first[0] * first[1]
    return Counter({"rnn": tokens * weight_macs})


#: op name -> fvcore handle, added on top of fvcore's defaults (only ops with multiply-accumulates)
EXTRA_MAC_HANDLES: dict[str, Callable[[list[Any], list[Any]], Counter]] = {
    "aten::scaled_dot_product_attention": _sdpa_mac_handle,
    "aten::_native_multi_head_attention": _native_mha_mac_handle,
    "aten::_transformer_encoder_layer_fwd": _encoder_layer_mac_handle,
    "aten::lstm": _rnn_mac_handle,
    "aten::gru": _rnn_mac_handle,
    "aten::rnn_tanh": _rnn_mac_handle,
    "aten::rnn_relu": _rnn_mac_handle,
}

#: fvcore by_operator names produced by EXTRA_MAC_HANDLES
_EXTRA_OPERATOR_NAMES = {"scaled_dot_product_attention", "native_multi_head_attention",
                         "transformer_encoder_layer", "rnn"}


# ------------------------------------------------------------------------------------------
# FlopCounterMode formulas (receive shapes; ``out_shape`` keyword from torch's shape wrapper)


def _sdpa_forward_flops(query, key, value, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * attention_macs(query, key, value)


def _sdpa_backward_flops(grad_out, query, key, value, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * attention_backward_macs(query, key, value)


def _native_mha_flops(query, key, value, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    b, lq, e = _tokens_and_embed(query)
    _, lk, _ = _tokens_and_embed(key)
    return 2 * _mha_macs(b, lq, lk, e)


def _encoder_layer_flops(src, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu, norm_first, eps,
                         norm_w1, norm_b1, norm_w2, norm_b2, ffn_w1, ffn_b1, ffn_w2, ffn_b2,
                         *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    b, n, e = _tokens_and_embed(src)
    return 2 * (_mha_macs(b, n, n, e) + b * n * (math.prod(ffn_w1) + math.prod(ffn_w2)))


def _mkldnn_rnn_layer_flops(input, weight0, weight1, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # one layer, one direction: input (T, B, I) or (B, T, I); weight0 (G*H, I), weight1 (G*H, H)
    tokens = math.prod(input[:-1])
    return 2 * tokens * (math.prod(weight0) + math.prod(weight1))


def _mkldnn_rnn_layer_backward_flops(input, weight1, weight2, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # grads w.r.t. inputs/hidden and w.r.t. weights: twice the forward products
    return 2 * _mkldnn_rnn_layer_flops(input, weight1, weight2)


def _conv_backward_flops(grad_out, input, weight, bias_sizes, stride, padding, dilation, transposed,
                         output_padding, groups, output_mask, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """Grad-input and grad-weight of a (grouped) convolution: each costs the forward's MACs.

    Replaces torch's formula, which ignores ``groups`` for one of the two terms and so counts a
    depthwise convolution's backward as if it were dense (9x the forward for 8 groups, checked in
    tests/test_complexity.py).
    """
    # weight (C_out, C_in / groups, *k) or, transposed, (C_in, C_out / groups, *k)
    per_position = math.prod(weight[1:])
    macs = math.prod(input if transposed else grad_out) * per_position
    return 2 * macs * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for aten ops this torch has but its flop registry lacks (or gets wrong)."""
    from torch.utils.flop_counter import flop_registry

    wanted = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_forward_flops,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_flops,
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_forward_flops,
        "_scaled_dot_product_fused_attention_overrideable_backward": _sdpa_backward_flops,
        "_native_multi_head_attention": _native_mha_flops,
        "_transformer_encoder_layer_fwd": _encoder_layer_flops,
        "mkldnn_rnn_layer": _mkldnn_rnn_layer_flops,
        "mkldnn_rnn_layer_backward": _mkldnn_rnn_layer_backward_flops,
    }
    formulas = {}
    for name, formula in wanted.items():
        op = getattr(torch.ops.aten, name, None)
        if op is not None and op not in flop_registry:
            formulas[op] = formula
    formulas[torch.ops.aten.convolution_backward] = _conv_backward_flops  # groups-aware replacement
    return formulas


#: aten op packet -> FLOP formula passed to FlopCounterMode(custom_mapping=...)
EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = _extra_flop_formulas()


# ------------------------------------------------------------------------------------------
# counting


class _LogitsOnly(nn.Module):
    """Wraps a model so tracing sees tensors even if the model returns a ModelOutput."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _logits(self.model(*inputs))


def _logits(out: Any) -> Any:
    """Logits of a ModelOutput; tensors and plain tuples (library modules) pass through."""
    return out.logits if hasattr(out, "logits") else out


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every submodule's flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def _as_tuple(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def _strip_wrapper(name: str) -> str:
    if name == "model":
        return ""
    return name[len("model."):] if name.startswith("model.") else name


def count_macs(model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], *, by_module: bool = False) -> MacCount:
    """fvcore multiply-accumulates of one eval-mode forward pass on ``inputs``.

    ``inputs`` is one tensor (our models take ``(B, C, T, H, W)``) or a tuple of tensors. The model
    is put in eval mode for the count and restored afterwards; the count is for the whole batch,
    so divide by B for "per clip". ``by_module=True`` also fills ``by_module`` (module name ->
    MACs, ``""`` is the whole model).

    Example::

        >>> conv = torch.nn.Conv3d(3, 8, kernel_size=3, padding=1)
        >>> count_macs(conv, torch.randn(1, 3, 4, 8, 8)).total == 8 * 4 * 8 * 8 * 3 * 27
        True
    """
    wrapped = _LogitsOnly(model)
    with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation (on fvcore import) and tracer warnings
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(wrapped, _as_tuple(inputs))
        analysis.set_op_handle(**EXTRA_MAC_HANDLES)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        total = int(analysis.total())
        operators = {k: int(v) for k, v in analysis.by_operator().items()}
        unsupported = {k: int(v) for k, v in sorted(analysis.unsupported_ops().items())}
        modules = {_strip_wrapper(k): int(v) for k, v in analysis.by_module().items()} if by_module else {}
    extra = {k: v for k, v in operators.items() if k in _EXTRA_OPERATOR_NAMES}
    return MacCount(total=total, by_operator=operators, by_module=modules, unsupported=unsupported,
                    extra_handles=extra)


def count_flops(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    backward: bool = False,
) -> FlopCount:
    """torch FlopCounterMode FLOPs (2 per MAC) of one forward pass, or forward + backward.

    Forward only (default): eval mode under ``torch.no_grad``. ``backward=True``: train mode,
    forward then ``logits.sum().backward()`` (the loss itself costs nothing here); gradients
    are cleared again afterwards. Formulas for the CPU fused attention kernel and the other ops in
    :data:`EXTRA_FLOP_FORMULAS` are supplied, so attention on CPU is not silently zero.

    Example::

        >>> count_flops(torch.nn.Linear(8, 4), torch.randn(3, 8)).total
        192
    """
    from torch.utils.flop_counter import FlopCounterMode

    inputs = _as_tuple(inputs)
    counter = FlopCounterMode(display=False, custom_mapping=dict(EXTRA_FLOP_FORMULAS))
    if backward:
        flags = [(m, m.training) for m in model.modules()]
        model.train()
        try:
            with counter:
                out = _logits(model(*inputs))
                first = out if isinstance(out, torch.Tensor) else out[0]
                first.float().sum().backward()
        finally:
            for module, flag in flags:
                module.training = flag
            model.zero_grad(set_to_none=True)
    else:
        with _eval_mode(model), torch.no_grad(), counter:
            model(*inputs)
    counts = counter.get_flop_counts()
    global_counts = counts.get("Global", {})
    operators = {_op_name(op): int(n) for op, n in global_counts.items()}
    modules = {name: int(sum(ops.values())) for name, ops in counts.items() if name != "Global"}
    return FlopCount(total=int(sum(global_counts.values())), by_operator=operators, by_module=modules,
                     backward=backward)


def _op_name(op: Any) -> str:
    """``aten.mm`` -> ``mm`` (op packets stringify as ``aten.<name>``)."""
    text = str(op)
    return text.split(".", 1)[1] if text.startswith("aten.") else text


# ------------------------------------------------------------------------------------------
# per-module breakdown


def module_breakdown(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    max_depth: int = 2,
    macs: MacCount | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{module, type, depth, params, macs, share}`` for modules up to ``max_depth``.

    ``module`` is the name in ``model.named_modules()`` (``""`` = whole model, depth 0); params are
    counted recursively; MACs come from fvcore (pass an existing ``by_module`` count to avoid a
    second trace). Rows are in module-definition order, so parents precede their children and a
    tree can be drawn from the names.
    """
    if macs is None or not macs.by_module:
        macs = count_macs(model, inputs, by_module=True)
    total = macs.total or 1
    rows = []
    for name, module in model.named_modules():
        depth = 0 if name == "" else name.count(".") + 1
        if depth > max_depth:
            continue
        value = macs.by_module.get(name, 0)
        rows.append({
            "module": name,
            "type": type(module).__name__,
            "depth": depth,
            "params": int(sum(p.numel() for p in module.parameters())),
            "macs": int(value),
            "share": value / total,
        })
    return rows


def format_ops(ops: dict[str, int] | Iterable[tuple[str, int]]) -> str:
    """``{"aten::add": 25, "aten::gelu": 12}`` -> ``"aten::add=25;aten::gelu=12"`` (CSV-safe)."""
    items = ops.items() if isinstance(ops, dict) else ops
    return ";".join(f"{k}={v}" for k, v in sorted(items))
