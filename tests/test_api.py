"""The Python API at the package top: every function on a tiny run, and `import ifdd_bench` staying
cheap (no torch until a function needs it)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ifdd_bench
import test_engine_fixtures as fx
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew
from ifdd_bench.errors import CheckpointError, ConfigError
from ifdd_bench.spec import build_run_spec

ROOT = Path(__file__).resolve().parents[1]
SETS = ["frames=4", "data.size=8", "batch_size=7", "device=cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-epoch run of the engine's test model, trained through ``ifdd_bench.train``."""
    base = tmp_path_factory.mktemp("api")
    root = base / "dfew"
    write_dfew(root, balanced_dfew_rows(3, frames=6), test=balanced_dfew_rows(1, frames=6, start=100), size=16)
    request = dict(dataset="dfew", data_root=root, epochs=2, overrides=SETS, runs_dir=base / "runs",
                   results_dir=base / "results")
    row = ifdd_bench.train(fx.TEST_MODEL, **request)
    return {"row": row, "request": request, "base": base, "root": root, "run_dir": base / "runs" / row["run_id"]}


def test_importing_the_package_and_its_api_names_loads_no_torch():
    code = ("import sys, ifdd_bench; from ifdd_bench import train, load_run, export; "
            "assert train.__module__ == 'ifdd_bench.api' and 'train' in dir(ifdd_bench); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        ifdd_bench.trian  # noqa: B018


def test_list_and_create_models():
    assert {"ifdd", "ifdd_tiny", "former_dfer", fx.TEST_MODEL} <= set(ifdd_bench.list_models())
    model = ifdd_bench.create_model("ifdd_tiny", "no_issm", num_classes=5, frames=8, img_size=32).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 8, 32, 32))  # (B, C, T, H, W) -> (B, K)
    assert logits.shape == (2, 5)
    with pytest.raises(ConfigError, match="unknown model 'ifdd_tyni'"):
        ifdd_bench.create_model("ifdd_tyni")


def test_train_from_keywords_or_a_spec_gives_the_same_run(trained):
    row, request = trained["row"], trained["request"]
    with open(trained["base"] / "results" / "runs.csv", newline="") as fh:
        (stored,) = list(csv.DictReader(fh))
    assert stored["run_id"] == row["run_id"] and float(stored["uar"]) == pytest.approx(row["uar"])
    spec = build_run_spec(fx.TEST_MODEL, **request)
    events = []
    assert ifdd_bench.train(spec, progress=events.append) == row  # finished: the stored row, no training
    assert [e["kind"] for e in events] == ["done"] and events[0]["cached"]
    with pytest.raises(ConfigError, match="takes a RunSpec alone"):
        ifdd_bench.train(spec, epochs=3)


def test_load_run_gives_the_model_and_the_spec_it_was_trained_with(trained):
    run = ifdd_bench.load_run(trained["run_dir"])
    spec = build_run_spec(fx.TEST_MODEL, **trained["request"])
    assert run.spec.run_id == spec.run_id == trained["run_dir"].name
    assert (run.spec.data, run.spec.train) == (spec.data, spec.train)
    assert run.classes == json.loads((trained["run_dir"] / "config.json").read_text())["classes"]
    assert len(run.classes) == 7  # DFEW
    assert run.path == trained["run_dir"] / "best.pt" and run.epoch == trained["row"]["selected_epoch"]
    assert not run.model.training
    with torch.no_grad():
        assert run.model(torch.rand(3, 3, 4, 8, 8)).shape == (3, len(run.classes))
    with pytest.raises(CheckpointError, match="does not exist"):
        ifdd_bench.load_run(trained["base"] / "nowhere")


def test_evaluate_predict_and_export_from_python(trained, tmp_path):
    out = ifdd_bench.evaluate(trained["run_dir"], results_dir=tmp_path)
    assert out["row"]["uar"] == pytest.approx(trained["row"]["uar"], abs=1e-12)
    assert (tmp_path / "evals.csv").is_file()

    clip = next(p for p in (trained["root"] / "Clip").rglob("*") if p.is_dir() and any(p.glob("*.jpg")))
    result = ifdd_bench.predict(trained["run_dir"], clip, device="cpu")
    (pred,) = result["predictions"]
    assert pred["label"] in result["classes"] and sum(pred["probs"].values()) == pytest.approx(1.0, abs=1e-5)

    record = ifdd_bench.export(trained["run_dir"], "pt2", tmp_path / "deploy")
    assert record["ok"] and (tmp_path / "deploy" / "model.pt2").is_file()
    assert record["run_id"] == trained["row"]["run_id"]


def test_bad_batch_sizes_are_refused_before_any_file_is_read(tmp_path):
    from ifdd_bench.engine.export import MAX_BATCH, export_run
    from ifdd_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        ifdd_bench.predict(tmp_path / "no-run", tmp_path / "clip.mp4", batch_size=0)
    with pytest.raises(ConfigError, match=f"between 1 and {MAX_BATCH - 1}"):
        export_run(tmp_path / "no-run", "pt2", batch=MAX_BATCH)
    assert list(tmp_path.iterdir()) == []


def test_the_package_top_offers_exactly_the_api_module():
    from ifdd_bench import api

    assert set(ifdd_bench._API) == set(api.__all__)
    assert all(getattr(ifdd_bench, name) is getattr(api, name) for name in api.__all__)
