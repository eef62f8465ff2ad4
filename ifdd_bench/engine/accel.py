"""What a run does differently on a GPU: loader workers, precision, cudnn autotuning, compilation.

One home for the defaults ``docs/gpu.md`` lists, used by the training loop, ``eval`` and the GPU
check (``benchmarks/gpu_check.py``):

* :func:`loader_workers`: ``data.workers`` unset (``None``) means 0 on the CPU (the tests and the
  embedded CPU benchmark load in the main process) and up to 8 per process on CUDA;
* :func:`resolve_precision`: ``fp32`` | ``bf16`` | ``fp16`` -> what autocast actually runs on this
  device, with a note for every fallback (fp16 uses a GradScaler, bf16 does not);
* :func:`cudnn_benchmark`: ``torch.backends.cudnn.benchmark`` for the duration of a block (on for
  CUDA training, whose clip shapes are fixed);
* :class:`CompileFallback`: ``torch.compile`` that falls back to the eager module, with one
  message, when compiling fails (compilation happens lazily, at the first call);
* :func:`bf16_peak_tflops` / :func:`mfu`: model FLOPs utilisation against the card's dense bf16
  tensor-core peak (:data:`PEAK_BF16_TFLOPS`, from the vendors' datasheets).

Example::

    >>> precision, notes = resolve_precision("bf16", torch.device("cpu"))
    >>> precision, notes
    ('bf16', [])
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ifdd_bench.config import PRECISIONS
from ifdd_bench.cpus import usable_cpus
from ifdd_bench.errors import unknown

#: DataLoader worker processes per training process on CUDA when data.workers is unset
MAX_CUDA_WORKERS = 8
#: the torch.compile backend CompileFallback uses (tests swap in one that fails)
COMPILE_BACKEND: str | Callable = "inductor"


def loader_workers(requested: int | None, device: torch.device, *, processes_per_node: int | None = None) -> int:
    """DataLoader workers for ``data.workers=requested`` on ``device``.

    An explicit count is kept. ``None`` gives 0 on the CPU, and on CUDA the usable CPUs shared by the
    training processes of this node (``LOCAL_WORLD_SIZE`` under torchrun), at least 1 and at most
    :data:`MAX_CUDA_WORKERS`.
    """
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 0
    procs = processes_per_node or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(MAX_CUDA_WORKERS, usable_cpus() // max(procs, 1)))


def resolve_precision(precision: str, device: torch.device) -> tuple[str, list[str]]:
    """Precision a run actually uses on ``device``, and notes about any fallback.

    ``bf16`` runs autocast on the CPU and on CUDA (a GPU without bf16 falls back to ``fp16``);
    ``fp16`` needs CUDA (the CPU trains in ``fp32`` then). Unknown names raise :class:`ConfigError`.
    """
    if precision not in PRECISIONS:
        raise unknown("precision", precision, PRECISIONS)
    notes: list[str] = []
    if precision == "fp16" and device.type != "cuda":
        notes.append("precision=fp16 needs CUDA and is ignored on the CPU; training in fp32 (bf16 works on the CPU)")
        return "fp32", notes
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        notes.append("this GPU has no bf16 support; using fp16 autocast with a GradScaler instead")
        return "fp16", notes
    return precision, notes


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 autocast (its small exponent range underflows gradients); ``None`` for
    fp32 and bf16, whose exponent range is fp32's."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


@contextlib.contextmanager
def cudnn_benchmark(flag: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = flag`` inside the block, the previous value restored after."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = flag
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def _compile_failure(err: BaseException) -> bool:
    """True for errors raised by torch.compile's tracing or backend, not by the model itself."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # pragma: no cover - torch without dynamo
        return False
    return isinstance(err, TorchDynamoException)


class CompileFallback(nn.Module):
    """``torch.compile(module)`` whose calls fall back to ``module`` itself when compiling fails.

    Compilation runs at the first call (and again for a new input shape); if it raises a
    torch.compile error, ``on_fallback(message)`` is called once and every later call runs the eager
    module. Errors of the model itself propagate. ``self.compiled_ok`` tells what happened.
    """

    def __init__(self, module: nn.Module, on_fallback: Callable[[str], None], *, what: str = "the model",
                 backend: str | Callable | None = None):
        super().__init__()
        self.module = module
        self.what = what
        self.on_fallback = on_fallback
        self.fallback_reason = ""
        self.compiled_ok = False
        try:
            self.compiled = torch.compile(module, backend=backend or COMPILE_BACKEND)
        except Exception as err:  # noqa: BLE001 - e.g. an unknown backend, a platform without dynamo
            self.compiled = None
            self._fall_back(err)

    def _fall_back(self, err: BaseException) -> None:
        cause = getattr(err, "inner_exception", None) or err.__cause__ or err  # the backend's own error
        first = (str(cause).strip().splitlines() or [""])[0]
        self.fallback_reason = f"{type(cause).__name__}: {first}"[:300]
        self.compiled = None
        self.on_fallback(f"torch.compile failed for {self.what} ({self.fallback_reason}); running it eagerly")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                out = self.compiled(*args, **kwargs)
                self.compiled_ok = True
                return out
            except Exception as err:  # noqa: BLE001 - only compile failures fall back
                if not _compile_failure(err):
                    raise
                # dynamo wraps the model's own errors too: run eagerly first, and fall back (with
                # its message) only when the eager model works, so a model error stays a model error
                out = self.module(*args, **kwargs)
                self._fall_back(err)
                return out
        return self.module(*args, **kwargs)


#: dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets, matched against
#: the words of ``torch.cuda.get_device_name`` in this order (first match wins; case-insensitive)
PEAK_BF16_TFLOPS: tuple[tuple[tuple[str, ...], float, str], ...] = (
    (("h100", "pcie"), 756.0, "H100 PCIe"),
    (("h100", "nvl"), 835.0, "H100 NVL"),
    (("h200", "nvl"), 835.0, "H200 NVL"),
    (("h100",), 989.0, "H100 SXM"),
    (("h200",), 989.0, "H200 SXM"),
    (("gh200",), 989.0, "GH200"),
    (("a100",), 312.0, "A100"),
    (("l40s",), 362.0, "L40S"),
    (("a10g",), 70.0, "A10G"),
    (("l4",), 121.0, "L4"),
)


def bf16_peak_tflops(device_name: str) -> tuple[float | None, str]:
    """``(peak TFLOP/s, which card it was read as)`` for a CUDA device name; ``(None, note)`` for a
    card that is not in :data:`PEAK_BF16_TFLOPS` (then no utilisation is computed)."""
    tokens = set(re.split(r"[\s\-_/]+", device_name.lower()))  # "NVIDIA A100-SXM4-80GB" -> nvidia, a100, sxm4, 80gb
    for needles, peak, card in PEAK_BF16_TFLOPS:
        if all(n in tokens for n in needles):
            return peak, f"{card}, dense bf16 {peak:g} TFLOP/s (datasheet)"
    return None, f"no bf16 peak known for {device_name!r}; MFU left empty (add the card to accel.PEAK_BF16_TFLOPS)"


def mfu(flops_per_clip: float | None, clips_per_s: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s (``flops_per_clip * clips_per_s``) over the peak;
    ``None`` without a peak or a FLOP count."""
    if not peak_tflops or not flops_per_clip:
        return None
    return flops_per_clip * clips_per_s / (peak_tflops * 1e12)
