"""`--log tensorboard` / `--log wandb`: event files read back with TensorBoard's own reader, a resumed
run that logs no step twice, a logger failure that warns once without stopping the run, and the
clear error before training when a logger's package is missing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import test_engine_fixtures as fx
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew
from ifdd_bench.engine.loggers import TB_DIR, TensorBoardLogger
from ifdd_bench.engine.run import train_run
from ifdd_bench.errors import ConfigError
from ifdd_bench.spec import build_run_spec

SETS = ("frames=4", "data.size=8", "batch_size=4", "device=cpu", "log_every=1")


def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / TB_DIR), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A DFEW-layout folder: 3 training clips per class (the unified protocol holds some out for
    validation; batches of 4 give several steps per epoch) and 1 test clip per class."""
    root = tmp_path_factory.mktemp("loggers") / "dfew"
    write_dfew(root, balanced_dfew_rows(3, frames=6), test=balanced_dfew_rows(1, frames=6, start=100), size=16)
    return root


def _spec(root: Path, base: Path, loggers: str, epochs: int = 2):
    return build_run_spec(fx.TEST_MODEL, dataset="dfew", data_root=root, epochs=epochs, overrides=SETS,
                          runs_dir=base / "runs", results_dir=base / "results", loggers=loggers)


def test_tensorboard_event_files_mirror_the_csv_files(root, tmp_path):
    out = fx.run_cli("run", "train", "--model", fx.TEST_MODEL, "--dataset", "dfew", "--data-root", root, "--epochs", 2,
               *[a for s in SETS for a in ("-s", s)], "--log", "tensorboard",
               "--runs-dir", tmp_path / "runs", "--results-dir", tmp_path / "results")
    assert out.exit_code == 0, out.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    acc = _events(run_dir)
    tags = acc.Tags()
    assert {"step/loss", "step/lr", "epoch/train_loss", "epoch/val_uar", "epoch/test_war", "result/uar"} \
        <= set(tags["scalars"])
    assert tags["images"] == ["result/confusion"]

    steps = [e.step for e in acc.Scalars("step/loss")]
    per_epoch = len(steps) // 2
    assert per_epoch >= 2 and steps == list(range(2 * per_epoch))  # log_every=1: every step once
    history = fx.csv_rows(run_dir / "history.csv")
    for tag, column in (("epoch/train_loss", "train_loss"), ("epoch/val_uar", "val_uar"), ("epoch/lr", "lr")):
        logged = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[column]), rel=1e-6)) for r in history]
    (row,) = fx.csv_rows(tmp_path / "results" / "runs.csv")
    (uar,) = acc.Scalars("result/uar")
    assert uar.step == int(row["selected_epoch"]) and uar.value == pytest.approx(float(row["uar"]), rel=1e-6)
    (image,) = acc.Images("result/confusion")
    assert image.step == int(row["selected_epoch"]) and image.width > 100 and image.height > 100
    assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_resumed_run_logs_every_step_once(root, tmp_path):
    spec = _spec(root, tmp_path, "tensorboard")

    class Crash(Exception):
        pass

    def crash_in_second_epoch(event):
        if event["kind"] == "step" and event["epoch"] == 1 and event["step"] == 2:
            raise Crash  # epoch 0 is committed; steps 0..2 of epoch 1 are already logged

    with pytest.raises(Crash):
        train_run(spec, progress=crash_in_second_epoch)
    run_dir = Path(spec.runs_dir) / spec.run_id
    first = [e.step for e in _events(run_dir).Scalars("step/loss")]
    per_epoch = first.index(max(first)) - 2  # the crash came after step 2 of epoch 1
    assert first == list(range(per_epoch + 3))

    events = []
    train_run(spec, progress=events.append)
    assert [e["kind"] for e in events if e["kind"] in ("resume", "warning")] == ["resume"]
    acc = _events(run_dir)
    assert len(list((run_dir / TB_DIR).iterdir())) == 2  # one event file per attempt
    assert [e.step for e in acc.Scalars("step/loss")] == list(range(2 * per_epoch))
    assert [e.step for e in acc.Scalars("epoch/train_loss")] == [0, 1]


