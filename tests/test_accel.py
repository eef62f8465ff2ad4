"""GPU defaults of ifdd_bench.engine.accel on the CPU: workers, precision, cudnn flag, compile fallback."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ifdd_bench.engine import accel
from ifdd_bench.errors import ConfigError


def test_loader_workers_are_0_on_the_cpu_and_some_on_cuda(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert accel.loader_workers(None, cpu) == 0
    assert accel.loader_workers(3, cpu) == 3 and accel.loader_workers(0, cuda) == 0  # explicit counts kept
    monkeypatch.setattr(accel, "usable_cpus", lambda: 32)
    assert accel.loader_workers(None, cuda) == accel.MAX_CUDA_WORKERS
    assert accel.loader_workers(None, cuda, processes_per_node=8) == 4  # 32 CPUs shared by 8 ranks
    monkeypatch.setattr(accel, "usable_cpus", lambda: 2)
    assert accel.loader_workers(None, cuda, processes_per_node=4) == 1


def test_precision_resolution_and_loss_scaling():
    cpu = torch.device("cpu")
    assert accel.resolve_precision("fp32", cpu) == ("fp32", [])
    assert accel.resolve_precision("bf16", cpu) == ("bf16", [])
    precision, notes = accel.resolve_precision("fp16", cpu)
    assert precision == "fp32" and "needs CUDA" in notes[0]
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        accel.resolve_precision("fp8", cpu)
    assert accel.grad_scaler("bf16", cpu) is None and accel.grad_scaler("fp32", cpu) is None
    assert isinstance(accel.grad_scaler("fp16", cpu), torch.amp.GradScaler)


def test_cudnn_benchmark_is_restored():
    before = torch.backends.cudnn.benchmark
    with accel.cudnn_benchmark(not before):
        assert torch.backends.cudnn.benchmark is (not before)
    assert torch.backends.cudnn.benchmark is before


def test_compile_fallback_compiles_or_falls_back_once():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    x = torch.rand(2, 4)
    messages: list[str] = []
    traced = accel.CompileFallback(net, messages.append, backend="eager")  # dynamo tracing, no C compiler
    assert torch.equal(traced(x), net(x)) and traced.compiled_ok and not messages

    calls = []

    def broken(graph_module, example_inputs):
        calls.append(1)
        raise RuntimeError("backend exploded")

    fallback = accel.CompileFallback(net, messages.append, what="the test net", backend=broken)
    assert torch.equal(fallback(x), net(x)) and torch.equal(fallback(x), net(x))
    assert len(messages) == 1 and "the test net" in messages[0] and "backend exploded" in messages[0]
    assert not fallback.compiled_ok and len(calls) == 1  # later calls go straight to the eager module


def test_compile_fallback_lets_model_errors_through():
    """A model that fails compiled fails eagerly too: the eager error is what the caller sees."""
    net = nn.Linear(4, 3)
    messages: list[str] = []
    wrapped = accel.CompileFallback(net, messages.append, backend="eager")
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        wrapped(torch.rand(2, 5))
    assert messages == [] and wrapped.compiled is not None  # no misleading fallback, compilation kept


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("NVIDIA GH200 480GB", 989.0),
])
def test_bf16_peaks_are_read_from_the_card_name(name, peak):
    assert accel.bf16_peak_tflops(name)[0] == peak


def test_an_unknown_card_leaves_mfu_empty_with_a_note():
    peak, note = accel.bf16_peak_tflops("Tesla V100-SXM2-32GB")
    assert peak is None and "MFU left empty" in note
    assert accel.mfu(287e9, 1000.0, None) is None
    assert accel.mfu(287e9, 1000.0, 989.0) == pytest.approx(287e12 / 989e12)


def test_cpu_count_is_the_affinity_mask_everywhere_it_is_planned(monkeypatch):
    """Under taskset / a Slurm CPU set the process may use fewer CPUs than the machine has: the sweep's
    default jobs and the pool's threads follow the mask, not os.cpu_count()."""
    from ifdd_bench import cpus
    from ifdd_bench.sweep import plan as plan_mod
    from ifdd_bench.sweep import pool as pool_mod

    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 64)
    assert cpus.usable_cpus() == 1
    assert accel.usable_cpus is cpus.usable_cpus and pool_mod.usable_cpus is cpus.usable_cpus
    synth_plan = plan_mod.plan_sweep(variants="full", seeds="0", baselines="none", probes=False)
    assert plan_mod.default_jobs(synth_plan) == 1
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert plan_mod.default_jobs(synth_plan) == min(plan_mod.DEFAULT_SYNTH_JOBS, 8)
