"""A deterministic weight-filling rule and input clip, for comparing two implementations of a model.

Used by the pinned equivalence with the authors' IFDD (``tests/test_authors_parity.py``, the fixture
``tests/fixtures/authors_parity.json`` and ``benchmarks/make_authors_fixture.py``; see
``docs/parity.md``): both models get the same value in every tensor without storing a weight file.

Rule :data:`FILL_RULE` (``"crc32-uniform-v1"``), applied to every parameter of a model by *its name in
our model* (so the authors' model receives the values through a name map, and the order in which
parameters are visited does not matter):

* a per-tensor seed ``zlib.crc32(f"{seed}:{name}")``; values ``u`` drawn by NumPy's legacy
  ``RandomState(tensor_seed).random_sample(numel)`` (a stream NumPy keeps stable across releases,
  unlike torch's generators) and rescaled to ``u = sqrt(3) * (2 * u - 1)`` (uniform, mean 0,
  variance 1), in float64, then cast to the parameter's dtype and laid out row-major in its shape;
* the weight of a ``LayerNorm``: ``1 + 0.1 * u``;
* any other parameter of one dimension (biases, class token, position vectors): ``0.02 * u``;
* a parameter of two or more dimensions (Linear / Conv weights, relative-position tables):
  ``u / sqrt(fan_in)`` with ``fan_in = numel / shape[0]``, so every layer keeps its activations near
  unit scale and the logits stay well-conditioned.

Buffers are not touched (IFDD's are index constants).

Example::

    model = registry.create_model("ifdd", "full")
    fill_parameters(model, seed=0)
    x = deterministic_clip((1, 3, 16, 224, 224), seed=0)
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch import nn

FILL_RULE = "crc32-uniform-v1"


def tensor_seed(name: str, seed: int) -> int:
    """The NumPy seed of the tensor called ``name`` (our model's parameter name) under ``seed``."""
    return zlib.crc32(f"{seed}:{name}".encode())


def fill_values(name: str, shape: tuple[int, ...], is_norm_weight: bool, seed: int = 0) -> torch.Tensor:
    """The float64 values :data:`FILL_RULE` gives the parameter ``name`` of ``shape`` (see module doc)."""
    numel = math.prod(shape)
    u = np.random.RandomState(tensor_seed(name, seed)).random_sample(numel)  # (numel,) in [0, 1)
    u = math.sqrt(3.0) * (2.0 * u - 1.0)  # mean 0, variance 1
    if is_norm_weight:
        values = 1.0 + 0.1 * u
    elif len(shape) <= 1:
        values = 0.02 * u
    else:
        values = u / math.sqrt(numel // shape[0])
    return torch.from_numpy(values).reshape(shape)


def fill_parameters(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Overwrite every parameter of ``model`` by :data:`FILL_RULE`; return ``{name: values}`` as written.

    The returned dict (a detached copy in each parameter's dtype, keyed by ``model``'s own names)
    is what a script passes through a name map to give another implementation the same weights.
    """
    norm_weights = {f"{mod_name}.weight" if mod_name else "weight"
                    for mod_name, mod in model.named_modules() if isinstance(mod, nn.LayerNorm)}
    written: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            values = fill_values(name, tuple(param.shape), name in norm_weights, seed).to(param.dtype)
            param.copy_(values)
            written[name] = values
    return written


def deterministic_clip(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A float32 clip of ``shape`` (e.g. ``(B, 3, T, H, W)``) in [0, 1): ``RandomState(seed).random_sample``."""
    values = np.random.RandomState(seed).random_sample(math.prod(shape))  # (numel,) float64
    return torch.from_numpy(values.astype(np.float32)).reshape(shape)


__all__ = ["FILL_RULE", "tensor_seed", "fill_values", "fill_parameters", "deterministic_clip"]
