"""The GPU check: everything ifdd-bench must measure on a card, in one short call, into one folder.

::

    bash benchmarks/gpu_check.sh OUT_DIR [--reference PATH [--reference-deps DIR]]   # on a GPU machine
    python benchmarks/gpu_check.py OUT_DIR --dry-run      # the CPU rehearsal the test suite runs

Sections, in this order. Each one is recorded in ``summary.json`` as ok / failed (with the error) /
skipped; a failing section does not stop the others, and a section that would not fit in what is
left of ``--budget`` seconds is skipped (re-run it alone with ``--sections``):

1. ``compare``  IFDD's training step and inference at paper geometry (16x224x224, K=7) on one
   synthetic batch: ours fp32 eager, bf16 eager, bf16 compiled and, with ``--reference``, the
   authors' model (``benchmarks/bench_ifdd.py``'s builder) fp32 and bf16 eager. All built in this
   process and timed round by round, interleaved, with CUDA events; speed-up against the authors'
   fp32 eager step (target >= 2x) and model FLOPs utilisation (target >= 35 % in bf16).
2. ``train``    a short real training of IFDD: SynthDFER rendered at 224 into ``--workdir``, the
   disk clip cache, the engine's DataLoader defaults (workers, pinned memory), bf16 autocast, fused
   attention, ``torch.compile`` (falls back with a message), batch 32: 30 warm-up steps, then 30 timed
   ones, through the engine's own epoch (``train_one_epoch``): steps/s, clips/s, MFU against the
   card's bf16 peak (``ifdd_bench.engine.accel.PEAK_BF16_TFLOPS``), data-loader wait share.
3. ``data``     ``ifdd-bench data bench`` on the card: loader clips/s at 16x224 (Pillow/auto, nvJPEG,
   the disk cache; 0 and the default workers) against IFDD's bf16 training step.
4. ``profile``  ``ifdd-bench profile`` of every registered model at its native input: params, MACs,
   FLOPs, latency p50/p90 (CUDA events), throughput sweep with OOM back-off, peak memory, fp32 and
   bf16, infer and train; compiled rows for IFDD. Rows go to ``profile.csv`` (the columns of
   ``results/profile.csv``; every row carries the card's name).
5. ``tests``    ``pytest -m gpu`` (``pytest-gpu.xml`` + ``pytest-gpu.log``).

Everything is written as it is measured (a run cut short keeps what it finished): ``summary.json``,
``summary.md``, ``compare.json``, ``train.json``, ``data.json``, ``profile.csv``, ``pytest-gpu.*``
and ``log.txt``. Scratch data (SynthDFER frames, the clip cache) go to ``--workdir``, not OUT_DIR.
Without a CUDA GPU (and without ``--dry-run``) it stops at once with exit code 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("compare", "train", "data", "profile", "tests")
#: seconds a section needs at least before it is started (else it is skipped as out of budget)
MIN_SECONDS = {"compare": 60, "train": 60, "profile": 30, "data": 30, "tests": 30}
TARGETS = {"train_speedup_vs_authors_fp32_eager": 2.0, "mfu_bf16": 0.35}
FUSED = {"attn_impl": "sdpa"}  # IFDD's fused attention (the CPU presets default to the explicit one)


@dataclass
class Plan:
    """Sizes of one check: the GPU defaults, or tiny CPU sizes for ``--dry-run``."""

    device: str = "cuda"
    model: str = "ifdd"
    frames: int = 16
    size: int = 224
    classes: int = 7
    compare_batch: int = 8
    infer_batch: int = 32
    rounds: int = 5
    per_round: int = 3
    warmup: int = 3
    train_batch: int = 32
    steps: int = 30
    synth_clips: int = 280
    profile_models: tuple[str, ...] | None = None  # None: every registered model
    profile_iters: int = 20
    profile_warmup: int = 3
    profile_seconds: float = 2.0
    profile_max_batch: int = 64
    compiled_precisions: tuple[str, ...] = ("bf16",)
    data_clips: int = 56
    data_workers: tuple[int, ...] | None = None  # None: 0 and the engine's default on the device
    data_decode: bool = True
    tests: tuple[str, ...] = ("tests",)
    tests_collect_only: bool = False
    tests_timeout: float = 240.0
    compile: bool = True  # the compiled configurations (compare, train, profile rows)


def dry_plan() -> Plan:
    """The same sections at CPU sizes: ``ifdd_tiny`` at 8x64 (its native 16x64 in profile and data), one step, one profiled model, no
    compiled configurations (tracing alone takes minutes on a small CPU; ``CompileFallback`` has its
    own tests), and pytest run on one torch-free module (the gpu selection finds nothing there)."""
    return Plan(device="cpu", model="ifdd_tiny", frames=8, size=64, compare_batch=1, infer_batch=1, rounds=1,
                per_round=1, warmup=0, train_batch=2, steps=1, synth_clips=14, profile_models=("ifdd_tiny",),
                profile_iters=1, profile_warmup=0, profile_seconds=1.0, profile_max_batch=1, data_clips=7,
                data_workers=(0,), data_decode=False, tests=("tests/test_results.py",), tests_timeout=120.0,
                compile=False)


# --------------------------------------------------------------------------------------------
# bookkeeping: the output folder, the log, the budget


@dataclass
class Check:
    """One run of the check: options, output folder, device, the summary written as it grows."""

    out: Path
    plan: Plan
    args: argparse.Namespace
    deadline: float
    summary: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        with open(self.out / "log.txt", "a") as fh:
            fh.write(line + "\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write_json(self, name: str, data: Any) -> None:
        from ifdd_bench.atomic import json_text, write_text_atomic

        write_text_atomic(self.out / name, json_text(data))

    def save(self) -> None:
        self.write_json("summary.json", self.summary)
        from ifdd_bench.atomic import write_text_atomic

        write_text_atomic(self.out / "summary.md", summary_markdown(self.summary))

    @property
    def device(self):
        import torch

        return torch.device(self.plan.device)


def environment(check: Check) -> dict[str, Any]:
    """Card, versions, peak and the options of this run."""
    import torch

    from ifdd_bench.engine.accel import bf16_peak_tflops
    from ifdd_bench.engine.environment import git_sha
    from ifdd_bench.engine.latency import environment as device_environment

    env = device_environment(check.device)
    if check.device.type == "cuda":
        props = torch.cuda.get_device_properties(check.device)
        env.update(total_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   capability=f"{props.major}.{props.minor}", bf16_supported=torch.cuda.is_bf16_supported())
    peak, note = bf16_peak_tflops(env["device_name"]) if check.device.type == "cuda" else (
        None, "CPU: no bf16 tensor-core peak; MFU left empty")
    env.update(bf16_peak_tflops=peak, bf16_peak_note=note, git_sha=git_sha(), platform=platform.platform(),
               cpus=os.cpu_count(), dry_run=check.args.dry_run, reference=check.args.reference,
               budget_s=check.args.budget, plan=vars(check.plan), targets=TARGETS)
    return env


def run_section(check: Check, name: str, body: Callable[[Check], dict[str, Any]]) -> None:
    """Run one section, recording ok / failed / skipped and its seconds in the summary."""
    if name not in check.args.sections:
        return
    if check.left() < MIN_SECONDS[name] and not check.args.dry_run:
        check.summary["sections"][name] = {"status": "skipped",
                                           "reason": f"time budget: {check.left():.0f} s left of --budget"}
        check.log(f"{name}: skipped, {check.left():.0f} s left")
        check.save()
        return
    check.log(f"{name}: start ({check.left():.0f} s left)")
    start = time.monotonic()
    try:
        result = {"status": "ok", **body(check)}
    except Exception as err:  # noqa: BLE001 - one failing section must not lose the others
        result = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc()[-4000:]}
        check.log(f"{name}: FAILED {type(err).__name__}: {err}")
    result["seconds"] = round(time.monotonic() - start, 1)
    check.summary["sections"][name] = result
    check.save()
    check.log(f"{name}: {result['status']} in {result['seconds']} s")


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# 1. compare: ours and the authors' model, the same step, interleaved in this process


def _compare_configs(check: Check) -> list[dict[str, Any]]:
    configs = [{"name": "ours fp32 eager", "impl": "ours", "precision": "fp32", "compile": False},
               {"name": "ours bf16 eager", "impl": "ours", "precision": "bf16", "compile": False}]
    if check.plan.compile:
        configs.append({"name": "ours bf16 compiled", "impl": "ours", "precision": "bf16", "compile": True})
    if check.args.reference:
        configs += [{"name": "authors fp32 eager", "impl": "authors", "precision": "fp32", "compile": False},
                    {"name": "authors bf16 eager", "impl": "authors", "precision": "bf16", "compile": False}]
    return configs


def _build(check: Check, config: dict[str, Any]):
    import torch

    from ifdd_bench import registry

    torch.manual_seed(0)
    plan = check.plan
    if config["impl"] == "authors":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_ifdd import _build_reference

        return _build_reference({"reference": check.args.reference, "reference_deps": check.args.reference_deps,
                                 "frames": plan.frames, "classes": plan.classes})
    return registry.create_model(plan.model, frames=plan.frames, img_size=plan.size, num_classes=plan.classes,
                                 overrides=FUSED)


class Stepper:
    """One configuration: its model on the device, optimiser and fixed batch; ``step()`` is one unit."""

    def __init__(self, check: Check, config: dict[str, Any], mode: str):
        import torch
        import torch.nn.functional as F

        from ifdd_bench.engine.accel import CompileFallback
        from ifdd_bench.engine.step import autocast_for, train_step

        plan, device = check.plan, check.device
        self.config, self.mode = config, mode
        self.model = _build(check, config).to(device)
        self.params = sum(p.numel() for p in self.model.parameters())
        run = CompileFallback(self.model, check.log, what=config["name"]) if config["compile"] else self.model
        self.fallback = run if config["compile"] else None
        batch = plan.compare_batch if mode == "train" else plan.infer_batch
        gen = torch.Generator().manual_seed(0)
        self.x = torch.rand(batch, 3, plan.frames, plan.size, plan.size, generator=gen).to(device)  # (B, C, T, H, W)
        self.batch = batch
        amp = autocast_for(config["precision"], device)
        if mode == "train":
            self.model.train()
            y = (torch.arange(batch) % plan.classes).to(device)
            opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=1e-3)

            def step() -> None:
                train_step(run, self.x, y, opt, F.cross_entropy, autocast=amp)
                opt.zero_grad(set_to_none=True)
        else:
            self.model.eval()

            def step() -> None:
                with torch.inference_mode(), amp():
                    run(self.x)
        self.step = step


def section_compare(check: Check) -> dict[str, Any]:
    """Ours vs the authors' model: the same training step and inference, interleaved round by round."""
    import torch

    from ifdd_bench.engine import complexity as cx
    from ifdd_bench.engine.accel import mfu
    from ifdd_bench.engine.latency import summarize, time_repeated

    plan, device = check.plan, check.device
    configs = _compare_configs(check)
    baseline = "authors fp32 eager" if check.args.reference else "ours fp32 eager"
    peak = check.summary["environment"]["bf16_peak_tflops"]
    probe = _build(check, configs[0])
    flops = {"train": cx.count_flops(probe.to(device), torch.rand(1, 3, plan.frames, plan.size, plan.size,
                                                                   device=device), backward=True).total,
             "infer": cx.count_flops(probe, torch.rand(1, 3, plan.frames, plan.size, plan.size, device=device)).total}
    del probe
    rows, failures = [], []
    for mode in ("train", "infer"):
        steppers, peaks = [], {}
        for config in configs:
            check.log(f"compare {mode}: building {config['name']}")
            try:  # a configuration that cannot build or step is recorded; the others are still compared
                # earlier configurations stay alive for interleaving: count only what this one adds
                held = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
                stepper = Stepper(check, config, mode)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                for _ in range(plan.warmup):  # compiles on the first call
                    stepper.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                    peaks[config["name"]] = (torch.cuda.max_memory_allocated(device) - held) / 2**20
            except Exception as err:  # noqa: BLE001
                failures.append({"mode": mode, "config": config["name"], "error": f"{type(err).__name__}: {err}"})
                check.log(f"compare {mode}: {config['name']} FAILED {failures[-1]['error']}")
                stepper = None
                _free(device)
            if stepper is not None:
                steppers.append(stepper)
        if not steppers:
            continue
        names = [s.config["name"] for s in steppers]
        base_name = baseline if baseline in names else names[0]
        samples: dict[str, list[float]] = {s.config["name"]: [] for s in steppers}
        for r in range(plan.rounds):  # rotate the order so drift hits every configuration alike
            for stepper in steppers[r % len(steppers):] + steppers[:r % len(steppers)]:
                samples[stepper.config["name"]] += time_repeated(stepper.step, device, warmup=0,
                                                                 iterations=plan.per_round)
        base = summarize(samples[base_name])["latency_median_ms"]
        for stepper in steppers:
            name = stepper.config["name"]
            stats = summarize(samples[name])
            clips_per_s = stepper.batch / (stats["latency_median_ms"] / 1000.0)
            fallback = stepper.fallback
            rows.append({
                "mode": mode, "config": name, **stepper.config, "batch": stepper.batch,
                "input": f"{stepper.batch}x3x{plan.frames}x{plan.size}x{plan.size}", "params": stepper.params,
                "median_ms": stats["latency_median_ms"], "p90_ms": stats["latency_p90_ms"],
                "timed_steps": len(samples[name]), "clips_per_s": clips_per_s,
                "baseline": base_name, "speedup": base / stats["latency_median_ms"],
                "peak_mem_mb": peaks.get(name), "gflops_per_clip": flops[mode] / 1e9,
                "mfu": mfu(flops[mode], clips_per_s, peak) if stepper.config["precision"] == "bf16" else None,
                "compile_fallback": fallback.fallback_reason if fallback is not None else "",
            })
            check.log(f"compare {mode}: {name} {stats['latency_median_ms']:.1f} ms "
                      f"({base / stats['latency_median_ms']:.2f}x vs {base_name})")
        del steppers
        _free(device)
    check.write_json("compare.json", {"rows": rows, "failed": failures})
    if not rows:
        raise RuntimeError(f"no configuration could be timed: {failures}")
    return {"baseline": baseline, "rows": rows, "failed": failures}


