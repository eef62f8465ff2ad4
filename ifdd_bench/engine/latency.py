"""Latency, throughput, training-step time and peak memory, with the protocol in every result.

One measurement (:func:`measure`) builds a registered model, feeds it a fixed synthetic clip
batch ``(B, 3, T, H, W)`` in [0, 1] and times either

* ``mode="infer"``: ``model.eval()`` + ``torch.inference_mode()`` forward passes, or
* ``mode="train"``: a full training step, the engine's own
  (:func:`~ifdd_bench.engine.step.train_step`: forward, cross-entropy + the model's auxiliary
  losses, ``zero_grad``, backward, AdamW step), after which the gradients are freed again, so the
  peak memory is one step's and stays comparable with the committed rows,

after ``warmup`` untimed repetitions. On CPU every repetition is timed with ``perf_counter``; on
CUDA with a pair of CUDA events per repetition (read after one synchronize at the end). The result
holds median, p90, mean, std, min, max (ms), clips/s (``batch / median``) and peak memory:

* CUDA: ``torch.cuda.max_memory_allocated`` since a reset just before the warm-up (weights,
  activations, optimizer state; the caching allocator's reserve is recorded separately);
* CPU: the peak resident set size of the process (``VmHWM``, see :func:`peak_rss_mb`). Run through
  :func:`measure_isolated` (a fresh ``python -m ifdd_bench.engine.latency`` process) the peak
  belongs to that measurement alone; it includes the Python + torch runtime and the imported model
  modules, whose RSS just before the model is built is recorded as ``rss_baseline_mb`` (so
  ``peak_mem_mb - rss_baseline_mb`` is weights + activations + optimizer state + allocator slack).

:func:`throughput_sweep` doubles the batch until memory runs out (or ``max_batch``), catches the
out-of-memory error and bisects back between the last batch that fit and the first that did not.

Example::

    >>> spec = BenchSpec(model="ifdd_tiny", mode="infer", iterations=5, warmup=1)
    >>> row = measure(spec)                      # doctest: +SKIP
    >>> row["latency_median_ms"], row["clips_per_s"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ifdd_bench.engine import accel
from ifdd_bench.engine.accel import cudnn_benchmark, grad_scaler
from ifdd_bench.engine.step import autocast_for, train_step
from ifdd_bench.config import PRECISIONS
from ifdd_bench.errors import BenchError, ConfigError

MODES = ("infer", "train")

#: defaults per device type: (warm-up repetitions, timed repetitions, time budget in seconds)
DEFAULT_REPEATS = {"cpu": (3, 20, 60.0), "cuda": (10, 100, 60.0)}
MIN_TIMED = 5  # the time budget never cuts a measurement below this many repetitions


@dataclass(frozen=True)
class BenchSpec:
    """What one measurement runs. ``None`` shape fields mean the model config's own value."""

    model: str
    variant: str = "full"
    batch: int = 1
    frames: int | None = None  # T; None -> the model's native frames
    size: int | None = None  # H = W; None -> the model's native img_size
    num_classes: int | None = None  # None -> the model config's default
    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast)
    mode: str = "infer"  # infer | train
    compile: bool = False  # torch.compile the model before warm-up
    warmup: int | None = None  # None -> DEFAULT_REPEATS[device type]
    iterations: int | None = None  # timed repetitions; None -> DEFAULT_REPEATS
    max_seconds: float | None = None  # stop timing after this long (>= MIN_TIMED repetitions)
    threads: int | None = None  # torch.set_num_threads; None -> torch's default
    cudnn_benchmark: bool = False  # torch.backends.cudnn.benchmark during the measurement
    lr: float = 1e-4  # AdamW learning rate of the training step
    weight_decay: float = 1e-3  # AdamW weight decay of the training step
    seed: int = 0  # seeds the weights and the synthetic input
    builder: str = "registry"  # "registry" or "package.module:function(**spec shape) -> nn.Module"


class OutOfMemory(BenchError):
    """A measurement ran out of (device or host) memory at ``batch``."""

    def __init__(self, batch: int, detail: str):
        self.batch = batch
        super().__init__(f"out of memory at batch {batch}: {detail.splitlines()[0] if detail else ''}")


# ------------------------------------------------------------------------------------------
# validation of user options


