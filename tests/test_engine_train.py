"""The training engine in one process: run folder, selection, checkpoints, bad input, failures."""

from __future__ import annotations

import csv
import errno
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import test_engine_fixtures as fx
from ifdd_bench.config import DataConfig
from ifdd_bench.engine import runfiles as F
from ifdd_bench.engine.checkpoint import load_checkpoint
from ifdd_bench.engine.loop import evaluate, fit, update_selection
from ifdd_bench.engine.run import train_run
from ifdd_bench.engine.runstate import RunState
from ifdd_bench.errors import BenchError, CheckpointError, ConfigError, TrainingError
from ifdd_bench.registry import build_from_config

RUN_FILES = ("config.json", "environment.json", "history.csv", "last.pt", "best.pt", "predictions.csv",
             "result.json", "done")


def _run_dir(spec) -> Path:
    return Path(spec.runs_dir) / spec.run_id


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished unified run of the test model (4 epochs), shared by the read-only tests."""
    spec = fx.make_spec(tmp_path_factory.mktemp("runs"), epochs=4)
    events: list[dict] = []
    row = fit(spec, fx.make_bundle(), progress=events.append)
    return spec, row, events


def test_fit_learns_and_writes_the_run_folder(trained):
    spec, row, events = trained
    run_dir = _run_dir(spec)
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob("*.tmp")) and not (run_dir / F.BEST_PENDING).exists()
    history = _rows(run_dir / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1, 2, 3]
    for col in ("lr", "train_loss", "val_uar", "val_war", "test_uar", "test_war", "data_wait_s", "step_s",
                "overhead_share"):
        assert col in history[0]
    assert row["uar"] > 0.8 and row["war"] > 0.8  # chance is 1/3
    # unified selection: the earliest epoch with the best validation UAR
    val = [float(r["val_uar"]) for r in history]
    assert row["selected_epoch"] == val.index(max(val))
    assert row["val_uar"] == pytest.approx(max(val))
    assert row["last_uar"] == pytest.approx(float(history[-1]["test_uar"]))
    assert row["best_test_war"] == pytest.approx(max(float(r["test_war"]) for r in history))
    runs = _rows(Path(spec.results_dir) / "runs.csv")
    assert [r["run_id"] for r in runs] == [spec.run_id]
    per_class = _rows(Path(spec.results_dir) / "per_class.csv")
    assert [r["class_name"] for r in per_class] == list(fx.CLASSES)
    assert sum(int(r["support"]) for r in per_class) == 24
    preds = _rows(run_dir / "predictions.csv")
    assert len(preds) == 24 and preds[0]["clip_id"] == "clip000"
    assert sum(int(p["correct"]) for p in preds) / 24 == pytest.approx(row["war"])
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["seeds"]["seed"] == 0 and env["torch"] == torch.__version__ and "git_sha" in env
    assert env["weights_loaded"] is None  # the test model starts from its own initialisation
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch_end") == 4
    step = next(e for e in events if e["kind"] == "step")
    assert {"loss", "lr", "clips_per_s", "step", "steps"} <= set(step)


def test_checkpoint_carries_the_configs_that_rebuild_the_model(trained):
    spec, row, _ = trained
    ckpt = load_checkpoint(_run_dir(spec) / "best.pt")  # weights_only=True load inside
    assert ckpt["model"] == fx.TEST_MODEL and ckpt["protocol"] == "unified" and ckpt["epoch"] == row["selected_epoch"]
    assert ckpt["model_config"]["num_classes"] == 3 and ckpt["data_config"]["frames"] == 4
    model = build_from_config(ckpt["model"], ckpt["model_config"])
    model.load_state_dict(ckpt["model_state"])
    bundle = fx.make_bundle()
    bundle.test.set_epoch(row["selected_epoch"])
    loader = torch.utils.data.DataLoader(bundle.test, batch_size=8)
    metrics, _ = evaluate(model, loader, 3, device=torch.device("cpu"))
    assert metrics["uar"] == pytest.approx(row["uar"]) and metrics["war"] == pytest.approx(row["war"])
    last = load_checkpoint(_run_dir(spec) / "last.pt")
    assert {"optimizer_state", "scheduler_state", "rng", "history", "best", "model_config", "data_config",
            "train_config"} <= set(last)
    assert len(last["history"]) == 4 and last["best"]["epoch"] == row["selected_epoch"]


def test_auxiliary_model_losses_are_added_to_the_loss(tmp_path):
    spec = fx.make_spec(tmp_path, epochs=1, model_overrides=(("aux_weight", 0.5),))
    fit(spec, fx.make_bundle())
    (hist,) = _rows(_run_dir(spec) / "history.csv")
    assert float(hist["train_aux_loss"]) > 0
    assert float(hist["train_loss"]) == pytest.approx(float(hist["train_cls_loss"]) + float(hist["train_aux_loss"]))


def test_reference_protocol_selects_on_test_war_with_ties_replacing():
    state = RunState()
    rows = [{"epoch": e, "test_war": w, "val_uar": math.nan} for e, w in enumerate([0.5, 0.7, 0.7, 0.6])]
    chosen = [update_selection(state, r, "test_war") for r in rows]
    assert chosen == [True, True, True, False] and state.best["epoch"] == 2  # the tie at epoch 2 replaces epoch 1
    state = RunState()
    rows = [{"epoch": e, "val_uar": u, "test_war": 0.0} for e, u in enumerate([0.5, 0.7, 0.7, math.nan])]
    assert [update_selection(state, r, "val_uar") for r in rows] == [True, True, False, False]
    assert state.best["epoch"] == 1  # unified keeps the earliest of equal epochs; nan never wins


def test_reference_protocol_run_with_mixup_has_no_validation(tmp_path):
    spec = fx.make_spec(tmp_path, epochs=2, protocol="reference", mixup=True)
    row = fit(spec, fx.make_bundle(with_val=False))
    history = _rows(_run_dir(spec) / "history.csv")
    wars = [float(r["test_war"]) for r in history]
    assert row["selection"] == "test_war" and math.isnan(row["val_uar"])
    assert row["selected_epoch"] == max(i for i, w in enumerate(wars) if w == max(wars))
    assert row["war"] == pytest.approx(max(wars))


def test_unified_selection_without_validation_split_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="validation"):
        fit(fx.make_spec(tmp_path, epochs=1), fx.make_bundle(with_val=False))


def test_multiview_evaluation_averages_the_views_logits():
    model = fx.EngineTestNet(fx.EngineTestNetConfig()).eval()
    bundle = fx.make_bundle(views=2, n_test=6)
    loader = torch.utils.data.DataLoader(bundle.test, batch_size=4)
    metrics, preds = evaluate(model, loader, 3, device=torch.device("cpu"), collect=True)
    for p in preds:
        clip, _ = bundle.test[p["index"]]  # (V, C, T, H, W)
        expected = torch.softmax(model(clip).mean(0), -1)
        assert torch.allclose(torch.tensor(p["probs"]), expected, atol=1e-5)
    assert metrics["samples"] == 6


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # 48 clips / batch 8 = 6 steps per epoch; NaN from the 16th training forward = epoch 2, step 3
    spec = fx.make_spec(tmp_path, epochs=4, model_overrides=(("nan_after", 15),))
    with pytest.raises(TrainingError, match=r"epoch 2 \(0-based\), step 3") as info:
        fit(spec, fx.make_bundle())
    assert "last.pt, epoch 1" in str(info.value)
    run_dir = _run_dir(spec)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert len(_rows(run_dir / "history.csv")) == 2
    assert not (run_dir / "done").exists() and not (Path(spec.results_dir) / "runs.csv").exists()


def test_resume_refuses_a_checkpoint_of_another_setup(tmp_path):
    spec = fx.make_spec(tmp_path, epochs=1)
    fit(spec, fx.make_bundle())
    run_dir = _run_dir(spec)
    (run_dir / "done").unlink()  # pretend unfinished so the checkpoint is considered for resuming
    # other settings get their own folder (the run id's recipe hash) and never meet this checkpoint
    changed = replace(spec, train=replace(spec.train, lr=1e-3))
    assert _run_dir(changed) != run_dir
    fit(changed, fx.make_bundle())
    assert (run_dir / "last.pt").exists() and (_run_dir(changed) / "done").exists()
    # a checkpoint of another train setup copied into the folder is still refused
    (run_dir / "last.pt").write_bytes((_run_dir(changed) / "last.pt").read_bytes())
    with pytest.raises(CheckpointError, match="train_hash"):
        fit(spec, fx.make_bundle())
    # a checkpoint of another model variant copied into the folder
    other = fx.make_spec(tmp_path / "other", epochs=1, variant="wide")
    fit(other, fx.make_bundle())
    (run_dir / "last.pt").write_bytes((_run_dir(other) / "last.pt").read_bytes())
    with pytest.raises(CheckpointError, match="variant") as info:
        fit(spec, fx.make_bundle())
    assert "--restart" in str(info.value)
    # --restart (resume=False) trains over it
    assert fit(spec, fx.make_bundle(), resume=False)["epochs"] == 1
    # a file that is not a checkpoint
    (run_dir / "done").unlink()
    (run_dir / "last.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        fit(spec, fx.make_bundle())


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    spec = fx.make_spec(tmp_path, epochs=3)
    first = fx.make_spec(tmp_path, epochs=1, seed=5)
    fit(first, fx.make_bundle())
    runs_before = (Path(spec.results_dir) / "runs.csv").read_bytes()
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, fh, *a, **k):
        calls["n"] += 1
        if isinstance(obj, dict) and obj.get("kind") == "last" and obj.get("epoch") == 1:
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError, match="disk full") as info:
        fit(spec, fx.make_bundle())
    assert "previous checkpoint is intact" in str(info.value)
    monkeypatch.setattr(torch, "save", real_save)
    run_dir = _run_dir(spec)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 0
    assert not list(run_dir.glob(".*.tmp"))
    assert (Path(spec.results_dir) / "runs.csv").read_bytes() == runs_before
    # fixing the disk and re-running resumes and finishes
    assert fit(spec, fx.make_bundle())["epochs"] == 3


def test_result_append_failure_is_reported_and_repaired_on_rerun(tmp_path, monkeypatch):
    spec = fx.make_spec(tmp_path, epochs=1)

    def broken_append(path, rows):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(F, "append_rows", broken_append)
    with pytest.raises(BenchError, match="cannot append results"):
        fit(spec, fx.make_bundle())
    monkeypatch.undo()
    run_dir = _run_dir(spec)
    assert (run_dir / "result.json").exists() and not (run_dir / "done").exists()
    fit(spec, fx.make_bundle())  # resumes after the last epoch: only evaluates and publishes
    runs_csv = Path(spec.results_dir) / "runs.csv"
    assert [r["run_id"] for r in _rows(runs_csv)] == [spec.run_id] and (run_dir / "done").exists()
    # a crash between appending the rows and writing `done` must not duplicate them on the re-run
    (run_dir / "done").unlink()
    F.publish_result(run_dir, Path(spec.results_dir), json.loads((run_dir / "result.json").read_text()))
    assert len(_rows(runs_csv)) == 1 and len(_rows(Path(spec.results_dir) / "per_class.csv")) == 3


def test_interrupted_best_commit_is_completed_or_discarded(tmp_path):
    state = {"format": "ifdd-bench-checkpoint/1", "epoch": 3, "kind": "best"}
    from ifdd_bench.engine.checkpoint import save_atomic

    save_atomic(state, tmp_path / F.BEST_PENDING)
    note = F.recover_pending_best(tmp_path, {"best": {"epoch": 3}})
    assert "completed" in note and (tmp_path / "best.pt").exists() and not (tmp_path / F.BEST_PENDING).exists()
    save_atomic({**state, "epoch": 4}, tmp_path / F.BEST_PENDING)
    note = F.recover_pending_best(tmp_path, {"best": {"epoch": 3}})
    assert "discarded" in note and load_checkpoint(tmp_path / "best.pt")["epoch"] == 3


# --------------------------------------------------------------------------------------------
# train_run + CLI on a tiny DFEW-layout folder (through the data helper's build_datasets)


@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory):
    from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew

    root = tmp_path_factory.mktemp("dfew")
    return write_dfew(root, balanced_dfew_rows(4, frames=6), test=balanced_dfew_rows(1, frames=6, start=100), size=16)


def _cli(*args):
    from cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    result.text = " ".join(result.output.split())  # rich wraps long lines
    return result


def test_train_run_returns_the_stored_row_of_a_finished_run(tmp_path, dfew_root):
    data = DataConfig(dataset="dfew", data_root=str(dfew_root), frames=4, segments=4, size=8)
    spec = replace(fx.make_spec(tmp_path, epochs=1), data=data)
    row = train_run(spec)
    mtime = (_run_dir(spec) / "last.pt").stat().st_mtime_ns
    events = []
    assert train_run(spec, progress=events.append) == row
    assert events[-1]["kind"] == "done" and events[-1]["cached"]
    assert (_run_dir(spec) / "last.pt").stat().st_mtime_ns == mtime  # not retrained
    other = replace(spec, data=replace(data, size=12))  # other settings: a run of its own, not this one's row
    assert _run_dir(other) != _run_dir(spec) and train_run(other)["size"] == 12
    # a finished folder whose config.json was written with other settings is refused, not returned
    (_run_dir(spec) / "config.json").write_text((_run_dir(other) / "config.json").read_text())
    with pytest.raises(CheckpointError, match="data_config"):
        train_run(spec)


def test_cli_train_and_predict(tmp_path, dfew_root):
    runs = tmp_path / "runs"
    result = _cli("run", "train", "--model", fx.TEST_MODEL, "--dataset", "dfew", "--data-root", str(dfew_root),
                  "--epochs", "2", "--set", "frames=4", "--set", "data.segments=4", "--set", "data.size=8",
                  "--set", "batch_size=8", "--set", "device=cpu", "--runs-dir", str(runs),
                  "--results-dir", str(tmp_path / "results"))
    assert result.exit_code == 0, result.output
    assert "selected on validation UAR" in result.text and "per-class recall" in result.text
    (run_dir,) = runs.glob(f"{fx.TEST_MODEL}-full-dfew-f1-s0-unified-*")
    # the same request as a recipe file is the same run: found finished, not trained again
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {fx.TEST_MODEL}\ndataset: dfew\ndata_root: {dfew_root}\nepochs: 2\nset:\n"
                      "  frames: 4\n  batch_size: 8\n  device: cpu\n  data:\n    segments: 4\n    size: 8\n")
    mtime = (run_dir / "last.pt").stat().st_mtime_ns
    again = _cli("run", "train", "--config", str(recipe), "--runs-dir", str(runs), "--results-dir",
                 str(tmp_path / "results"), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["run_id"] == run_dir.name and (run_dir / "last.pt").stat().st_mtime_ns == mtime
    clip = next(p for p in (dfew_root / "Clip").rglob("*") if p.is_dir() and p.name.isdigit())
    out = _cli("predict", "--checkpoint", str(run_dir), str(clip), "--json")
    assert out.exit_code == 0, out.output
    pred = json.loads(out.output)["predictions"][0]
    assert pred["label"] in pred["probs"] and sum(pred["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    table = _cli("predict", "--checkpoint", str(run_dir / "best.pt"), str(clip))
    assert table.exit_code == 0 and "prediction" in table.output
    bad = _cli("predict", "--checkpoint", str(run_dir / "history.csv"), str(clip))
    assert bad.exit_code == 2 and "cannot be read" in bad.text


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["--model", fx.TEST_MODEL, "--variant", "tall"], "valid: full, wide"),
    (["--model", fx.TEST_MODEL, "--dataset", "afew"], "valid: dfew, ferv39k, mafw, synth"),
    (["--model", fx.TEST_MODEL, "--set", "lrr=1"], "did you mean: lr"),
    (["--model", fx.TEST_MODEL, "--set", "model.img_size=32"], "data.size"),
    (["--model", fx.TEST_MODEL, "--fold", "6"], "valid folds are 1..5"),
    (["--model", fx.TEST_MODEL, "--dataset", "ferv39k", "--data-root", ".", "--fold", "2"], "single official split"),
    (["--model", fx.TEST_MODEL, "--dataset", "dfew"], "needs --data-root"),
    (["--model", fx.TEST_MODEL, "--set", "selection=best"], "unknown selection"),
    (["--model", fx.TEST_MODEL, "--set", "log_every=0"], "log_every must be >= 1"),
    (["--model", fx.TEST_MODEL, "--set", "data.workers=-1"], "data.workers must be >= 0"),
    (["--model", fx.TEST_MODEL, "--precision", "fp8"], "'fp8' is not one of 'fp32', 'bf16', 'fp16'"),
    (["--model", fx.TEST_MODEL, "--set", "precision=fp8"], "unknown precision 'fp8'"),
])
def test_cli_bad_input_is_a_clear_error(tmp_path, args, message):
    result = _cli("run", "train", *args, "--runs-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.text and "Traceback" not in result.text


def test_cli_data_root_that_fails_the_check(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _cli("run", "train", "--model", fx.TEST_MODEL, "--dataset", "dfew", "--data-root",
                  str(tmp_path / "empty"), "--runs-dir", str(tmp_path / "runs"), "--set", "device=cpu")
    assert result.exit_code == 2 and "not found" in result.text
    assert not list((tmp_path / "runs").glob("*/last.pt"))


def test_loader_workers_do_not_change_the_result(tmp_path):
    """Per-item randomness depends on (seed, epoch, index) and worker seeds on (seed, epoch), so
    0 and 2 DataLoader workers train identical weights."""
    specs = []
    for workers in (0, 2):
        spec = fx.make_spec(tmp_path / f"w{workers}", epochs=2, mixup=True)
        spec = replace(spec, data=replace(spec.data, workers=workers))
        fit(spec, fx.make_bundle())
        specs.append(spec)
    a, b = (load_checkpoint(_run_dir(s) / "last.pt") for s in specs)
    for key, tensor in a["model_state"].items():
        assert torch.equal(tensor, b["model_state"][key]), key


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on a machine without CUDA")
def test_cuda_requested_without_cuda_falls_back_to_cpu_loudly(tmp_path):
    spec = fx.make_spec(tmp_path, epochs=1, device="cuda", precision="fp16")
    events = []
    row = fit(spec, fx.make_bundle(), progress=events.append)
    warnings = [e["message"] for e in events if e["kind"] == "warning"]
    assert any("TRAINING ON THE CPU" in w for w in warnings)
    assert any("precision=fp16 needs CUDA and is ignored" in w for w in warnings)
    env = json.loads((_run_dir(spec) / "environment.json").read_text())
    assert env["device"].startswith("cpu") and env["precision"] == "fp32" and env["notes"]
    assert row["device"] == "cpu" and row["precision"] == "fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp, compile_", [("bf16", False), ("fp16", False), ("bf16", True)])
def test_gpu_mixed_precision_channels_last_and_compile(tmp_path, amp, compile_):
    spec = fx.make_spec(tmp_path, epochs=2, device="cuda", precision=amp, channels_last=True, compile=compile_,
                        mixup=True)
    events = []
    row = fit(spec, fx.make_bundle(), progress=events.append)
    assert not [e for e in events if e["kind"] == "warning" and "torch.compile failed" in e["message"]]
    assert row["device"].startswith("cuda") and row["precision"] == amp
    assert row["war"] > 0.5
    ckpt = load_checkpoint(_run_dir(spec) / "best.pt")
    assert all(not k.startswith("_orig_mod") for k in ckpt["model_state"])  # the plain module's weights
    if amp == "fp16":
        assert load_checkpoint(_run_dir(spec) / "last.pt")["scaler_state"]


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    """precision=bf16 is real autocast on the CPU too (no GradScaler): the run records bf16 and its
    weights differ from the fp32 run's, which starts from the same weights and batches."""
    rows, states = {}, {}
    for precision in ("fp32", "bf16"):
        spec = fx.make_spec(tmp_path / precision, epochs=1, precision=precision)
        events = []
        rows[precision] = fit(spec, fx.make_bundle(), progress=events.append)
        assert not [e for e in events if e["kind"] == "warning"]
        assert json.loads((_run_dir(spec) / "environment.json").read_text())["precision"] == precision
        ckpt = load_checkpoint(_run_dir(spec) / "last.pt")
        assert not ckpt.get("scaler_state")
        states[precision] = ckpt["model_state"]
    assert rows["bf16"]["precision"] == "bf16" and math.isfinite(rows["bf16"]["uar"])
    assert any(not torch.equal(states["fp32"][k], states["bf16"][k]) for k in states["fp32"])


