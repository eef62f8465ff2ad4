"""``ifdd-bench profile``: complexity and timing rows that say how they were measured.

:func:`profile` turns a :class:`ProfileRequest` into flat row dicts (one observation each, columns
in :data:`PROFILE_COLUMNS`) for ``results/profile.csv``:

* ``measure="complexity"``  parameters, fvcore GMACs and torch GFLOPs per clip only;
* ``measure="latency"``     eval + inference-mode forward at ``--batch`` (default 1);
* ``measure="throughput"``  the same at growing batch sizes until memory runs out (``status=oom``
  marks the first batch that did not fit) or ``--max-batch``;
* ``measure="train_step"``  forward, loss, backward and AdamW step at ``--batch``.

Every row carries the complexity of the model at that input (counted once, on CPU in fp32 at
batch 1, so it is per clip and device independent), the input shape ``(B, C, T, H, W)``, views (1:
one clip, no temporal test-time views), both counters with name, version and unit, the device
name, torch/CUDA/cuDNN versions, precision, compile, cudnn.benchmark, threads, warm-up and
iterations. On CPU each timed row runs in a fresh process so that its peak RSS is its own.

:func:`reported_vs_measured` joins measured params/MACs with the literature's reported numbers
(``ifdd_bench/reports/literature.csv``). This module imports torch only inside functions, so the
join can be used without torch.

Example::

    >>> rows = profile(ProfileRequest(models=("ifdd_tiny",), modes=("infer",)))  # doctest: +SKIP
    >>> append_rows("results/profile.csv", rows)                                # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from ifdd_bench.config import DEFAULT_DEVICE
from ifdd_bench.engine.environment import git_sha
from ifdd_bench.errors import ConfigError
from ifdd_bench.results import PROFILE_CSV, literature_rows, load

MEASURES = ("complexity", "latency", "throughput", "train_step")

#: every column of results/profile.csv, in order (empty cells where a column does not apply)
PROFILE_COLUMNS = [
    # what was measured
    "measured_at", "git_sha", "model", "variant", "family", "measure", "mode", "status",
    "input_shape", "batch", "channels", "frames", "height", "width", "views", "num_classes", "native_input",
    # complexity (per clip: counted at batch 1 on CPU in fp32, eval mode)
    "params_total", "params_trainable",
    "gmacs_per_clip", "mac_counter", "mac_counter_version", "mac_unit", "unsupported_ops", "extra_mac_handles",
    "gflops_per_clip", "flop_counter", "flop_counter_version", "flop_unit", "train_gflops_per_clip",
    "complexity_input",
    # environment and protocol
    "device", "device_name", "torch_version", "cuda_version", "cudnn_version", "python_version",
    "precision", "autocast", "compile", "cudnn_benchmark", "threads", "timer", "warmup", "iterations",
    # results
    "latency_median_ms", "latency_p90_ms", "latency_mean_ms", "latency_std_ms", "latency_min_ms",
    "latency_max_ms", "latency_iqr_ms", "clips_per_s", "optimizer",
    "peak_mem_mb", "reserved_mem_mb", "mem_kind", "rss_baseline_mb", "note",
]

#: the authors' IFDD code on this project's 2-core CPU (IFDD issue, "Speed and memory")
AUTHORS_IFDD_TRAIN_STEP = {
    "seconds": 10.3, "peak_rss_gb": 4.5, "batch": 2, "input": "2x3x16x224x224",
    "infer_seconds_batch1": 1.1,
    "source": "IFDD issue: authors' implementation (CyberPegasus/IFDD) on the project's 2-core CPU",
}


@dataclass(frozen=True)
class ProfileRequest:
    """What ``ifdd-bench profile`` measures (CLI options map one to one)."""

    models: tuple[str, ...] = ()  # "name" or "name:variant"
    all_models: bool = False  # every registered model, variant "full"
    frames: int | None = None  # None -> each model's native frames
    size: int | None = None  # None -> each model's native img_size
    batch: int = 1
    device: str = DEFAULT_DEVICE  # auto (cuda when torch sees a GPU, else cpu) | cpu | cuda | cuda:N
    precisions: tuple[str, ...] = ("fp32",)
    modes: tuple[str, ...] = ("infer",)
    compile: bool = False
    timing: bool = True  # False -> complexity rows only
    throughput: bool | None = None  # None -> on for CUDA, off for CPU
    max_batch: int | None = None  # cap of the throughput sweep; None -> 8 on device "cpu", else 4096
    warmup: int | None = None
    iterations: int | None = None
    max_seconds: float | None = None
    threads: int | None = None
    cudnn_benchmark: bool = False
    isolate: bool | None = None  # fresh process per timed row; None -> True on CPU
    by_module: bool = False
    module_depth: int = 2
    train_flops: bool = True  # count forward + backward FLOPs for train_step rows


def parse_model_spec(text: str) -> tuple[str, str]:
    """``"ifdd:no_issm"`` -> ``("ifdd", "no_issm")``; ``"ifdd"`` -> ``("ifdd", "full")``."""
    name, _, variant = text.partition(":")
    if not name:
        raise ConfigError(f"model {text!r}: expected MODEL or MODEL:VARIANT")
    return name, variant or "full"


def resolve_models(request: ProfileRequest) -> list[tuple[str, str]]:
    """The ``(model, variant)`` pairs a request names; unknown names raise listing the valid ones."""
    from ifdd_bench import registry

    pairs = [parse_model_spec(m) for m in request.models]
    if request.all_models:
        pairs += [(name, "full") for name in registry.list_models()]
    if not pairs:
        raise ConfigError("name at least one MODEL[:VARIANT] or pass --all",
                          hint=f"registered: {', '.join(registry.list_models())}")
    seen, out = set(), []
    for name, variant in pairs:
        registry.resolve_config(name, variant)  # raises for unknown model / variant
        if (name, variant) not in seen:
            seen.add((name, variant))
            out.append((name, variant))
    return out


# ------------------------------------------------------------------------------------------
# complexity of one model at one input


def _shape_error(name: str, frames: int | None, size: int | None, err: Exception) -> ConfigError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConfigError(f"{name} cannot take --frames {frames or 'native'} --size {size or 'native'}: {first}",
                       hint="drop --frames/--size to use the model's native input")


def complexity(name: str, variant: str, *, frames: int | None = None, size: int | None = None,
               train_flops: bool = False, by_module: bool = False, module_depth: int = 2) -> dict[str, Any]:
    """Complexity columns of ``name:variant`` for one clip ``(1, C, T, H, W)`` (CPU, fp32).

    Returns the row fields (``params_*``, ``gmacs_per_clip``, ``gflops_per_clip`` ...) and, under
    the key ``"_modules"``, the per-module breakdown when ``by_module`` is set. A frame count or
    size the model cannot take raises :class:`ConfigError` naming ``--frames``/``--size``.
    """
    import torch

    from ifdd_bench.engine import complexity as cx
    from ifdd_bench.engine.latency import BenchSpec, build_model, input_shape, synthetic_clip

    spec = BenchSpec(model=name, variant=variant, frames=frames, size=size)
    torch.manual_seed(0)
    model, cfg = build_model(spec)
    shape = input_shape(spec, cfg)
    clip = synthetic_clip(shape, torch.device("cpu"))
    try:
        macs = cx.count_macs(model, clip, by_module=by_module)
        flops = cx.count_flops(model, clip)
        train = cx.count_flops(model, clip, backward=True) if train_flops else None
    except (RuntimeError, ValueError, AssertionError) as err:
        if frames is None and size is None:
            raise
        raise _shape_error(name, frames, size, err) from None
    params = cx.count_params(model)
    native = (frames is None and size is None) or _is_native(name, variant, shape)
    row: dict[str, Any] = {
        "family": _family(name),
        "num_classes": getattr(cfg, "num_classes", ""),
        "native_input": native,
        "params_total": params["total"],
        "params_trainable": params["trainable"],
        "gmacs_per_clip": macs.total / 1e9,
        "mac_counter": macs.counter, "mac_counter_version": macs.version,
        "mac_unit": "GMACs per clip (1 multiply-accumulate = 1; what DFER papers print as GFLOPs)",
        "unsupported_ops": cx.format_ops(macs.unsupported),
        "extra_mac_handles": cx.format_ops(macs.extra_handles),
        "gflops_per_clip": flops.total / 1e9,
        "flop_counter": flops.counter, "flop_counter_version": flops.version,
        "flop_unit": "GFLOPs per clip (2 per multiply-accumulate; elementwise ops 0)",
        "train_gflops_per_clip": (train.total / 1e9) if train is not None else "",
        "complexity_input": "x".join(str(d) for d in shape) + " (cpu, fp32, eval)",
        "_shape": shape,
    }
    if by_module:
        row["_modules"] = cx.module_breakdown(model, clip, max_depth=module_depth, macs=macs)
    return row


def _family(name: str) -> str:
    from ifdd_bench import registry

    return registry.get_entry(name).family


def _is_native(name: str, variant: str, shape: Sequence[int]) -> bool:
    from ifdd_bench import registry

    cfg = registry.resolve_config(name, variant)
    return shape[2] == cfg.frames and shape[3] == cfg.img_size


# ------------------------------------------------------------------------------------------
# the whole request


def _check_options(request: ProfileRequest) -> None:
    from ifdd_bench.engine.latency import check_mode, check_precision, resolve_device

    if request.batch < 1:
        raise ConfigError(f"--batch must be >= 1 (got {request.batch})")
    for value, option in ((request.frames, "--frames"), (request.size, "--size")):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be a positive integer (got {value})")
    device = resolve_device(request.device)
    for precision in request.precisions:
        check_precision(precision, device)
    for mode in request.modes:
        check_mode(mode)
    if request.compile and not hasattr(__import__("torch"), "compile"):
        raise ConfigError("--compile needs torch >= 2.0")


def max_batch(request: ProfileRequest) -> int:
    """Cap of the throughput sweep: ``request.max_batch``, else 8 for ``device="cpu"`` and 4096 otherwise."""
    if request.max_batch is not None:
        return request.max_batch
    return 8 if request.device == "cpu" else 4096


def _timed_rows(name: str, variant: str, request: ProfileRequest, base: dict[str, Any],
                progress: Callable[[str], None]) -> list[dict[str, Any]]:
    from ifdd_bench.engine.latency import BenchSpec, measure, measure_isolated, resolve_device, throughput_sweep

    device = resolve_device(request.device)
    isolate = request.isolate if request.isolate is not None else device.type == "cpu"
    sweep = request.throughput if request.throughput is not None else device.type == "cuda"

    def run(spec: BenchSpec) -> dict[str, Any]:
        return measure_isolated(spec) if isolate else measure(spec)

    rows = []
    for precision in request.precisions:
        spec = BenchSpec(model=name, variant=variant, batch=request.batch, frames=request.frames, size=request.size,
                         device=request.device, precision=precision, compile=request.compile,
                         warmup=request.warmup, iterations=request.iterations, max_seconds=request.max_seconds,
                         threads=request.threads, cudnn_benchmark=request.cudnn_benchmark)
        for mode in request.modes:
            measure_name = "latency" if mode == "infer" else "train_step"
            progress(f"{name}:{variant} {measure_name} {precision} batch {request.batch}")
            result = run(dataclasses.replace(spec, mode=mode))
            extra = {"train_gflops_per_clip": base["train_gflops_per_clip"]} if mode == "train" else \
                    {"train_gflops_per_clip": ""}
            rows.append({**base, **extra, "measure": measure_name, "status": "ok", **result})
        if sweep and "infer" in request.modes:
            def at(batch: int, precision_spec: BenchSpec = spec) -> dict[str, Any]:
                progress(f"{name}:{variant} throughput {precision_spec.precision} batch {batch}")
                return run(dataclasses.replace(precision_spec, mode="infer", batch=batch))

            for point in throughput_sweep(at, max_batch=max_batch(request)):
                if point["status"] == "oom":
                    point = {"mode": "infer", "precision": precision, "batch": point["batch"], "status": "oom",
                             "device": device.type,
                             "note": f"out of memory at batch {point['batch']} (sweep stopped here)"}
                rows.append({**base, "train_gflops_per_clip": "", "measure": "throughput", **point})
    return rows


def profile(request: ProfileRequest, *, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Measure every model of ``request``; returns row dicts with :data:`PROFILE_COLUMNS` keys.

    Per-module breakdowns (``by_module``) are returned under the row key ``"_modules"`` of the
    first row of each model, and the ratios of the one row that repeats the authors' IFDD
    measurement under ``"_authors"`` (:func:`authors_comparison`); neither is a CSV column
    (:func:`write_rows` writes :data:`PROFILE_COLUMNS` only).
    """
    from ifdd_bench.engine.latency import resolve_device

    progress = progress or (lambda message: None)
    _check_options(request)
    request = dataclasses.replace(request, device=str(resolve_device(request.device)))  # auto -> cpu | cuda
    pairs = resolve_models(request)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sha = git_sha()
    rows: list[dict[str, Any]] = []
    for name, variant in pairs:
        progress(f"{name}:{variant} complexity")
        info = complexity(name, variant, frames=request.frames, size=request.size,
                          train_flops=request.timing and "train" in request.modes and request.train_flops,
                          by_module=request.by_module, module_depth=request.module_depth)
        shape = info.pop("_shape")
        modules = info.pop("_modules", None)
        base = {"measured_at": stamp, "git_sha": sha, "model": name, "variant": variant, "views": 1, **info}
        if request.timing:
            model_rows = _timed_rows(name, variant, request, base, progress)
        else:
            model_rows = [{**base, "measure": "complexity", "mode": "infer", "status": "ok",
                           "batch": 1, "channels": shape[1], "frames": shape[2], "height": shape[3],
                           "width": shape[4], "device": "cpu", "precision": "fp32"}]
        for row in model_rows:
            if row.get("batch") not in ("", None) and "channels" in row:
                row["input_shape"] = "x".join(str(row[k]) for k in ("batch", "channels", "frames", "height", "width"))
            elif row.get("batch"):
                row["input_shape"] = "x".join(str(d) for d in (row["batch"], *shape[1:]))
        if modules is not None and model_rows:
            model_rows[0]["_modules"] = modules
        for row in model_rows:
            comparison = authors_comparison(row)
            if comparison:
                row["_authors"] = comparison
        rows.extend(model_rows)
    return rows