def resolve_device(device: str) -> torch.device:
    """``torch.device`` for ``--device``: ``auto`` (the default of every command) is the first CUDA
    device when torch sees one, else the CPU; CUDA asked for without a GPU is a :class:`ConfigError`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a device; use cpu or cuda (cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r} is not supported; use cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but no CUDA GPU is visible to torch "
                              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})",
                              hint="drop --device or use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    return dev


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`ConfigError` naming ``--precision`` if ``device`` cannot run ``precision``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r} is unknown; valid: {', '.join(PRECISIONS)}")
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("--precision fp16 is not supported on the CPU (no fp16 autocast kernels worth timing)",
                          hint="use --precision fp32,bf16 on CPU, or fp16 with --device cuda")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}",
                          hint="use fp16 or fp32")


def check_mode(mode: str) -> None:
    """Raise :class:`ConfigError` naming ``--mode`` for an unknown mode."""
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is unknown; valid: {', '.join(MODES)}")


# ------------------------------------------------------------------------------------------
# environment


def cpu_name() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Device name, versions and thread count for a result row."""
    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else f"{cpu_name()} ({os.cpu_count()} logical cores)",
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "cudnn_version": torch.backends.cudnn.version() if cuda else "",
        "threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
    }


# ------------------------------------------------------------------------------------------
# building the model and its input


def build_model(spec: BenchSpec) -> tuple[nn.Module, Any]:
    """``(module, resolved config)`` of ``spec``; a shape the model cannot take names the option."""
    if spec.builder != "registry":
        import importlib

        module_name, _, fn_name = spec.builder.partition(":")
        build = getattr(importlib.import_module(module_name), fn_name)
        model, cfg = build(frames=spec.frames, size=spec.size, num_classes=spec.num_classes, variant=spec.variant)
        return model, cfg
    from ifdd_bench import registry

    try:
        cfg = registry.resolve_config(spec.model, spec.variant, num_classes=spec.num_classes,
                                      frames=spec.frames, img_size=spec.size)
        return registry.build_from_config(spec.model, cfg), cfg
    except ConfigError as err:
        if spec.frames is None and spec.size is None:
            raise
        raise ConfigError(f"{spec.model} cannot take --frames {spec.frames or 'native'} --size "
                          f"{spec.size or 'native'}: {err.message}", hint=err.hint) from None


def input_shape(spec: BenchSpec, cfg: Any) -> tuple[int, int, int, int, int]:
    """``(B, C, T, H, W)`` fed to the model: the spec's values or the config's native ones."""
    frames = spec.frames or getattr(cfg, "frames")
    size = spec.size or getattr(cfg, "img_size")
    channels = getattr(cfg, "in_channels", 3)
    return (spec.batch, channels, frames, size, size)