def test_a_failing_compile_falls_back_to_eager_with_a_message(tmp_path, monkeypatch):
    from ifdd_bench.engine import accel

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no C compiler here")

    monkeypatch.setattr(accel, "COMPILE_BACKEND", broken_backend)
    spec = fx.make_spec(tmp_path, epochs=1, compile=True)
    events = []
    row = fit(spec, fx.make_bundle(), progress=events.append)
    fallbacks = [e["message"] for e in events if e["kind"] == "warning" and "torch.compile failed" in e["message"]]
    assert len(fallbacks) == 2 and all("no C compiler here" in m and "eagerly" in m for m in fallbacks)
    assert row["precision"] == "fp32" and math.isfinite(row["uar"])
    eager = fx.make_spec(tmp_path / "eager", epochs=1)
    fit(eager, fx.make_bundle())
    a, b = (load_checkpoint(_run_dir(s) / "last.pt")["model_state"] for s in (spec, eager))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the fallback is the eager run


def test_channels_last_lays_out_conv3d_weights_of_a_model_with_conv2d_too():
    import torch
    from torch import nn

    from ifdd_bench.engine.loop import channels_last_3d

    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Conv2d(4, 4, 1))  # .to(memory_format=...) would raise here
    channels_last_3d(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert model[1].weight.is_contiguous()
