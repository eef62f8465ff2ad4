"""`ifdd-bench export`: a trained ifdd_tiny run to torch.export and ONNX, both read back and run
against the eager model; damaged checkpoints, unknown formats and missing packages write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import test_engine_fixtures as fx
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew
from ifdd_bench.engine.checkpoint import load_model
from ifdd_bench.engine.export import EXPORT_JSON, export_run
from ifdd_bench.engine.run import train_run
from ifdd_bench.errors import CheckpointError, ConfigError
from ifdd_bench.spec import build_run_spec


def _train(base: Path, model: str, sets: tuple[str, ...]) -> Path:
    root = base / "dfew"
    if not root.exists():
        write_dfew(root, balanced_dfew_rows(2, frames=8), test=balanced_dfew_rows(1, frames=8, start=100), size=16)
    spec = build_run_spec(model, dataset="dfew", data_root=root, epochs=1, overrides=("device=cpu", *sets),
                          runs_dir=base / "runs", results_dir=base / "results")
    train_run(spec)
    return Path(spec.runs_dir) / spec.run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-epoch runs: ifdd_tiny at 8 x 32 x 32 (one block per stage: the exporters' time grows with
    the graph) and the c3d_tiny baseline at 16 x 32 x 32."""
    base = tmp_path_factory.mktemp("export")
    return {"ifdd_tiny": _train(base, "ifdd_tiny", ("frames=8", "data.size=32", "batch_size=7",
                                                    "model.depths=1,1,1,1")),
            "c3d_tiny": _train(base, "c3d_tiny", ("data.size=32", "batch_size=7"))}


@pytest.mark.slow  # the ONNX exporter's decomposition and optimiser passes: tens of seconds on a CPU
def test_ifdd_tiny_exports_to_pt2_and_onnx_that_match_the_eager_model(runs, tmp_path):
    pytest.importorskip("onnxruntime", reason="the export extra is in the test extra")
    out = fx.run_cli("export", runs["ifdd_tiny"], "--out-dir", tmp_path / "deploy", "--json")
    assert out.exit_code == 0, out.output
    record = json.loads(out.output)
    assert json.loads((tmp_path / "deploy" / EXPORT_JSON).read_text())["formats"] == record["formats"]
    assert record["ok"] and set(record["formats"]) == {"pt2", "onnx"}
    assert record["input_shape"] == ["batch", 3, 8, 32, 32] and record["checked_batches"] == [2, 3]
    for info in record["formats"].values():
        assert 0 <= info["max_abs_diff"] < 1e-4 and info["ok"]

    # the written files, loaded afresh, give the eager model's logits at a batch size never traced
    import onnxruntime as ort

    model, _ = load_model(runs["ifdd_tiny"])
    x = torch.rand(4, 3, 8, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        eager = model(x)
        program = torch.export.load(tmp_path / "deploy" / "model.pt2").module()
        assert (program(x) - eager).abs().max() < 1e-4
    session = ort.InferenceSession(str(tmp_path / "deploy" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert abs(onnx_logits - eager.numpy()).max() < 1e-4
    assert eager.shape == (4, len(record["classes"]))


def test_a_baseline_exports_into_its_run_folder_and_a_mismatch_exits_1(runs):
    record = export_run(runs["c3d_tiny"])
    assert Path(record["out_dir"]) == runs["c3d_tiny"] / "export"
    assert sorted(p.name for p in (runs["c3d_tiny"] / "export").iterdir()) == [EXPORT_JSON, "model.onnx", "model.pt2"]
    assert record["ok"] and record["input_shape"] == ["batch", 3, 16, 32, 32]
    assert all(info["max_abs_diff"] < 1e-4 for info in record["formats"].values())
    out = fx.run_cli("export", runs["c3d_tiny"], "--format", "pt2", "--atol", "-1")  # nothing can pass
    assert out.exit_code == 1 and ">-1" in out.text
    # the pt2-only export replaced the folder's contents: no model.onnx that export.json does not list
    assert sorted(p.name for p in (runs["c3d_tiny"] / "export").iterdir()) == [EXPORT_JSON, "model.pt2"]


def test_a_damaged_checkpoint_writes_nothing(runs, tmp_path):
    damaged = tmp_path / "best.pt"
    data = (runs["c3d_tiny"] / "best.pt").read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    out = fx.run_cli("export", damaged, "--out-dir", tmp_path / "deploy")
    assert out.exit_code == 2, out.output
    assert f"checkpoint{damaged}cannotberead".replace(" ", "") in out.text and "damaged" in out.text
    assert not (tmp_path / "deploy").exists() and not (tmp_path / "export").exists()
    with pytest.raises(CheckpointError):
        export_run(damaged, "pt2", tmp_path / "deploy")


def test_unknown_format_or_missing_onnx_packages_write_nothing(runs, tmp_path, monkeypatch):
    out = fx.run_cli("export", runs["c3d_tiny"], "--format", "pt2,tflite", "--out-dir", tmp_path / "deploy")
    assert out.exit_code == 2 and "unknownexportformat'tflite'" in out.text and "valid:onnx,pt2" in out.text
    import ifdd_bench.extras as extras

    monkeypatch.setattr(extras, "installed", lambda module: module != "onnxruntime")
    with pytest.raises(ConfigError, match=r"export --format onnx needs the package 'onnxruntime'") as err:
        export_run(runs["c3d_tiny"], "onnx", tmp_path / "deploy")
    assert "pip install 'ifdd-bench[export]'" in str(err.value)
    assert not (tmp_path / "deploy").exists()
