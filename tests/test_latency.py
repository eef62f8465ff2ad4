"""Latency / throughput / train-step code paths on CPU with a tiny model (no timing thresholds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from ifdd_bench.engine import latency
from ifdd_bench.engine.latency import BenchSpec, OutOfMemory, measure, summarize, throughput_sweep
from ifdd_bench.errors import ConfigError

BUILT: list[nn.Module] = []  # the last model a builder made (to inspect after a measurement)


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    num_classes: int = 3
    frames: int = 4
    img_size: int = 8


class TinyVideoNet(nn.Module):
    """(B, 3, T, H, W) -> (B, K); raises a fake allocator error above ``oom_above`` clips."""

    def __init__(self, cfg: TinyConfig, oom_above: int | None = None, oom_kind: str = "torch"):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, cfg.num_classes)
        self.oom_above, self.oom_kind = oom_above, oom_kind

    def forward(self, x):
        if self.oom_above is not None and x.shape[0] > self.oom_above:
            message = f"CUDA out of memory. Tried to allocate {x.shape[0]} GiB (fake allocator error)"
            raise torch.OutOfMemoryError(message) if self.oom_kind == "torch" else RuntimeError(message)
        return self.head(self.conv(x).mean(dim=(2, 3, 4)))  # (B, 4) -> (B, K)


def tiny_builder(*, frames, size, num_classes, variant):
    cfg = TinyConfig()
    cfg = dataclasses.replace(cfg, **{k: v for k, v in (("frames", frames), ("img_size", size),
                                                        ("num_classes", num_classes)) if v is not None})
    oom = {"full": None, "oom5": 5, "oom5_runtime": 5}[variant]
    model = TinyVideoNet(cfg, oom_above=oom, oom_kind="runtime" if variant.endswith("runtime") else "torch")
    BUILT[:] = [model]
    return model, cfg


SPEC = BenchSpec(model="tiny", builder="test_latency:tiny_builder", warmup=1, iterations=3)


def test_summarize_quantiles():
    stats = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert stats["latency_median_ms"] == 3.0
    assert stats["latency_p90_ms"] == pytest.approx(4.6)
    assert stats["latency_min_ms"] == 1.0 and stats["latency_max_ms"] == 5.0
    assert stats["latency_iqr_ms"] == pytest.approx(2.0)


def test_inference_measurement_on_cpu_records_protocol():
    row = measure(dataclasses.replace(SPEC, batch=2, frames=2))
    assert (row["batch"], row["channels"], row["frames"], row["height"], row["width"]) == (2, 3, 2, 8, 8)
    assert row["iterations"] == 3 and row["warmup"] == 1 and row["timer"] == "perf_counter"
    assert row["latency_min_ms"] <= row["latency_median_ms"] <= row["latency_p90_ms"] <= row["latency_max_ms"]
    assert row["clips_per_s"] == pytest.approx(2000.0 / row["latency_median_ms"])
    assert row["device"] == "cpu" and row["torch_version"] == torch.__version__
    assert row["mem_kind"] == "peak_rss_in_process" and row["peak_mem_mb"] > 0


def test_train_step_updates_weights_and_bf16_autocast_runs():
    row = measure(dataclasses.replace(SPEC, mode="train", batch=2))
    assert row["mode"] == "train" and row["optimizer"].startswith("AdamW")
    model = BUILT[0]
    assert model.training  # the step ran in train mode
    torch.manual_seed(SPEC.seed)  # measure() seeds the same way before building
    fresh = TinyVideoNet(TinyConfig())
    assert not torch.equal(model.head.weight, fresh.head.weight)  # AdamW moved the weights
    assert measure(dataclasses.replace(SPEC, precision="bf16"))["autocast"] is True


def test_isolated_measurement_reports_fresh_process_peak_rss(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    row = latency.measure_isolated(SPEC, timeout=120)
    assert row["mem_kind"] == "peak_rss_fresh_process"
    assert row["peak_mem_mb"] >= row["rss_baseline_mb"] > 0
    with pytest.raises(OutOfMemory):
        latency.measure_isolated(dataclasses.replace(SPEC, variant="oom5", batch=6), timeout=120)


def test_fresh_process_peak_rss_does_not_inherit_the_parents_peak():
    import subprocess
    import sys

    ballast = bytearray(1024 * 2**20)  # make this process's RSS at least 1 GiB larger than a child's
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    parent = latency._current_rss_mb()
    code = "from ifdd_bench.engine.latency import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0 < child < parent - 512  # ru_maxrss would report >= parent here
    del ballast


@pytest.mark.parametrize("variant", ["oom5", "oom5_runtime"])
def test_throughput_sweep_backs_off_after_fake_allocator_error(variant):
    tried = []

    def measure_at(batch):
        tried.append(batch)
        return measure(dataclasses.replace(SPEC, variant=variant, batch=batch, iterations=1, warmup=0))

    points = throughput_sweep(measure_at, max_batch=64)
    assert tried == [1, 2, 4, 8, 6, 5]  # doubling, then bisection between 4 (fit) and 8 (failed)
    assert [p["batch"] for p in points] == [1, 2, 4, 5, 6]
    assert [p["status"] for p in points] == ["ok"] * 4 + ["oom"]


def test_throughput_sweep_stops_at_max_batch_and_reraises_other_errors():
    seen = []
    assert [p["batch"] for p in throughput_sweep(lambda b: seen.append(b) or {"batch": b}, max_batch=6)] == [1, 2, 4, 6]

    def broken(batch):
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError):
        throughput_sweep(broken, max_batch=4)


def test_bad_options_name_the_option():
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda"):
            latency.resolve_device("cuda")
    with pytest.raises(ConfigError, match="--device"):
        latency.resolve_device("tpu")
    with pytest.raises(ConfigError, match="--precision fp16"):
        latency.check_precision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="--precision"):
        latency.check_precision("int8", torch.device("cpu"))
    with pytest.raises(ConfigError, match="--mode"):
        measure(dataclasses.replace(SPEC, mode="serve"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_uses_events_and_allocator_peak():
    row = measure(dataclasses.replace(SPEC, device="cuda", precision="bf16", batch=2))
    assert row["timer"] == "cuda_events" and row["mem_kind"] == "cuda_max_memory_allocated"
    assert row["peak_mem_mb"] > 0 and row["device_name"]
    train = measure(dataclasses.replace(SPEC, device="cuda", mode="train", precision="fp16", batch=2))
    assert train["iterations"] == 3