def profile_csv(results_dir: str | os.PathLike = "results", out: str | os.PathLike | None = None) -> str:
    """The profile CSV a command reads and appends to: ``out`` when given, else
    ``<results_dir>/profile.csv``, the file ``ifdd-bench report --results-dir`` reads."""
    return os.fspath(out) if out else os.path.join(os.fspath(results_dir), PROFILE_CSV)


def write_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append rows to a profile CSV (atomic; columns in :data:`PROFILE_COLUMNS` order)."""
    from ifdd_bench.results import append_rows

    clean = [{col: row.get(col, "") for col in PROFILE_COLUMNS} for row in rows]
    return append_rows(path, clean)


def authors_comparison(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """Ratios of an IFDD CPU train-step row at batch 2, 16x224x224 against the authors' figures.

    Returns ``None`` unless the row is exactly that measurement (model ``ifdd``, variant
    ``full``, CPU, fp32, input 2x3x16x224x224, ``measure="train_step"``).
    """
    ref = AUTHORS_IFDD_TRAIN_STEP
    if not (row.get("model") == "ifdd" and row.get("variant") == "full" and row.get("measure") == "train_step"
            and row.get("device") == "cpu" and row.get("precision") == "fp32" and row.get("input_shape") == ref["input"]):
        return None
    seconds = float(row["latency_median_ms"]) / 1000.0
    peak_gb = float(row["peak_mem_mb"]) / 1024.0
    return {
        "ours_seconds": seconds, "authors_seconds": ref["seconds"], "speedup": ref["seconds"] / seconds,
        "ours_peak_rss_gb": peak_gb, "authors_peak_rss_gb": ref["peak_rss_gb"],
        "memory_fraction": peak_gb / ref["peak_rss_gb"],
        "source": ref["source"],
    }


# ------------------------------------------------------------------------------------------
# reported vs measured (torch-free)


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def add_missing_complexity(measured: Iterable[Mapping[str, Any]], literature: Iterable[Mapping[str, Any]] | None = None,
                           *, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """``measured`` plus complexity rows for every registered literature ``model_key`` that has no
    native-input ``full`` row yet (counted now, CPU fp32 batch 1). Needs torch."""
    from ifdd_bench import registry

    rows = [dict(r) for r in measured]
    have = {r.get("model") for r in rows if str(r.get("native_input", "")).lower() in ("true", "1")
            and r.get("variant", "full") == "full" and _float(r.get("gmacs_per_clip")) is not None}
    registered = set(registry.list_models())
    keys = [lit.get("model_key") for lit in (literature_rows() if literature is None else literature)]
    missing = [k for k in dict.fromkeys(keys) if k and k in registered and k not in have]
    if missing:
        rows += profile(ProfileRequest(models=tuple(missing), timing=False), progress=progress)
    return rows


def load_measured(path: str | os.PathLike | None) -> list[dict[str, Any]]:
    """The rows of a profile CSV as dicts (``[]`` when ``path`` is ``None`` or absent)."""
    if not path or not os.path.exists(path):
        return []
    return load(path, required=["model", "gmacs_per_clip"]).to_dict("records")


def reported_rows(measured: Iterable[Mapping[str, Any]], *,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Reported-vs-measured rows (:func:`reported_vs_measured`) of ``measured`` plus every registered
    literature model they lack, counted now (:func:`add_missing_complexity`; needs torch then)."""
    return reported_vs_measured(add_missing_complexity(measured, progress=progress))


