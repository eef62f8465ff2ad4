"""Slurm through submitit: the optional extra, the cluster options, and multi-rank jobs.

The multi-GPU path is tested on the CPU: a submitit job on the ``local`` cluster with
``--gpus-per-job 2`` runs two processes that train one cell as two gloo DDP ranks, and its weights
match those of one process with the same global batch (the reasons that comparison is exact are in
tests/test_engine_ddp.py; ``engine_test_net`` has no BatchNorm and no dropout, SynthDFER's per-clip
randomness depends on (seed, epoch, index) only).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import test_engine_fixtures as fx  # registers engine_test_net (also in the job processes, via rank_runner)
from ifdd_bench import sweep
from ifdd_bench.errors import ConfigError
from ifdd_bench.sweep import slurm

HERE = Path(__file__).resolve().parent


def squash(text: str) -> str:
    """Text without whitespace (rich wraps long CLI lines anywhere)."""
    return "".join(text.split())


# ------------------------------------------------------------------------------------------------
# option values


@pytest.mark.parametrize("text, minutes", [("90", 90), ("90:30", 91), ("01:30:00", 90), ("1-12", 2160),
                                           ("1-12:30", 2190), ("1-00:00:01", 1441), ("0:30", 1)])
def test_slurm_time_formats(text, minutes):
    assert slurm.parse_slurm_time(text) == minutes


@pytest.mark.parametrize("text, match", [("2h", "is not a Slurm time limit"), ("1:2:3:4", "is not a Slurm time"),
                                         ("-5", "is not a Slurm time"), ("1-", "is not a Slurm time"),
                                         ("00:61:00", "above 59"), ("0", "is no limit"),
                                         ("0:00", "is no limit")])
def test_slurm_time_refuses_other_forms(text, match):
    with pytest.raises(ConfigError, match=match) as err:
        slurm.parse_slurm_time(text)
    assert "--slurm-time" in str(err.value) and "D-HH:MM:SS" in str(err.value)


@pytest.mark.parametrize("text, value", [("64G", "64G"), ("64gb", "64G"), ("16GiB", "16G"), ("32000", "32000"),
                                         ("512m", "512M"), ("0", "0")])
def test_slurm_mem_units(text, value):
    assert slurm.parse_slurm_mem(text) == value


@pytest.mark.parametrize("text", ["64 gigs", "1.5G", "G", "-4G", "64P"])
def test_slurm_mem_refuses_other_forms(text):
    with pytest.raises(ConfigError, match=r"--slurm-mem: .* is not a memory size; write an integer with a unit"):
        slurm.parse_slurm_mem(text)


def test_slurm_extra_becomes_additional_parameters():
    assert slurm.parse_slurm_extra(["qos=high", "mail_type=END", "--exclusive"]) == {
        "qos": "high", "mail-type": "END", "exclusive": True}


@pytest.mark.parametrize("items, match", [
    (["mem=4G"], "mem has its own option; use --slurm-mem"),
    (["ntasks-per-node=2"], "use --gpus-per-job"),
    (["output=x"], "set by the sweep itself"),
    (["qos=a", "qos=b"], "qos is given twice"),
    (["qos="], "has no value"),
    (["=high"], "is not KEY=VALUE"),
    (["Q OS=x"], "is not KEY=VALUE"),
])
def test_slurm_extra_refusals(items, match):
    with pytest.raises(ConfigError, match=match):
        slurm.parse_slurm_extra(items)


def test_options_under_submitit_names():
    options = sweep.submitit_options(cluster="slurm", partition="gpu", account="lab", mem="64gb", time="2-00:00:00",
                                     constraint="a100|h100", extra=["qos=high"], gpus_per_job=4)
    assert options == {"cluster": "slurm", "slurm_partition": "gpu", "slurm_account": "lab", "slurm_mem": "64G",
                       "slurm_constraint": "a100|h100", "slurm_additional_parameters": {"qos": "high"},
                       "timeout_min": 2880, "gpus_per_node": 4, "tasks_per_node": 4}
    assert sweep.submitit_options(executor="local") == {}
    assert sweep.submitit_options() == {}


@pytest.mark.parametrize("kwargs, match", [
    (dict(executor="local", mem="4G"), "--slurm-mem only applies to submitit jobs; add --executor submitit"),
    (dict(executor="local", cluster="local", gpus_per_job=2), "--cluster, --gpus-per-job only apply"),
    (dict(time="10", timeout_min=10), "--slurm-time and --timeout-min are the same limit"),
    (dict(cluster="lsf"), "unknown submitit cluster 'lsf'"),
    (dict(cluster="debug", gpus_per_job=2), "--cluster debug runs a job inside this process"),
    (dict(account=" "), "--slurm-account is empty"),
])
def test_option_refusals(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sweep.submitit_options(**kwargs)


def test_sbatch_script_carries_the_options(tmp_path, monkeypatch):
    """The options reach the sbatch script submitit writes (a stand-in ``srun`` makes submitit take
    this machine for a Slurm login node; nothing is submitted)."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "srun"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    options = sweep.submitit_options(cluster="slurm", partition="gpu", account="lab", mem="64G", time="1-12:00:00",
                                     constraint="a100", extra=["qos=high", "exclusive"], gpus_per_job=4)
    ex, threads = slurm.make_executor(tmp_path / "submitit", options, jobs=2)
    lines = set(ex._executor._make_submission_file_text("true", "uid").splitlines())  # the sbatch text
    assert {"#SBATCH --account=lab", "#SBATCH --partition=gpu", "#SBATCH --mem=64G", "#SBATCH --time=2160",
            "#SBATCH --constraint=a100", "#SBATCH --qos=high", "#SBATCH --exclusive", "#SBATCH --gpus-per-node=4",
            "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=4", "#SBATCH --job-name=ifdd-bench"} <= lines
    assert threads == 4