# --------------------------------------------------------------------------------------------
# 2. train: a short real training through the engine's epoch


def _synth_root(check: Check) -> Path:
    """SynthDFER rendered at the check's frame size in the work folder (generated once)."""
    from ifdd_bench.data.synth import generate, is_complete, preset

    plan = check.plan
    cfg = preset("default", clips=plan.synth_clips, size=plan.size, frames=plan.frames)
    root = Path(check.args.workdir) / f"synth-{plan.size}-{plan.synth_clips}"
    if not is_complete(root, cfg):
        check.log(f"rendering SynthDFER: {plan.synth_clips} clips at {plan.size}px")
        generate(cfg, root, overwrite=True)
    return root


def section_train(check: Check) -> dict[str, Any]:
    """IFDD trained for a fixed number of steps on SynthDFER at the paper geometry, as a run would."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from ifdd_bench import registry
    from ifdd_bench.config import DataConfig
    from ifdd_bench.data import build_datasets
    from ifdd_bench.data.dataset import worker_context
    from ifdd_bench.engine import complexity as cx
    from ifdd_bench.engine.accel import CompileFallback, cudnn_benchmark, loader_workers, mfu
    from ifdd_bench.engine.distributed import DistContext
    from ifdd_bench.engine.events import Reporter
    from ifdd_bench.engine.loop import train_one_epoch
    from ifdd_bench.engine.seeding import worker_init_fn
    from ifdd_bench.engine.step import autocast_for

    plan, device = check.plan, check.device
    precision = "bf16"
    if device.type == "cuda":  # this section's own peak, not an earlier section's
        torch.cuda.reset_peak_memory_stats(device)
    data_cfg = DataConfig(dataset="synth", data_root=str(_synth_root(check)), frames=plan.frames,
                          segments=plan.frames, size=plan.size, train_aug="unified",
                          clip_cache=str(Path(check.args.workdir) / "clip-cache"))
    t0 = time.monotonic()
    bundle = build_datasets(data_cfg, seed=0, protocol="reference")
    cache_s = time.monotonic() - t0
    workers = loader_workers(data_cfg.workers, device)
    sampler = RandomSampler(bundle.train, replacement=True, num_samples=plan.steps * plan.train_batch,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(bundle.train, batch_size=plan.train_batch, sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=True, worker_init_fn=worker_init_fn,
                        persistent_workers=workers > 0,
                        multiprocessing_context=worker_context(bundle.train, workers))
    torch.manual_seed(0)
    model = registry.create_model(plan.model, frames=plan.frames, img_size=plan.size,
                                  num_classes=len(bundle.classes), overrides=FUSED).to(device)
    attn = getattr(getattr(model, "cfg", None), "attn_impl", "")
    notes: list[str] = []
    train_model = CompileFallback(model, lambda m: (notes.append(m), check.log(m)), what=plan.model) \
        if plan.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    common = dict(mixer=None, scaler=None, autocast=autocast_for(precision, device), ctx=DistContext(device=device),
                  lr=1e-4, grad_clip=0.0, channels_last=False, report=Reporter(None), log_every=10**9, last_good="-")
    with cudnn_benchmark(device.type == "cuda"):
        check.log(f"train: {plan.steps} warm-up steps{' (compiling)' if plan.compile else ''}, batch {plan.train_batch}, "
                  f"{workers} workers")
        warm = train_one_epoch(train_model, loader, optimizer, loss_fn, epoch=0, **common)
        check.log("train: timed steps")
        timed = train_one_epoch(train_model, loader, optimizer, loss_fn, epoch=1, **common)
    clip = torch.rand(1, 3, plan.frames, plan.size, plan.size, device=device)  # (1, C, T, H, W)
    train_flops = cx.count_flops(model, clip, backward=True).total
    wall = timed["wall"]
    clips_per_s = timed["clips"] / wall
    peak = check.summary["environment"]["bf16_peak_tflops"]
    result = {
        "model": plan.model, "attn_impl": attn, "precision": precision, "compile": plan.compile,
        "compiled": bool(getattr(train_model, "compiled_ok", False)), "compile_notes": notes,
        "input": f"{plan.train_batch}x3x{plan.frames}x{plan.size}x{plan.size}",
        "data": f"SynthDFER default, {plan.synth_clips} clips rendered at {plan.size}px, disk clip cache, "
                f"{workers} workers, pin_memory={device.type == 'cuda'}, unified augmentation",
        "cache_open_or_build_s": cache_s, "steps": timed["steps"], "warmup_steps": warm["steps"],
        "warmup_s": warm["wall"], "wall_s": wall, "steps_per_s": timed["steps"] / wall, "clips_per_s": clips_per_s,
        "data_wait_share": timed["data_wait"] / wall, "compute_share": timed["compute"] / wall,
        "loss": timed["loss"], "loss_finite": math.isfinite(timed["loss"]),
        "train_gflops_per_clip": train_flops / 1e9, "bf16_peak_tflops": peak,
        "mfu": mfu(train_flops, clips_per_s, peak),
        "mfu_note": "" if peak else check.summary["environment"]["bf16_peak_note"],
        "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    check.write_json("train.json", result)
    del train_model, model, optimizer, loader
    _free(device)
    return result


# --------------------------------------------------------------------------------------------
# 4. profile: every registered model, through the `ifdd-bench profile` library


def section_profile(check: Check) -> dict[str, Any]:
    """``profile`` rows of every registered model (eager, fp32 + bf16, infer + train, throughput sweep)
    and compiled rows of IFDD; appended to profile.csv model by model."""
    from ifdd_bench import registry
    from ifdd_bench.engine import profile as prof

    plan, device = check.plan, check.device
    models = list(plan.profile_models or registry.list_models())
    common = dict(device=plan.device, warmup=plan.profile_warmup, iterations=plan.profile_iters,
                  max_seconds=plan.profile_seconds, cudnn_benchmark=device.type == "cuda", isolate=False)
    requests = [(name, prof.ProfileRequest(models=(name,), precisions=("fp32", "bf16"), modes=("infer", "train"),
                                           throughput=True, max_batch=plan.profile_max_batch,
                                           train_flops=name == plan.model, **common)) for name in models]
    if plan.compile:
        requests.append((f"{plan.model} compiled",
                         prof.ProfileRequest(models=(plan.model,), precisions=plan.compiled_precisions,
                                             modes=("infer", "train"), compile=True, throughput=False, **common)))
    done, failed, skipped, count = [], {}, [], 0
    for label, request in requests:
        if check.left() < 10 and not check.args.dry_run:
            skipped.append(label)
            continue
        check.log(f"profile: {label}")
        try:
            rows = prof.profile(request, progress=lambda message: None)
        except Exception as err:  # noqa: BLE001 - one model's failure is recorded, the others go on
            failed[label] = f"{type(err).__name__}: {err}"
            check.log(f"profile: {label} FAILED {failed[label]}")
            continue
        finally:
            _free(device)
        count += prof.write_rows(check.out / "profile.csv", rows)
        done.append(label)
    if failed and not done:
        raise RuntimeError(f"every profile request failed: {failed}")
    return {"rows": count, "models": done, "failed": failed, "skipped_for_time": skipped}


# --------------------------------------------------------------------------------------------
# 3. data: what the loader delivers against what the card consumes


def section_data(check: Check) -> dict[str, Any]:
    from ifdd_bench.engine.accel import loader_workers
    from ifdd_bench.engine.overhead import data_bench

    plan, device = check.plan, check.device
    workers = plan.data_workers or tuple(sorted({0, loader_workers(None, device)}))
    decoders = ("pil", "auto") + (("cuda",) if device.type == "cuda" else ())
    stored = 224 if plan.size >= 224 else plan.size
    result = data_bench(clips=plan.data_clips, workers=workers, decoders=decoders, model=plan.model,
                        device=plan.device, precision="bf16", batch=plan.train_batch,
                        geometries=((stored, plan.size),), decode=plan.data_decode)
    data = result.to_dict()
    data["model_skipped"] = result.model_skipped
    check.write_json("data.json", data)
    return {"feed": result.feed, "model": result.model, "model_skipped": result.model_skipped,
            "loader": [{k: r[k] for k in ("geometry", "decoder", "workers", "clips_per_s")} for r in result.loader]}


# --------------------------------------------------------------------------------------------
# 5. tests: pytest -m gpu


def section_tests(check: Check) -> dict[str, Any]:
    plan = check.plan
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rs",
           f"--junitxml={check.out / 'pytest-gpu.xml'}", *plan.tests]
    if plan.tests_collect_only:
        cmd.append("--collect-only")
    timeout = max(10.0, min(plan.tests_timeout, check.left() - 5)) if not check.args.dry_run else plan.tests_timeout
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        output += f"\n[gpu_check: pytest stopped after {timeout:.0f} s]"
        code = None
    (check.out / "pytest-gpu.log").write_text(output)
    last = [ln for ln in output.strip().splitlines() if ln.strip()][-1:] or [""]
    if code not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest -m gpu exit {code}: {last[0]}")
    return {"command": " ".join(cmd[1:]), "exit_code": code, "result": last[0]}


# --------------------------------------------------------------------------------------------
# the summary table


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def summary_markdown(summary: dict[str, Any]) -> str:
    """A short Markdown report of what was measured (the table docs/gpu.md takes its numbers from)."""
    env = summary.get("environment", {})
    lines = [f"# GPU check {summary.get('started', '')}", "",
             f"{env.get('device_name', '?')}; torch {env.get('torch_version', '?')}, CUDA {env.get('cuda_version') or '-'}, "
             f"cuDNN {env.get('cudnn_version') or '-'}; commit {str(env.get('git_sha', ''))[:12]}; "
             f"bf16 peak: {env.get('bf16_peak_note', '-')}", ""]
    if env.get("dry_run"):
        lines += ["**Dry run on the CPU (tiny sizes): these numbers say nothing about a GPU.**", ""]
    sections = summary.get("sections", {})
    lines += ["| section | status | seconds | note |", "|---|---|---|---|"]
    for name in SECTIONS:
        sec = sections.get(name)
        if sec:
            note = sec.get("error") or sec.get("reason") or ""
            lines.append(f"| {name} | {sec['status']} | {sec.get('seconds', '-')} | {note[:120]} |")
    compare = sections.get("compare", {})
    if compare.get("rows"):
        lines += ["", "IFDD step, same process, interleaved (speed-up: the baseline's median step / the row's):", "",
                  "| mode | configuration | input | median ms | p90 ms | clips/s | speed-up | vs | MFU | peak MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in compare["rows"]:
            lines.append(f"| {r['mode']} | {r['config']} | {r['input']} | {_fmt(r['median_ms'])} | {_fmt(r['p90_ms'])} | "
                         f"{_fmt(r['clips_per_s'], '.3g')} | {_fmt(r['speedup'], '.2f')}x | {r['baseline']} | "
                         f"{_fmt(r['mfu'], '.1%')} | {_fmt(r['peak_mem_mb'], '.0f')} |")
        for failure in compare.get("failed") or []:
            lines.append(f"| {failure['mode']} | {failure['config']} | failed: {failure['error'][:100]} |")
    train = sections.get("train", {})
    if train.get("status") == "ok":
        lines += ["", f"Training ({train['model']}, {train['precision']}, compiled={train['compiled']}, "
                      f"attention {train['attn_impl']}, {train['input']}; {train['data']}):", "",
                  f"{_fmt(train['steps_per_s'], '.2f')} steps/s, {_fmt(train['clips_per_s'])} clips/s, "
                  f"MFU {_fmt(train['mfu'], '.1%')} ({train['train_gflops_per_clip']:.1f} GFLOPs per training clip), "
                  f"data-loader wait {train['data_wait_share']:.1%} of the wall time. {train['mfu_note']}"]
    data = sections.get("data", {})
    for feed in data.get("feed") or []:
        lines += ["", f"Loader vs model at {feed['geometry']}: fastest loader ({feed['loader']}) "
                      f"{_fmt(feed['loader_clips_per_s'])} clips/s, {feed['model']} {feed['precision']} consumes "
                      f"{_fmt(feed['model_clips_per_s'])} clips/s: ratio {_fmt(feed['loader_over_model'], '.2f')}"]
    profile = sections.get("profile", {})
    if profile.get("status") == "ok":
        lines += ["", f"profile.csv: {profile['rows']} rows ({', '.join(profile['models'])})"
                  + (f"; failed: {profile['failed']}" if profile["failed"] else "")
                  + (f"; skipped for time: {', '.join(profile['skipped_for_time'])}" if profile["skipped_for_time"] else "")]
    tests = sections.get("tests", {})
    if tests.get("status") == "ok":
        lines += ["", f"pytest -m gpu: {tests['result']}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder to write (created; files in it are replaced)")
    ap.add_argument("--reference", default=None, help="local checkout of the authors' IFDD code (CyberPegasus/IFDD)")
    ap.add_argument("--reference-deps", default=None, help="extra sys.path entry holding loguru and einops")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check (default 450)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--workdir", default=None, help="scratch folder for SynthDFER frames and the clip cache "
                                                    "(default: a temporary folder)")
    ap.add_argument("--dry-run", action="store_true", help="same code path on the CPU with tiny sizes (no GPU needed)")
    args = ap.parse_args(argv)
    args.sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {', '.join(bad)}; valid: {', '.join(SECTIONS)}")
    return args


def no_gpu_message() -> str | None:
    """Why this machine cannot run the check (``None`` when a CUDA GPU is visible)."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"gpu_check: no CUDA GPU is visible to torch (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}); nothing was run or written. Run it on a GPU machine, "
            "or pass --dry-run for the CPU rehearsal.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if not args.dry_run:
        message = no_gpu_message()
        if message:
            print(message, file=sys.stderr)
            return 2
    plan = dry_plan() if args.dry_run else Plan()
    if plan.compile:  # IFDD is compiled for several batch sizes, modes and precisions in one process: keep
        import torch._dynamo  # every graph instead of silently running eager past dynamo's default of 8

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.csv").unlink(missing_ok=True)  # this run's rows only
    (args.out / "log.txt").unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            args.workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ifdd-gpu-check-"))
        check = Check(out=args.out, plan=plan, args=args, deadline=time.monotonic() + args.budget)
        check.summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv),
                         "sections": {}}
        check.summary["environment"] = environment(check)
        check.save()
        check.log(f"GPU check on {check.summary['environment']['device_name']} into {args.out}")
        for name, body in (("compare", section_compare), ("train", section_train), ("data", section_data),
                           ("profile", section_profile), ("tests", section_tests)):
            run_section(check, name, body)
        check.summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        check.save()
    failed = [n for n, s in check.summary["sections"].items() if s["status"] == "failed"]
    print(summary_markdown(check.summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