def synthetic_clip(shape: Sequence[int], device: torch.device, seed: int = 0) -> torch.Tensor:
    """A fixed uniform [0, 1) clip batch of ``shape`` (same values for the same seed)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=gen).to(device)


# ------------------------------------------------------------------------------------------
# timing


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, p90, mean, std, min, max and the interquartile range of timings in ms."""
    ordered = sorted(samples_ms)
    if not ordered:
        raise ValueError("no timings to summarize")

    def quantile(q: float) -> float:  # linear interpolation between closest ranks
        pos = q * (len(ordered) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {
        "latency_median_ms": quantile(0.5),
        "latency_p90_ms": quantile(0.9),
        "latency_mean_ms": statistics.fmean(ordered),
        "latency_std_ms": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
        "latency_min_ms": ordered[0],
        "latency_max_ms": ordered[-1],
        "latency_iqr_ms": quantile(0.75) - quantile(0.25),
    }


def time_repeated(step: Callable[[], Any], device: torch.device, *, warmup: int, iterations: int,
                  max_seconds: float | None = None) -> list[float]:
    """Run ``step`` ``warmup`` times untimed, then time up to ``iterations`` runs (ms each).

    CPU: ``perf_counter`` around each call. CUDA: an event pair per call, recorded on the current
    stream and read after one ``synchronize`` (no host sync inside the timed loop). With
    ``max_seconds``, timing stops once that much wall time has passed and at least
    :data:`MIN_TIMED` runs are done.
    """
    for _ in range(warmup):
        step()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        events = []
    samples: list[float] = []
    started = time.perf_counter()
    for i in range(iterations):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step()
            end.record()
            events.append((begin, end))
        else:
            t0 = time.perf_counter()
            step()
            samples.append((time.perf_counter() - t0) * 1000.0)
        if max_seconds is not None and i + 1 >= MIN_TIMED and time.perf_counter() - started > max_seconds:
            break
    if cuda:
        torch.cuda.synchronize(device)
        samples = [b.elapsed_time(e) for b, e in events]
    return samples


def is_oom(err: BaseException) -> bool:
    """True for CUDA allocator errors and host allocation failures."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------
# one measurement


def _repeats(spec: BenchSpec, device: torch.device) -> tuple[int, int, float | None]:
    warm, iters, budget = DEFAULT_REPEATS[device.type]
    warmup = warm if spec.warmup is None else spec.warmup
    iterations = iters if spec.iterations is None else spec.iterations
    if warmup < 0 or iterations < 1:
        raise ConfigError(f"--warmup must be >= 0 and --iters >= 1 (got {warmup}, {iterations})")
    return warmup, iterations, (budget if spec.max_seconds is None else spec.max_seconds)


def _inference_step(model: nn.Module, clip: torch.Tensor, device: torch.device, precision: str) -> Callable[[], Any]:
    model.eval()
    amp = autocast_for(precision, device)

    def step() -> Any:
        with torch.inference_mode(), amp():
            return model(clip)

    return step


def _train_step(model: nn.Module, clip: torch.Tensor, num_classes: int, spec: BenchSpec,
                device: torch.device) -> Callable[[], Any]:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    gen = torch.Generator().manual_seed(spec.seed + 1)
    targets = torch.randint(0, num_classes, (clip.shape[0],), generator=gen).to(device)
    scaler = grad_scaler(spec.precision, device)
    amp = autocast_for(spec.precision, device)

    def step() -> Any:
        out = train_step(model, clip, targets, optimizer, nn.functional.cross_entropy, autocast=amp, scaler=scaler)
        optimizer.zero_grad(set_to_none=True)  # free the gradients: a step's peak, as the committed rows
        return out

    return step


def peak_rss_mb() -> float:
    """Peak resident set size of this process's address space, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of the current memory map,
    which starts afresh at ``exec``. ``getrusage().ru_maxrss`` is not used there because a child
    inherits its parent's RSS at ``fork`` into it, so a fresh measurement process would report the
    parent's peak. Elsewhere ``ru_maxrss`` is the fallback.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024.0 * 1024.0)


def measure(spec: BenchSpec, *, isolated: bool = False) -> dict[str, Any]:
    """Time ``spec`` in this process and return a flat result dict (see the module docstring).

    ``isolated`` only labels the CPU memory figure (``peak_rss_fresh_process`` when this process
    was started for this one measurement, ``peak_rss_in_process`` otherwise: then the figure is
    an upper bound that includes everything the process did before).
    Raises :class:`OutOfMemory` when the allocator fails, :class:`ConfigError` for bad options.
    """
    check_mode(spec.mode)
    device = resolve_device(spec.device)
    check_precision(spec.precision, device)
    if spec.batch < 1:
        raise ConfigError(f"--batch must be >= 1 (got {spec.batch})")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    warmup, iterations, budget = _repeats(spec, device)
    if spec.builder == "registry":
        from ifdd_bench import registry

        registry.get_entry(spec.model)  # imports every model module before the RSS baseline
    rss_baseline = _current_rss_mb() if device.type == "cpu" else float("nan")

    torch.manual_seed(spec.seed)
    model, cfg = build_model(spec)
    shape = input_shape(spec, cfg)
    try:
        model = model.to(device)
        clip = synthetic_clip(shape, device, spec.seed)
        if spec.compile:
            model = torch.compile(model, backend=accel.COMPILE_BACKEND)
        if device.type == "cuda":
            _free_memory(device)
            torch.cuda.reset_peak_memory_stats(device)
        if spec.mode == "infer":
            step = _inference_step(model, clip, device, spec.precision)
        else:
            step = _train_step(model, clip, int(getattr(cfg, "num_classes")), spec, device)
        with cudnn_benchmark(spec.cudnn_benchmark):
            samples = time_repeated(step, device, warmup=warmup, iterations=iterations, max_seconds=budget)
    except Exception as err:  # noqa: BLE001 - only OOM is translated, the rest re-raised
        if is_oom(err):
            del model
            _free_memory(device)
            raise OutOfMemory(spec.batch, str(err)) from None
        raise
    stats = summarize(samples)
    row: dict[str, Any] = {
        "mode": spec.mode,
        "batch": shape[0], "channels": shape[1], "frames": shape[2], "height": shape[3], "width": shape[4],
        "precision": spec.precision,
        "autocast": spec.precision != "fp32",
        "compile": spec.compile,
        "cudnn_benchmark": spec.cudnn_benchmark,
        "warmup": warmup,
        "iterations": len(samples),
        "timer": "cuda_events" if device.type == "cuda" else "perf_counter",
        **stats,
        "clips_per_s": shape[0] / (stats["latency_median_ms"] / 1000.0),
        **environment(device),
    }
    if spec.mode == "train":
        row["optimizer"] = f"AdamW(lr={spec.lr:g}, weight_decay={spec.weight_decay:g})"
    if device.type == "cuda":
        row.update(peak_mem_mb=torch.cuda.max_memory_allocated(device) / 2**20,
                   reserved_mem_mb=torch.cuda.max_memory_reserved(device) / 2**20,
                   mem_kind="cuda_max_memory_allocated", rss_baseline_mb=float("nan"))
    else:
        row.update(peak_mem_mb=peak_rss_mb(), reserved_mem_mb=float("nan"),
                   mem_kind="peak_rss_fresh_process" if isolated else "peak_rss_in_process",
                   rss_baseline_mb=rss_baseline)
    del model, clip, step
    _free_memory(device)
    return row


# ------------------------------------------------------------------------------------------
# a fresh process per measurement (clean peak RSS on CPU)


def measure_isolated(spec: BenchSpec, *, timeout: float | None = None) -> dict[str, Any]:
    """:func:`measure` in a fresh ``python -m ifdd_bench.engine.latency`` process.

    The child's peak RSS belongs to this measurement alone. Errors come back as the same
    exception types (:class:`OutOfMemory`, :class:`ConfigError`); a crash raises
    ``RuntimeError`` with the child's stderr tail.
    """
    payload = json.dumps(dataclasses.asdict(spec))
    proc = subprocess.run([sys.executable, "-m", "ifdd_bench.engine.latency", payload],
                          capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"profiling subprocess failed (exit {proc.returncode}):\n{tail}")
    answer = json.loads(lines[-1])
    status = answer.pop("status")
    if status == "oom":
        raise OutOfMemory(spec.batch, answer.get("detail", ""))
    if status == "error":
        raise ConfigError(answer["message"], hint=answer.get("hint"))
    return answer


def _child_main(argv: Sequence[str]) -> int:
    spec = BenchSpec(**json.loads(argv[0]))
    try:
        row = measure(spec, isolated=True)
        answer = {"status": "ok", **row}
    except OutOfMemory as err:
        answer = {"status": "oom", "detail": str(err)}
    except BenchError as err:
        answer = {"status": "error", "message": err.message, "hint": err.hint}
    sys.stdout.write(json.dumps(answer, default=str) + "\n")
    sys.stdout.flush()
    return 0


# ------------------------------------------------------------------------------------------
# throughput at growing batch sizes


def throughput_sweep(measure_at: Callable[[int], dict[str, Any]], *, max_batch: int, start: int = 1,
                     refine: int = 2, on_point: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Measure at batch ``start, 2*start, 4*start, ...`` until an out-of-memory error or ``max_batch``.

    ``measure_at(batch)`` returns a result dict or raises (an error for which :func:`is_oom` is
    true, or :class:`OutOfMemory`). After the first failure the sweep backs off: up to ``refine``
    bisection steps between the largest batch that fit and the smallest that did not. Returns the
    successful points in increasing batch order, each with ``status="ok"``, followed by one
    ``status="oom"`` point for the smallest batch that failed (if any), so the table shows where
    memory ran out. ``max_batch`` is always tried last if the doubling overshoots it.
    """
    if max_batch < start:
        raise ConfigError(f"--max-batch {max_batch} is below the starting batch {start}")
    ok: dict[int, dict[str, Any]] = {}
    failed: int | None = None

    def attempt(batch: int) -> bool:
        nonlocal failed
        try:
            point = dict(measure_at(batch))
        except Exception as err:  # noqa: BLE001
            if not (isinstance(err, OutOfMemory) or is_oom(err)):
                raise
            failed = batch if failed is None else min(failed, batch)
            return False
        point["status"] = "ok"
        ok[batch] = point
        if on_point is not None:
            on_point(point)
        return True

    batch = start
    while batch <= max_batch and attempt(batch):
        if batch == max_batch:
            break
        batch = min(batch * 2, max_batch)
    if failed is not None and ok:
        low, high = max(ok), failed
        for _ in range(refine):
            mid = (low + high) // 2
            if mid <= low:
                break
            if attempt(mid):
                low = mid
            else:
                high = mid
    points = [ok[b] for b in sorted(ok)]
    if failed is not None:
        points.append({"batch": failed, "status": "oom"})
    return points


if __name__ == "__main__":  # pragma: no cover - exercised through measure_isolated
    sys.exit(_child_main(sys.argv[1:]))
