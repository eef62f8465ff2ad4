"""Kill-and-resume: a run SIGKILLed mid-epoch (or between its last epoch and its results) and
re-run with the same command ends bit-identical to an uninterrupted run on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).with_name("test_engine_fixtures.py")
RUN_PREFIX = "engine_test_net-full-synth-f1-s0-unified-"  # + the recipe hash of the script's settings


def run_folder(runs_dir):
    """The one run folder the fixture script wrote under ``runs_dir``."""
    (folder,) = Path(runs_dir).glob(RUN_PREFIX + "*")
    return folder
TIMING = {"clips_per_s", "step_s", "data_wait_s", "compute_s", "bookkeeping_s", "overhead_share", "train_s",
          "eval_s", "epoch_s"}
ARGS = ["--epochs", "4", "--mixup", "1"]  # mixup exercises the mixer's own random stream too


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _run(runs_dir: Path, *extra: str) -> list[dict]:
    out = subprocess.run([sys.executable, str(FIXTURE), str(runs_dir), *ARGS, *extra], env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def _kill_at(runs_dir: Path, when) -> list[dict]:
    """Start the run (or its re-run) and SIGKILL it when ``when(event)`` first holds."""
    proc = subprocess.Popen([sys.executable, str(FIXTURE), str(runs_dir), *ARGS, "--step-delay", "0.02"],
                            env=_env(), stdout=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            event = json.loads(line)
            seen.append(event)
            if when(event):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill point"
    return seen


def _final(runs_dir: Path) -> tuple[dict, dict, dict]:
    folder = run_folder(runs_dir)
    last = torch.load(folder / "last.pt", weights_only=True)
    best = torch.load(folder / "best.pt", weights_only=True)
    result = json.loads((folder / "result.json").read_text())
    return last, best, result


def _uninterrupted(runs_dir: Path) -> tuple[dict, dict, dict]:
    """The same run in this process (one torch thread, as the subprocesses)."""
    import test_engine_fixtures as fx

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fx.main([str(runs_dir), *ARGS])
    finally:
        torch.set_num_threads(before)
    return _final(runs_dir)


def test_sigkill_anywhere_then_rerun_gives_identical_weights_and_metrics(tmp_path, capsys):
    reference = _uninterrupted(tmp_path / "straight")
    capsys.readouterr()
    runs = tmp_path / "killed"
    # first kill: in the middle of epoch 2 (epochs 0 and 1 are checkpointed)
    _kill_at(runs, lambda e: e["kind"] == "step" and e["epoch"] == 2 and e["step"] == 2)
    assert torch.load(run_folder(runs) / "last.pt", weights_only=True)["epoch"] == 1
    # second kill, in the re-run: after the last epoch, before the final evaluation and results
    _kill_at(runs, lambda e: e["kind"] == "epoch_end" and e["epoch"] == 3)
    assert not (run_folder(runs) / "done").exists()
    events = _run(runs)
    assert [e["epoch"] for e in events if e["kind"] == "resume"] == [3]
    assert not any(e["kind"] == "epoch_start" for e in events)  # nothing left to train

    last, best, result = _final(runs)
    ref_last, ref_best, ref_result = reference
    for key, tensor in ref_last["model_state"].items():
        assert torch.equal(tensor, last["model_state"][key]), key
    for key, tensor in ref_best["model_state"].items():
        assert torch.equal(tensor, best["model_state"][key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(last["history"]) == strip(ref_last["history"])
    for key in ("uar", "war", "val_uar", "val_war", "last_uar", "last_war", "best_test_uar", "best_test_war",
                "selected_epoch"):
        assert result["row"][key] == ref_result["row"][key], key
    assert result["confusion"] == ref_result["confusion"]
    assert len((runs / "results" / "runs.csv").read_text().splitlines()) == 2  # header + one row
