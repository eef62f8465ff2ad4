"""benchmarks/gpu_check.py: its CPU dry run (the code path of the GPU check at tiny sizes) and its
refusal to start on a machine without a GPU."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_dry_run_goes_through_every_section_and_writes_the_folder(tmp_path):
    from ifdd_bench.engine.profile import PROFILE_COLUMNS

    gpu_check = _gpu_check()
    out = tmp_path / "out"
    assert gpu_check.main([str(out), "--dry-run", "--workdir", str(tmp_path / "work")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {name: s["status"] for name, s in summary["sections"].items()} == dict.fromkeys(gpu_check.SECTIONS, "ok")
    env = summary["environment"]
    assert env["dry_run"] and env["device"] == "cpu" and env["bf16_peak_tflops"] is None

    compare = json.loads((out / "compare.json").read_text())
    rows = compare["rows"]
    assert compare["failed"] == [] and {(r["mode"], r["config"]) for r in rows} == {
        (mode, config) for mode in ("train", "infer") for config in ("ours fp32 eager", "ours bf16 eager")}
    assert all(r["median_ms"] > 0 and r["gflops_per_clip"] > 0 and r["mfu"] is None for r in rows)
    assert all(r["baseline"] == "ours fp32 eager" for r in rows)
    assert next(r for r in rows if r["config"] == "ours fp32 eager")["speedup"] == 1.0

    train = json.loads((out / "train.json").read_text())
    assert train["steps"] == 1 and train["steps_per_s"] > 0 and train["clips_per_s"] == 2 * train["steps_per_s"]
    assert 0.0 <= train["data_wait_share"] <= 1.0 and train["loss_finite"] and train["attn_impl"] == "sdpa"
    assert train["input"] == "2x3x8x64x64" and train["train_gflops_per_clip"] > 0 and train["mfu"] is None and "MFU left empty" in train["mfu_note"]

    with open(out / "profile.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == PROFILE_COLUMNS
    assert {(r["measure"], r["precision"]) for r in rows} >= {("latency", "fp32"), ("train_step", "bf16"),
                                                              ("throughput", "bf16")}
    assert all(r["model"] == "ifdd_tiny" and r["device_name"] == env["device_name"] for r in rows)

    data = json.loads((out / "data.json").read_text())
    (feed,) = data["feed"]
    assert feed["geometry"] == "16x64x64" and feed["loader_over_model"] > 0
    assert {r["decoder"] for r in data["loader"]} >= {"pil", "disk cache"}

    assert (out / "pytest-gpu.xml").exists() and "deselected" in (out / "pytest-gpu.log").read_text()
    report = (out / "summary.md").read_text()
    assert "Dry run on the CPU" in report and "ours bf16 eager" in report and "data-loader wait" in report
    assert "compare: ok" in (out / "log.txt").read_text()


def test_unknown_sections_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _gpu_check().main([str(tmp_path / "out"), "--dry-run", "--sections", "train,speed"])
    assert exit_info.value.code == 2 and "unknown section(s) speed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_the_script_stops_at_once_and_writes_nothing(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "no CUDA GPU is visible to torch" in proc.stderr and "--dry-run" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_configuration_that_fails_is_recorded_and_the_others_are_compared(tmp_path):
    gpu_check = _gpu_check()
    build = gpu_check._build

    def failing_bf16(check, config):
        if config["precision"] == "bf16":
            raise RuntimeError("no kernel for this card")
        return build(check, config)

    gpu_check._build = failing_bf16
    out = tmp_path / "out"
    assert gpu_check.main([str(out), "--dry-run", "--sections", "compare"]) == 0
    compare = json.loads((out / "compare.json").read_text())
    assert [(r["mode"], r["config"]) for r in compare["rows"]] == [("train", "ours fp32 eager"),
                                                                   ("infer", "ours fp32 eager")]
    assert [f["config"] for f in compare["failed"]] == ["ours bf16 eager"] * 2
    assert "no kernel for this card" in compare["failed"][0]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sections"]) == ["compare"] and "failed: RuntimeError" in (out / "summary.md").read_text()
