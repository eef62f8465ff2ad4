"""Profile orchestration: protocol columns, bad input, reported-vs-measured join, CLI."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from ifdd_bench import registry
from ifdd_bench.engine import profile as prof
from ifdd_bench.errors import ConfigError
from ifdd_bench.results import load

NAME = "_profile_test_net"


@dataclasses.dataclass(frozen=True)
class _Cfg:
    num_classes: int = 3
    frames: int = 4
    img_size: int = 16
    width: int = 4

    def __post_init__(self):
        if self.frames % 2:
            raise ConfigError(f"frames must be even (got {self.frames})")


class _Net(nn.Module):
    def __init__(self, cfg: _Cfg):
        super().__init__()
        self.stem = nn.Conv3d(3, cfg.width, kernel_size=(1, 9, 9))  # needs H, W >= 9
        self.head = nn.Linear(cfg.width, cfg.num_classes)

    def forward(self, x):  # (B, 3, T, H, W)
        return self.head(self.stem(x).mean(dim=(2, 3, 4)))  # (B, K)


@pytest.fixture(autouse=True, scope="module")
def _registered_test_model():
    """Register the tiny test model for this module only (other test modules iterate the registry)."""
    registry.list_models()  # load the real models first
    registry.register_model(NAME, config_cls=_Cfg, ablations={"full": {}, "wide": {"width": 8}},
                            description="profile test model")(lambda cfg: _Net(cfg))
    yield
    registry._REGISTRY.pop(NAME, None)

FAST = dict(iterations=1, warmup=0, isolate=False)


def test_rows_carry_every_protocol_column(tmp_path):
    request = prof.ProfileRequest(models=(NAME, f"{NAME}:wide"), modes=("infer", "train"), batch=2,
                                  precisions=("fp32", "bf16"), **FAST)
    rows = prof.profile(request)
    assert [(r["variant"], r["measure"], r["precision"]) for r in rows] == [
        (v, m, p) for v in ("full", "wide") for p in ("fp32", "bf16") for m in ("latency", "train_step")]
    assert rows[4]["params_total"] > rows[0]["params_total"]  # the variant's overrides were applied
    row = rows[0]
    assert row["input_shape"] == "2x3x4x16x16" and row["views"] == 1 and row["native_input"] is True
    assert row["mac_counter"] == "fvcore" and "MAC" in row["mac_unit"] and "2 per" in row["flop_unit"]
    assert row["flop_counter"] == "torch.utils.flop_counter" and row["torch_version"] == torch.__version__
    expected_macs = 4 * 4 * 8 * 8 * 3 * 81 + 4 * 3  # conv (T=4, 8x8 out) + linear, one clip
    assert row["gmacs_per_clip"] * 1e9 == pytest.approx(expected_macs)
    assert row["gflops_per_clip"] == pytest.approx(2 * row["gmacs_per_clip"])
    train = rows[1]
    assert train["train_gflops_per_clip"] > row["gflops_per_clip"] and train["optimizer"].startswith("AdamW")
    out = tmp_path / "profile.csv"
    prof.write_rows(out, rows)
    frame = load(out, required=prof.PROFILE_COLUMNS)
    assert list(frame.columns) == prof.PROFILE_COLUMNS
    for col in ("device_name", "precision", "compile", "cudnn_benchmark", "threads", "iterations", "warmup",
                "latency_median_ms", "latency_p90_ms", "clips_per_s", "peak_mem_mb", "mem_kind", "timer"):
        assert frame[col].notna().all(), col


def test_cpu_throughput_sweep_is_capped_and_complexity_only_rows():
    rows = prof.profile(prof.ProfileRequest(models=(NAME,), throughput=True, max_batch=3, **FAST))
    assert [(r["measure"], r["batch"]) for r in rows] == [("latency", 1), ("throughput", 1), ("throughput", 2),
                                                         ("throughput", 3)]
    only = prof.profile(prof.ProfileRequest(models=(NAME,), timing=False, by_module=True, frames=2, size=12))
    assert len(only) == 1 and only[0]["measure"] == "complexity" and only[0]["native_input"] is False
    assert only[0]["input_shape"] == "1x3x2x12x12"
    assert [m["module"] for m in only[0]["_modules"]] == ["", "stem", "head"]


@pytest.mark.parametrize("request_kwargs,match", [
    ({"models": ("no_such_model",)}, "unknown model"),
    ({"models": (f"{NAME}:nope",)}, "unknown variant"),
    ({"models": (NAME,), "frames": 3}, "--frames 3"),  # the config rejects it
    ({"models": (NAME,), "size": 4}, "--size 4"),  # the forward pass cannot take it
    ({"models": (NAME,), "precisions": ("fp16",)}, "--precision fp16"),
    ({"models": (NAME,), "modes": ("serve",)}, "--mode"),
    ({"models": (NAME,), "batch": 0}, "--batch"),
    ({}, "--all"),
])
def test_bad_input_names_the_option(request_kwargs, match):
    with pytest.raises(ConfigError, match=match):
        prof.profile(prof.ProfileRequest(**{**FAST, **request_kwargs}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="--device cuda"):
        prof.profile(prof.ProfileRequest(models=(NAME,), device="cuda"))


def test_literature_file_and_reported_vs_measured_join():
    from ifdd_bench.results import literature_rows

    literature = literature_rows()
    columns = ["model_key", "method", "venue", "params_m", "gflops_reported", "gflops_unit_note", "input", "views",
               "dfew_uar", "dfew_war", "ferv39k_uar", "ferv39k_war", "mafw_uar", "mafw_war", "source", "note"]
    assert list(literature[0]) == columns
    ifdd = next(r for r in literature if r["model_key"] == "ifdd")
    assert ifdd["dfew_uar"] == "" and ifdd["dfew_war"] == "" and "not retrieved" in ifdd["note"]
    assert all(r["source"] for r in literature)
    measured = [
        {"model": "c3d", "variant": "full", "native_input": "True", "params_total": 78_000_000,
         "gmacs_per_clip": 38.55, "gflops_per_clip": 77.1, "complexity_input": "1x3x16x112x112"},
        {"model": "c3d", "variant": "full", "native_input": "False", "gmacs_per_clip": 1.0},  # not native: ignored
    ]
    joined = {r["model_key"]: r for r in prof.reported_vs_measured(measured, literature)}
    c3d = joined["c3d"]
    assert c3d["reported_gflops"] == 38.57 and c3d["measured_params_m"] == 78.0
    assert c3d["gmacs_over_reported"] == pytest.approx(38.55 / 38.57)
    assert joined["former_dfer"]["measured_gmacs_fvcore"] is None  # not measured -> empty, not guessed
    assert "" not in joined  # methods we do not implement are left out by default
    everything = prof.reported_vs_measured(measured, literature, implemented_only=False)
    assert len(everything) == len(literature)


def test_authors_comparison_only_for_the_exact_measurement():
    row = {"model": "ifdd", "variant": "full", "measure": "train_step", "device": "cpu", "precision": "fp32",
           "input_shape": "2x3x16x224x224", "latency_median_ms": 5150.0, "peak_mem_mb": 3072.0}
    cmp = prof.authors_comparison(row)
    assert cmp["speedup"] == pytest.approx(2.0) and cmp["memory_fraction"] == pytest.approx(3 / 4.5)
    assert prof.authors_comparison({**row, "input_shape": "1x3x16x224x224"}) is None


def test_cli_profile_writes_rows_and_reports_bad_input(tmp_path):
    from cli import main

    out = tmp_path / "p.csv"
    runner = CliRunner()
    result = runner.invoke(main, ["profile", NAME, "--iters", "2", "--warmup", "1", "--in-process",
                                  "--by-module", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "GMACs" in result.output and "stem" in result.output
    with out.open() as fh:
        assert [r["measure"] for r in csv.DictReader(fh)] == ["latency"]
    bad = runner.invoke(main, ["profile", "no_such_model", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown model" in bad.output
    bad = runner.invoke(main, ["profile", NAME, "--precision", "fp16", "--device", "cpu", "--out", str(out)])
    assert bad.exit_code == 2 and "--precision fp16" in bad.output


def test_cli_profile_writes_the_results_dir_that_report_reads(tmp_path):
    """`profile --results-dir X` appends to X/profile.csv, so `report --results-dir X` has the compute numbers."""
    import shutil
    from pathlib import Path

    from cli import main
    from ifdd_bench.reports.render import render_report

    results = tmp_path / "results"
    shutil.copytree(Path(__file__).parent / "fixtures", results, ignore=shutil.ignore_patterns("profile.csv"))
    committed = Path(__file__).parents[1] / "results" / "profile.csv"
    before = committed.read_bytes()
    no_profile = render_report(results, tmp_path / "runs", tmp_path / "before", plots=False)
    assert any("profile.csv not found" in item for item in no_profile.skipped)
    done = CliRunner().invoke(main, ["profile", "ifdd_tiny", "--frames", "8", "--size", "32", "--complexity-only",
                                     "--results-dir", str(results)])
    assert done.exit_code == 0, done.output
    assert "appended 1 row(s)" in done.output and (results / "profile.csv").exists()
    assert committed.read_bytes() == before  # not the default results/profile.csv
    report = render_report(results, tmp_path / "runs", tmp_path / "after", plots=False)
    assert not any("profile.csv" in item for item in report.skipped)
    assert "complexity" in report.tables