def reported_vs_measured(measured: Iterable[Mapping[str, Any]], literature: Iterable[Mapping[str, Any]] | None = None,
                         *, implemented_only: bool = True) -> list[dict[str, Any]]:
    """Join literature rows with our measured complexity (variant ``full``, native input).

    ``measured`` are profile rows (dicts, e.g. read from ``results/profile.csv``); the first row
    per model with ``native_input`` true and variant ``full`` is used. Each output row has the
    method, its reported params (M) and GFLOPs with the unit note and input, our params (M),
    fvcore GMACs and torch GFLOPs per clip with our input, the ratio of our GMACs to the reported
    figure, and the sources. Literature rows without a ``model_key`` are skipped unless
    ``implemented_only`` is false.
    """
    literature = list(literature_rows() if literature is None else literature)
    ours: dict[str, Mapping[str, Any]] = {}
    for row in measured:
        native = str(row.get("native_input", "")).lower() in ("true", "1")
        if row.get("variant", "full") == "full" and native and row.get("model") not in ours \
                and _float(row.get("gmacs_per_clip")) is not None:
            ours[str(row["model"])] = row
    out = []
    for lit in literature:
        key = lit.get("model_key") or ""
        if implemented_only and not key:
            continue
        mine = ours.get(key, {})
        params = _float(mine.get("params_total"))
        gmacs = _float(mine.get("gmacs_per_clip"))
        reported = _float(lit.get("gflops_reported"))
        out.append({
            "model_key": key,
            "method": lit.get("method", ""),
            "venue": lit.get("venue", ""),
            "reported_params_m": _float(lit.get("params_m")),
            "reported_gflops": reported,
            "reported_unit_note": lit.get("gflops_unit_note", ""),
            "reported_input": lit.get("input", ""),
            "measured_params_m": params / 1e6 if params is not None else None,
            "measured_gmacs_fvcore": gmacs,
            "measured_gflops_torch": _float(mine.get("gflops_per_clip")),
            "measured_input": str(mine.get("complexity_input", "")),
            "mac_counter": f"{mine.get('mac_counter', '')} {mine.get('mac_counter_version', '')}".strip(),
            "gmacs_over_reported": (gmacs / reported) if gmacs is not None and reported else None,
            "source": lit.get("source", ""),
            "note": lit.get("note", ""),
        })
    return out