def test_a_failing_logger_warns_once_and_the_run_finishes(root, tmp_path, monkeypatch):
    def full_disk(self, epoch, event):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardLogger, "log_epoch", full_disk)
    events = []
    row = train_run(_spec(root, tmp_path, "tensorboard"), progress=events.append)
    warnings = [e["message"] for e in events if e["kind"] == "warning"]
    assert len(warnings) == 1 and "tensorboard logger stopped" in warnings[0] and "No space left" in warnings[0]
    assert math.isfinite(row["uar"]) and len(fx.csv_rows(tmp_path / "results" / "runs.csv")) == 1
    assert [e["kind"] for e in events].count("epoch_end") == 2  # training went on after the failure


def test_wandb_runs_offline_in_the_run_folder(root, tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    spec = _spec(root, tmp_path, "wandb", epochs=1)
    events = []
    train_run(spec, progress=events.append)
    assert [e["message"] for e in events if e["kind"] == "warning"] == []
    wandb.teardown()  # the run is finished; stopping wandb's service process flushes its record file
    run_dir = Path(spec.runs_dir) / spec.run_id
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (record,) = offline.glob("run-*.wandb")
    data = record.read_bytes()
    for key in (b"step/loss", b"epoch/val_uar", b"result/uar", spec.run_id.encode()):
        assert key in data, key
    assert list((offline / "files" / "media" / "images").rglob("*.png"))  # the confusion matrix


@pytest.mark.parametrize("command", ["train", "ablation"])
def test_a_missing_logger_package_fails_before_anything_is_written(root, tmp_path, monkeypatch, command):
    import ifdd_bench.extras as extras

    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda module: module != "wandb" and real(module))
    model = ("--model", fx.TEST_MODEL) if command == "train" else ("--model", "ifdd_tiny", "--variants", "full")
    out = fx.run_cli("run", command, *model, "--dataset", "dfew", "--data-root", root, "--epochs", 1,
               "--log", "tensorboard,wandb", "--runs-dir", tmp_path / "runs", "--results-dir", tmp_path / "results")
    assert out.exit_code == 2, out.output
    assert "--logwandbneedsthepackage'wandb'" in out.text and "pipinstall'ifdd-bench[wandb]'" in out.text
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_unknown_logger_names_the_valid_ones(root, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown logger 'tensorbord' \(did you mean: tensorboard\?\)"):
        _spec(root, tmp_path, "tensorbord")
    assert not (tmp_path / "runs").exists()
    spec = _spec(root, tmp_path, ["tensorboard", "tensorboard"])
    assert spec.loggers == ("tensorboard",)
    assert spec.run_id == _spec(root, tmp_path, "").run_id  # loggers are not part of the run's identity


def test_every_sweep_cell_logs_and_the_sweep_id_stays(root):
    from ifdd_bench.sweep import plan_sweep

    def plan(loggers):
        return plan_sweep(fx.TEST_MODEL, "full,wide", dataset="dfew", data_root=root, folds="1", seeds="0,1",
                          overrides=SETS, loggers=loggers)

    logged, plain = plan("tensorboard"), plan(())
    assert [c.spec.loggers for c in logged.cells()] == [("tensorboard",)] * 4
    assert logged.sweep_id == plain.sweep_id and [c.run_id for c in logged.cells()] == [c.run_id for c in plain.cells()]


def test_a_log_option_that_names_nothing_is_refused():
    from ifdd_bench.config import parse_loggers

    with pytest.raises(ConfigError, match="--log needs a logger name"):
        parse_loggers(",")
    assert parse_loggers("") == () and parse_loggers(None) == ()