# ------------------------------------------------------------------------------------------------
# submitit missing: one message naming the extra, nothing written


@pytest.fixture
def no_submitit(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError


@pytest.mark.parametrize("args", [["--executor", "submitit"], ["--slurm-account", "lab"],
                                  ["--executor", "submitit", "--gpus-per-job", "2", "--dry-run"]])
def test_cli_without_submitit_names_the_extra_and_writes_nothing(tmp_path, no_submitit, args):
    from click.testing import CliRunner

    import cli

    runs, res = tmp_path / "runs", tmp_path / "res"
    result = CliRunner().invoke(cli.main, ["run", "ablation", "--model", fx.TEST_MODEL, "--runs-dir", str(runs),
                                           "--results-dir", str(res), *args])
    assert result.exit_code == 2, result.output
    assert "needssubmitit,whichisnotinstalled" in squash(result.output)
    assert "pipinstall'ifdd-bench[slurm]'" in squash(result.output)
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_submitit_is_imported_by_its_executor_only():
    import subprocess

    code = "import sys, cli, ifdd_bench.sweep; print('submitit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent,
                         env={**os.environ, "PYTHONPATH": str(HERE.parent)}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_run_sweep_without_submitit_writes_nothing(tmp_path, no_submitit):
    plan = sweep.plan_sweep(fx.TEST_MODEL, "full", folds="1", runs_dir=tmp_path / "runs",
                            results_dir=tmp_path / "res")
    with pytest.raises(ConfigError, match=r"(?s)needs submitit.*pip install 'ifdd-bench\[slurm\]'"):
        sweep.run_sweep(plan, executor="submitit")
    assert list(tmp_path.iterdir()) == []


def test_cli_passes_the_cluster_options(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import cli

    seen = {}

    def run_sweep(plan, **kwargs):
        seen.update(kwargs)
        return sweep.SweepOutcome(plan.sweep_id, tmp_path, len(plan.cells()))

    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    result = CliRunner().invoke(cli.main, [
        "run", "ablation", "--model", fx.TEST_MODEL, "--no-report", "--runs-dir", str(tmp_path / "runs"),
        "--results-dir", str(tmp_path / "res"), "--executor", "submitit", "--cluster", "local",
        "--partition", "gpu", "--slurm-account", "lab", "--slurm-mem", "32g", "--slurm-time", "04:00:00",
        "--slurm-constraint", "h100", "--slurm-extra", "qos=high", "--slurm-extra", "mail-type=END",
        "--gpus-per-job", "2"])
    assert result.exit_code == 0, result.output
    assert seen["executor"] == "submitit"
    assert seen["submitit_options"] == {
        "cluster": "local", "slurm_partition": "gpu", "slurm_account": "lab", "slurm_mem": "32G",
        "slurm_constraint": "h100", "slurm_additional_parameters": {"qos": "high", "mail-type": "END"},
        "timeout_min": 240, "gpus_per_node": 2, "tasks_per_node": 2}


def test_cli_bad_slurm_value_is_one_message(tmp_path):
    pytest.importorskip("submitit")
    from click.testing import CliRunner

    import cli

    result = CliRunner().invoke(cli.main, ["run", "ablation", "--executor", "submitit", "--slurm-time", "2h",
                                           "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--slurm-time:'2h'isnotaSlurmtimelimit" in squash(result.output)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------
# multi-rank jobs


def _plan(root: Path, *overrides: str, device: str = "cpu", epochs: int = 2):
    return sweep.plan_sweep(fx.TEST_MODEL, "full", folds="1", seeds="0", epochs=epochs,
                            overrides=["data.synth_preset=smoke", f"device={device}", "batch_size=8", "lr=3e-2",
                                       *overrides],
                            runs_dir=root / "runs", results_dir=root / "res")


@pytest.mark.parametrize("overrides, match", [(["batch_size=6"], "batch_size 6 of .* is not divisible by the 4 ranks"),
                                              (["device=cuda:1"], "pins all 4 ranks"),
                                              (["mixup=true", "batch_size=4"], "mixup needs an even batch per rank")])
def test_ranks_refuse_cells_before_anything_is_written(tmp_path, overrides, match):
    pytest.importorskip("submitit")
    plan = _plan(tmp_path, *overrides)
    with pytest.raises(ConfigError, match=match):
        sweep.run_sweep(plan, executor="submitit", submitit_options={"cluster": "local", "tasks_per_node": 4})
    assert list(tmp_path.iterdir()) == []


def test_rank_environment_of_local_and_slurm_tasks():
    def job(cluster, rank, job_id="4711", tasks=2, nodes=1, hosts=("node7", "node8")):
        return SimpleNamespace(cluster=cluster, job_id=job_id, global_rank=rank, local_rank=rank % (tasks // nodes),
                               num_tasks=tasks, num_nodes=nodes, hostnames=list(hosts))

    first, second = slurm.rank_environment(job("local", 0)), slurm.rank_environment(job("local", 1))
    assert (first["RANK"], second["RANK"], first["WORLD_SIZE"], second["LOCAL_RANK"]) == ("0", "1", "2", "1")
    assert first["MASTER_ADDR"] == second["MASTER_ADDR"] == "127.0.0.1"
    assert first["MASTER_PORT"] == second["MASTER_PORT"]  # every task of a job meets at the same port
    low, high = slurm.PORT_RANGE
    assert low <= int(first["MASTER_PORT"]) < high
    assert slurm.rank_environment(job("local", 0, job_id="4712"))["MASTER_PORT"] != first["MASTER_PORT"]
    on_slurm = slurm.rank_environment(job("slurm", 5, tasks=8, nodes=2))  # rank 5 = 2nd node, local rank 1
    # the port depends on the job id alone: the same job id meets at the same port on either executor
    assert on_slurm == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                        "MASTER_ADDR": "node7", "MASTER_PORT": first["MASTER_PORT"]}


def _env_runner(spec, progress=None, resume=True):
    return {key: os.environ.get(key) for key in slurm.RANK_VARIABLES}


@pytest.mark.parametrize("tasks", [1, 2])
def test_job_entry_sets_or_clears_the_rank_variables(monkeypatch, tasks):
    pytest.importorskip("submitit")
    import submitit

    for key in slurm.RANK_VARIABLES:  # monkeypatch restores whatever run_job_cell changes
        monkeypatch.setenv(key, "inherited")
    job_env = SimpleNamespace(cluster="local", job_id="99", global_rank=1, local_rank=1, num_tasks=tasks,
                              num_nodes=1, hostnames=["vm"])
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: job_env)
    seen = slurm.run_job_cell(fx.make_spec("unused"), _env_runner)
    if tasks == 1:  # a one-task job is one process, whatever the submitting shell exported
        assert all(seen[key] is None for key in slurm.RANK_VARIABLES)
    else:
        assert (seen["RANK"], seen["WORLD_SIZE"], seen["MASTER_ADDR"]) == ("1", "2", "127.0.0.1")


def rank_runner(spec, progress=None, resume=True):
    """The engine's ``train_run``, after recording this process's rank variables in the runs folder."""
    from ifdd_bench.engine.run import train_run

    out = Path(spec.runs_dir) / "ranks"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{os.getpid()}.json").write_text(json.dumps({k: os.environ.get(k) for k in slurm.RANK_VARIABLES}))
    return train_run(spec, progress=progress, resume=resume)


def _two_rank_cell(tmp_path: Path, monkeypatch, device: str):
    """Train one cell as a 2-task job on submitit's local cluster and as one process; check the ranks
    ran, one row was written, and return the two ``last.pt`` checkpoints (ranks, one process)."""
    import torch

    for key in slurm.RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    # the job processes unpickle rank_runner by module name: make this folder importable there
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ddp, single = (_plan(tmp_path / name, device=device) for name in ("ddp", "single"))
    options = sweep.submitit_options(cluster="local", gpus_per_job=2, timeout_min=5)
    outcome = sweep.run_sweep(ddp, executor="submitit", runner=rank_runner, submitit_options=options)
    (cell,) = ddp.cells()
    assert outcome.ok and outcome.done == [cell.run_id], outcome.failed

    # two processes ran, as ranks 0 and 1 of one group
    ranks = [json.loads(p.read_text()) for p in (tmp_path / "ddp" / "runs" / "ranks").glob("*.json")]
    assert sorted(r["RANK"] for r in ranks) == ["0", "1"]
    assert {(r["WORLD_SIZE"], r["MASTER_ADDR"], r["MASTER_PORT"]) for r in ranks} == {
        ("2", "127.0.0.1", ranks[0]["MASTER_PORT"])}
    run_dir = tmp_path / "ddp" / "runs" / cell.run_id
    assert json.loads((run_dir / "environment.json").read_text())["world_size"] == 2
    # one row, written by rank 0, that says it was trained by two processes
    with (tmp_path / "ddp" / "res" / "runs.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["run_id"] == cell.run_id and row["world_size"] == "2"
    assert row["device"] == ("cpu x2" if device == "cpu" else "cuda:0 x2")
    assert sweep.JobBook(outcome.folder, ddp.sweep_id).rows()[0]["status"] == "done"

    assert sweep.run_sweep(single, runner=rank_runner).ok
    return (torch.load(run_dir / "last.pt", weights_only=True, map_location="cpu"),
            torch.load(tmp_path / "single" / "runs" / cell.run_id / "last.pt", weights_only=True,
                       map_location="cpu"))


def _same_training(ranks: dict, single: dict, rtol: float, atol: float) -> None:
    """The ranks' weights equal one process's with the same global batch: they averaged gradients."""
    import torch

    for key, tensor in single["model_state"].items():
        assert torch.isfinite(ranks["model_state"][key]).all(), key
        assert torch.allclose(ranks["model_state"][key], tensor, rtol=rtol, atol=atol), key
    losses = [h["train_loss"] for h in ranks["history"]]
    assert losses[1] < losses[0]  # it learned
    assert [h["train_loss"] for h in single["history"]] == pytest.approx(losses, rel=max(rtol / 10, 1e-5))


def test_two_gloo_ranks_through_the_local_submitit_cluster(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    _same_training(*_two_rank_cell(tmp_path, monkeypatch, "cpu"), rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_two_nccl_ranks_on_two_gpus(tmp_path, monkeypatch):
    """The same job with device=cuda: NCCL, rank k on GPU k (not run yet: needs two GPUs)."""
    pytest.importorskip("submitit")
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    _same_training(*_two_rank_cell(tmp_path, monkeypatch, "cuda"), rtol=1e-3, atol=1e-5)
