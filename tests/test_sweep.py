"""Sweeps: grid expansion, skipping finished cells, resume, failures, executors, concurrent writers.

Most tests use ``fake_runner`` (a module-level function, so spawned workers and submitit jobs can
unpickle it) that writes a result row like the engine does. Its behaviour is driven by files in
the results folder so it works across processes: ``fail_<run_id>`` makes a cell raise,
``calls/<run_id>.<pid>.<n>`` records every call.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ifdd_bench import registry, results, sweep
from ifdd_bench.sweep import plan as sweep_plan, pool
from ifdd_bench.spec import EMBEDDED_DATA, EMBEDDED_TRAIN
from ifdd_bench.config import train_hash
from ifdd_bench.errors import BenchError, ConfigError, DataError

TOY = "sweep_toy"
TOY_BASE = "sweep_toy_base"


@dataclass(frozen=True)
class ToyConfig:
    num_classes: int = 7
    frames: int = 16
    img_size: int = 32
    issm: bool = True  # content-aware split; False -> lazy split
    ladm: bool = True
    width: int = 8


TOY_ABLATIONS = {"full": {}, "no_issm": {"issm": False}, "no_ladm": {"ladm": False},
                 "baseline": {"issm": False, "ladm": False}}


def _register() -> None:
    @registry.register_model(TOY, config_cls=ToyConfig, ablations=TOY_ABLATIONS, family="toy",
                             description="sweep test model")
    def sweep_toy(cfg):  # never built: the fake runner does not build models
        raise AssertionError("not built in sweep tests")

    @registry.register_model(TOY_BASE, config_cls=ToyConfig, family="toy", description="sweep test baseline")
    def sweep_toy_base(cfg):
        raise AssertionError("not built in sweep tests")


_register()


def fake_runner(spec, progress=None, resume=True):
    """Stand-in for engine.train_run: writes one RunRow-shaped row for ``spec``."""
    res = Path(spec.results_dir)
    calls = res / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    n = len(list(calls.glob(f"{spec.run_id}.*")))
    (calls / f"{spec.run_id}.{os.getpid()}.{n}").touch()
    if (res / f"fail_{spec.run_id}").exists():
        raise RuntimeError(f"planted failure in {spec.run_id}")
    if (res / f"interrupt_{spec.run_id}").exists():
        raise KeyboardInterrupt
    if progress is not None:
        progress({"epoch": 0})
    acc = 0.5 + 0.1 * (spec.variant == "full") + 0.01 * spec.data.fold + 0.001 * spec.train.seed
    results.append_rows(res / results.RUNS_CSV, [{
        "run_id": spec.run_id, "model": spec.model, "variant": spec.variant, "dataset": spec.data.dataset,
        "fold": spec.data.fold, "seed": spec.train.seed, "protocol": spec.train.protocol,
        "train_hash": train_hash(spec.train), "uar": acc, "war": acc + 0.05, "frames": spec.data.frames,
        "size": spec.data.size, "epochs": spec.train.epochs,
    }])
    return {"run_id": spec.run_id}


def silent_runner(spec, progress=None, resume=True):
    """A runner that 'succeeds' without writing its result row."""
    return {}


def resume_runner(spec, progress=None, resume=True):
    """fake_runner that records the ``resume`` it was called with (``resume/<run_id>.<resume>``)."""
    folder = Path(spec.results_dir) / "resume"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{spec.run_id}.{resume}").touch()
    return fake_runner(spec, progress, resume)


def _resumes(res: Path) -> set[str]:
    return {p.suffix for p in (res / "resume").glob("*")} if (res / "resume").exists() else set()


def _calls(res: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (res / "calls").glob("*")) if (res / "calls").exists() else []


def _plan(tmp_path: Path, **kw):
    args = dict(model=TOY, variants="full,no_issm", folds="1-2", seeds="0", epochs=1,
                runs_dir=tmp_path / "runs", results_dir=tmp_path / "res")
    args.update(kw)
    return sweep.plan_sweep(**args)


# ------------------------------------------------------------------------------------------------
# grid expansion


def test_grid_expands_variants_folds_seeds_and_baselines(tmp_path):
    plan = _plan(tmp_path, variants="no_issm,full", folds="1,3-4", seeds="0,2", baselines=TOY_BASE)
    cells = plan.cells()
    assert len(cells) == 2 * 3 * 2 + 3 * 2
    ids = [c.run_id for c in cells]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith(f"{TOY}-no_issm-synth-f1-s0-unified-")  # table order: variant, fold, seed
    assert ids[1].startswith(f"{TOY}-no_issm-synth-f1-s2-unified-")
    # one recipe for the variant cells: folds and seeds differ, the recipe hash does not
    assert len({c.spec.recipe_hash for c in cells if c.role == "variant"}) == 1
    assert {c.spec.data.fold for c in cells} == {1, 3, 4}
    assert {c.spec.train.seed for c in cells} == {0, 2}
    assert [c.role for c in cells].count("baseline") == 6
    assert all(c.spec.model == TOY_BASE for c in cells if c.role == "baseline")
    # one protocol for every cell: same train hash, only the seed differs
    assert len({c.train_hash for c in cells}) == 1
    assert all(c.spec.train.epochs == 1 for c in cells)


def test_defaults_and_all_variants(tmp_path):
    plan = sweep.plan_sweep(model=TOY, runs_dir=tmp_path, results_dir=tmp_path)
    # defaults: the IFDD ablation rows the model has, in DEFAULT_VARIANTS order
    assert plan.variants == tuple(v for v in sweep.DEFAULT_VARIANTS if v in TOY_ABLATIONS)
    assert plan.folds == sweep.DEFAULT_FOLDS and plan.seeds == sweep.DEFAULT_SEEDS
    assert plan.train.epochs == EMBEDDED_TRAIN["epochs"]
    assert plan.data.cache_clips == EMBEDDED_DATA["cache_clips"]
    assert plan.data.size == 32  # the toy model's native img_size, as in `run train`
    assert _plan(tmp_path, variants="all").variants == tuple(TOY_ABLATIONS)
    # a real dataset sweeps every official fold with the protocol preset's epochs
    real = sweep.plan_sweep(model=TOY, dataset="dfew", data_root=str(tmp_path))
    assert real.folds == (1, 2, 3, 4, 5) and real.train.epochs == 100
    # the embedded CPU recipe: no crop augmentation, no warm-up or smoothing, the feature memo on
    assert plan.data.train_aug == "none" and real.data.train_aug == "unified"
    assert (plan.train.warmup_epochs, plan.train.label_smoothing, plan.train.lr) == (0, 0.0, EMBEDDED_TRAIN["lr"])
    assert plan.train.feature_cache_mb > 0 and real.train.feature_cache_mb == 0
    assert real.train.label_smoothing == 0.1


def test_probes_default_to_every_perturbation_the_dataset_supports(tmp_path):
    from ifdd_bench.config import PERTURBATIONS

    plan = _plan(tmp_path)
    assert plan.probes == PERTURBATIONS  # the embedded SynthDFER knows every clip's apex
    real = sweep.plan_sweep(model=TOY, dataset="dfew", data_root=str(tmp_path))
    assert real.probes == ("shuffle", "reverse", "single", "half-rate")
    synth_copy = sweep.plan_sweep(model=TOY, dataset="synth", data_root=str(tmp_path))  # no clips.csv there
    assert "freeze-apex" not in synth_copy.probes
    assert _plan(tmp_path, probes=False).probes == () and _plan(tmp_path, perturb="single").probes == ("single",)
    # probes change no trained run: the sweep folder (and jobs.csv) stays the same
    assert _plan(tmp_path, probes=False).sweep_id == plan.sweep_id


def test_cells_without_a_checkpoint_are_not_probed_and_rerun_nothing(tmp_path):
    plan = _plan(tmp_path, variants="full", folds="1")
    first = sweep.run_sweep(plan, runner=fake_runner)
    assert first.ok and len(first.done) == 1 and not (tmp_path / "res" / results.PROBES_CSV).exists()
    again = sweep.run_sweep(plan, runner=fake_runner)
    assert again.skipped == first.done and not again.probe_only and _calls(tmp_path / "res") == [first.done[0]]


def test_default_jobs_parallel_only_for_the_embedded_local_sweep(tmp_path, monkeypatch):
    plan = sweep.plan_sweep(model=TOY, runs_dir=tmp_path, results_dir=tmp_path)
    real = sweep.plan_sweep(model=TOY, dataset="dfew", data_root=str(tmp_path))
    monkeypatch.setattr(sweep_plan, "usable_cpus", lambda: 16)
    assert sweep.default_jobs(plan) == sweep.DEFAULT_SYNTH_JOBS == 2
    assert sweep.default_jobs(plan, "submitit") == 1 and sweep.default_jobs(real) == 1
    monkeypatch.setattr(sweep_plan, "usable_cpus", lambda: 1)
    assert sweep.default_jobs(plan) == 1


def test_overrides_route_to_train_data_and_model(tmp_path):
    plan = _plan(tmp_path, overrides=["lr=1e-3", "data.size=48", "model.width=16"])
    cell = plan.cells()[0]
    assert cell.spec.train.lr == 1e-3 and cell.spec.data.size == 48
    assert cell.spec.model_overrides == (("width", 16),)
    assert cell.run_id.startswith(f"{TOY}-full-synth-f1-s0-unified-")
    assert cell.spec.recipe_hash != _plan(tmp_path).cells()[0].spec.recipe_hash  # overrides change the id
    assert plan.sweep_id != _plan(tmp_path).sweep_id


@pytest.mark.parametrize("kwargs, needle", [
    ({"variants": "full,no_isssm"}, "no_isssm"),
    ({"variants": ","}, "no variant"),
    ({"dataset": "dfew", "data_root": "x", "folds": "1-9"}, "dfew has folds 1-5"),
    ({"dataset": "ferv39k", "data_root": "x", "folds": "2"}, "ferv39k has folds 1"),
    ({"folds": "3-1"}, "backwards"),
    ({"folds": "one"}, "not an integer"),
    ({"seeds": ""}, "no seed"),
    ({"seeds": str(2 ** 64)}, "torch's seed range"),
    ({"dataset": "dfew"}, "--data-root"),
    ({"dataset": "affectnet"}, "unknown dataset"),
    ({"baselines": "no_such_model"}, "no_such_model"),
    ({"baselines": f"{TOY_BASE}:nope"}, "nope"),
    ({"epochs": 0}, "--epochs"),
    ({"overrides": ["nosuchkey=1"]}, "nosuchkey"),
    ({"overrides": ["data.fold=2"]}, "--folds"),
    ({"perturb": "shuffle,revers"}, "did you mean: reverse"),
    ({"dataset": "dfew", "data_root": "x", "perturb": "shuffle,freeze-apex"}, "only SynthDFER records"),
])
def test_bad_input_is_a_clear_error(tmp_path, kwargs, needle):
    with pytest.raises(BenchError) as info:
        _plan(tmp_path, **kwargs)
    assert needle in str(info.value)


def test_unknown_executor_and_jobs(tmp_path):
    plan = _plan(tmp_path)
    with pytest.raises(ConfigError, match="slurmx"):
        sweep.run_sweep(plan, executor="slurmx", runner=fake_runner)
    with pytest.raises(ConfigError, match="--jobs"):
        sweep.run_sweep(plan, jobs=0, runner=fake_runner)


# ------------------------------------------------------------------------------------------------
# skipping finished cells, resume, failures


def test_skip_finished_cells(tmp_path):
    plan = _plan(tmp_path)
    events = []
    first = sweep.run_sweep(plan, runner=fake_runner, progress=events.append)
    assert first.ok and len(first.done) == 4 and not first.skipped
    assert any(e["kind"] == "run" for e in events)  # engine progress is forwarded
    again = sweep.run_sweep(plan, runner=fake_runner)
    assert again.done == [] and len(again.skipped) == 4
    assert len(_calls(tmp_path / "res")) == 4  # nothing was trained twice
    # a row with the same run_id but another protocol does not count as finished
    longer = sweep.run_sweep(_plan(tmp_path, epochs=2), runner=fake_runner)
    assert len(longer.done) == 4 and not longer.skipped
    summary = sweep.summarize(plan)
    assert [r["variant"] for r in summary] == ["full", "no_issm"]
    assert summary[0]["n"] == 2 and summary[0]["uar_mean"] == pytest.approx(0.615)
    assert summary[0]["uar_std"] == pytest.approx(0.00707, abs=1e-4)


def test_resume_after_interruption_runs_only_missing_cells(tmp_path):
    plan = _plan(tmp_path)
    res = tmp_path / "res"
    res.mkdir()
    ids = [c.run_id for c in plan.cells()]
    (res / f"interrupt_{ids[2]}").touch()
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(plan, runner=fake_runner)
    book = sweep.JobBook(tmp_path / "runs" / "sweeps" / plan.sweep_id, plan.sweep_id)
    assert {r["run_id"]: r["status"] for r in book.rows()} == {ids[0]: "done", ids[1]: "done", ids[2]: "interrupted"}
    (res / f"interrupt_{ids[2]}").unlink()
    before = _calls(res)
    outcome = sweep.run_sweep(plan, runner=fake_runner)
    assert outcome.skipped == ids[:2] and outcome.done == ids[2:]
    assert sorted(_calls(res)) == sorted(before + ids[2:])  # only the missing cells ran
    attempts = [r for r in book.rows() if r["run_id"] == ids[2]]
    assert [r["attempt"] for r in attempts] == ["1", "2"] and attempts[-1]["status"] == "done"


def test_failed_cells_are_reported_and_rerunnable(tmp_path):
    plan = _plan(tmp_path)
    res = tmp_path / "res"
    res.mkdir()
    ids = [c.run_id for c in plan.cells()]
    (res / f"fail_{ids[1]}").touch()
    outcome = sweep.run_sweep(plan, runner=fake_runner)
    assert not outcome.ok and [f.run_id for f in outcome.failed] == [ids[1]]
    assert "planted failure" in outcome.failed[0].error
    assert sorted(outcome.done) == sorted(ids[:1] + ids[2:])  # the sweep went on after the failure
    rows = sweep.JobBook(outcome.folder, plan.sweep_id).rows()
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "RuntimeError: planted failure" in failed[0]["error"]
    assert (outcome.folder / "errors" / f"{ids[1]}.1.txt").read_text().count("Traceback") == 1
    (res / f"fail_{ids[1]}").unlink()
    rerun = sweep.run_sweep(plan, runner=fake_runner)
    assert rerun.ok and rerun.done == [ids[1]]


def test_runner_that_writes_no_row_is_a_failure(tmp_path):
    outcome = sweep.run_sweep(_plan(tmp_path, folds="1", variants="full"), runner=silent_runner)
    assert len(outcome.failed) == 1 and "has no row" in outcome.failed[0].error


# ------------------------------------------------------------------------------------------------
# executors


def test_parallel_local_jobs(tmp_path):
    plan = _plan(tmp_path)
    res = tmp_path / "res"
    res.mkdir()
    (res / f"fail_{plan.cells()[3].run_id}").touch()
    outcome = sweep.run_sweep(plan, runner=fake_runner, jobs=2)
    assert len(outcome.done) == 3 and len(outcome.failed) == 1
    assert "planted failure" in outcome.failed[0].error
    pids = {p.name.split(".")[1] for p in (res / "calls").glob("*")}
    assert str(os.getpid()) not in pids  # cells ran in worker processes
    frame = results.load(res / results.RUNS_CSV)
    assert len(frame) == 3 and frame["run_id"].is_unique


@pytest.mark.parametrize("jobs", [1, 2], ids=["inline", "pool"])
@pytest.mark.parametrize("resume", [True, False])
def test_resume_flag_reaches_the_runner(tmp_path, jobs, resume):
    plan = _plan(tmp_path, folds="1")
    outcome = sweep.run_sweep(plan, runner=resume_runner, jobs=jobs, resume=resume)
    assert outcome.ok and len(outcome.done) == 2
    assert _resumes(tmp_path / "res") == {f".{resume}"}


def timed_runner(spec, progress=None, resume=True):
    """fake_runner that takes at least 0.4 s, measures its own run time, and records how many cells
    had finished when it started (``timed/<run_id>``: "<finished at start> <own seconds>")."""
    import time

    timed = Path(spec.results_dir) / "timed"
    timed.mkdir(parents=True, exist_ok=True)
    finished_before = len(list(timed.glob("*")))
    start = time.perf_counter()
    time.sleep(0.4)
    out = fake_runner(spec, progress, resume)
    own = time.perf_counter() - start
    (timed / spec.run_id).write_text(f"{finished_before} {own}")
    return out


def test_a_pool_starts_the_baseline_cells_first(tmp_path):
    plan = _plan(tmp_path, baselines=TOY_BASE)  # table order: 4 variant cells, then the baselines
    events = []
    outcome = sweep.run_sweep(plan, runner=fake_runner, jobs=2, progress=events.append)
    submitted = [e["run_id"] for e in events if e.get("kind") == "cell_start"]
    baselines = [c.run_id for c in plan.cells() if c.role == "baseline"]
    assert baselines and submitted[:len(baselines)] == baselines and len(outcome.done) == len(plan.cells())


def test_pooled_cells_record_their_own_run_time_not_the_queue(tmp_path):
    plan = _plan(tmp_path)  # 4 cells through 2 spawned workers: the last two wait for a free one
    events = []
    outcome = sweep.run_sweep(plan, runner=timed_runner, jobs=2, progress=events.append)
    assert len(outcome.done) == 4
    order = [(e["kind"], e["run_id"]) for e in events if e.get("kind") in ("cell_start", "cell_done")]
    # every cell is submitted (cell_start) before the first one is done: the later ones queue
    assert [kind for kind, _ in order] == ["cell_start"] * 4 + ["cell_done"] * 4, order
    timed = {p.name: p.read_text().split() for p in (tmp_path / "res" / "timed").iterdir()}
    # two workers: at most two cells start before any has finished, so at least two started only
    # after a whole other cell (>= 0.4 s) had run, and their time since submission includes that wait
    queued = [run_id for run_id, (finished_before, _) in timed.items() if int(finished_before) > 0]
    assert len(queued) >= 2, timed
    # every cell reports a time, and the worker's measurement never leaks into the result rows
    # (which seconds are reported is checked without a clock in the test below)
    done = {e["run_id"]: e["seconds"] for e in events if e.get("kind") == "cell_done"}
    assert set(done) == set(timed)
    frame = results.load(tmp_path / "res" / results.RUNS_CSV)
    assert "_cell_seconds" not in frame.columns


def test_a_finished_cell_records_the_seconds_the_worker_measured_not_the_time_since_submission(tmp_path):
    """A pooled or submitit cell's reported time is the one ``run_cell`` measured in the worker; the
    time since submission (here 1,000 s, as if the cell had queued that long) is only the fallback."""
    import time

    from ifdd_bench.sweep import executors, jobbook, pool

    plan = _plan(tmp_path)
    cell = plan.cells()[0]
    book = jobbook.JobBook(tmp_path / "sweep", plan.sweep_id)
    attempt = book.start(cell, "local")
    outcome = executors.SweepOutcome(plan.sweep_id, tmp_path / "sweep", 1)
    events = []
    returned, seconds = pool.pop_cell_seconds({"run_id": cell.run_id, pool.CELL_SECONDS: 1.53})
    assert returned == {"run_id": cell.run_id} and seconds == 1.53
    executors._finish(book, cell, attempt, time.perf_counter() - 1000.0, outcome, events.append, 0,
                      cell_seconds=seconds)
    assert events == [{"kind": "cell_done", "run_id": cell.run_id, "index": 0, "seconds": 1.5}]
    assert book.rows()[-1]["seconds"] == "1.5" and book.rows()[-1]["status"] == "done"
    fallback = []
    executors._finish(book, cell, book.start(cell, "local"), time.perf_counter() - 1000.0, outcome,
                      fallback.append, 0)
    assert fallback[0]["seconds"] >= 1000.0  # without the worker's measurement: time since submission


EPOCHS_BY_VARIANT = {"full": 1, "no_issm": 3}  # no_ladm: until both other cells have finished (see below)
#: safety cap on no_ladm's epochs (x 0.05 s, 2 min) for a pool whose other cells never finish; it stops
#: as soon as both have finished, so a slow worker start on a loaded machine only makes it wait longer
MAX_LAST_EPOCHS = 2400


def epoch_runner(spec, progress=None, resume=True):
    """fake_runner that imports torch, emits the engine's start/epoch_start events and records,
    per 'epoch', the torch thread count it trains with and how many other cells had finished
    (``threads/<variant>``: one "<threads>:<finished>" per epoch; ``finished/<variant>`` marks
    a cell whose runner has returned). ``no_ladm`` runs epochs until it is the only cell left."""
    import torch

    res = Path(spec.results_dir)
    finished = res / "finished"
    finished.mkdir(parents=True, exist_ok=True)
    progress({"kind": "start"})
    seen = []
    epochs = EPOCHS_BY_VARIANT.get(spec.variant, MAX_LAST_EPOCHS)
    for epoch in range(epochs):
        progress({"kind": "epoch_start", "epoch": epoch})
        seen.append(f"{torch.get_num_threads()}:{len(list(finished.glob('*')))}")
        if spec.variant == "no_ladm" and seen[-1].endswith(":2"):
            break
        time.sleep(0.05)
    threads = res / "threads"
    threads.mkdir(parents=True, exist_ok=True)
    (threads / spec.variant).write_text(" ".join(seen))
    out = fake_runner(spec, None, resume)
    (finished / spec.variant).touch()
    return out


def test_pool_keeps_each_cells_thread_count_and_relays_its_events(tmp_path, monkeypatch):
    """CPU kernels sum in an order that depends on the thread count, so a cell keeps its count from
    start to end: the last cell does not take the cores its finished partners leave."""
    monkeypatch.setattr(pool, "usable_cpus", lambda: 4)  # 2 workers x 2 threads, whatever the machine
    plan = _plan(tmp_path, variants="full,no_issm,no_ladm", folds="1")
    events = []
    outcome = sweep.run_sweep(plan, runner=epoch_runner, jobs=2, progress=events.append)
    assert len(outcome.done) == 3
    seen = {p.name: [tuple(map(int, e.split(":"))) for e in p.read_text().split()]
            for p in (tmp_path / "res" / "threads").iterdir()}
    # the last cell trained on after both others had finished, and still with 4 cores // 2 jobs
    assert seen["no_ladm"][-1][1] == 2, seen
    assert {t for cell in seen.values() for t, _ in cell} == {2}, seen
    # the workers' epoch events reached the parent's progress callback, tagged with their cell
    for cell in plan.cells():
        epochs = [e["data"]["epoch"] for e in events
                  if e.get("kind") == "run" and e["run_id"] == cell.run_id and e["data"]["kind"] == "epoch_start"]
        assert epochs == list(range(len(seen[cell.spec.variant]))), (cell.run_id, epochs)


def test_pool_threads_depend_on_jobs_only(monkeypatch):
    monkeypatch.setattr(pool, "usable_cpus", lambda: 5)
    for jobs, cells, threads in [(2, 8, 2), (2, 1, 2), (8, 3, 1), (1, 4, 5)]:
        cell_pool = pool.CellPool(jobs, cells)
        try:
            assert (cell_pool.threads, cell_pool.workers) == (threads, min(jobs, cells))
        finally:
            cell_pool.shutdown()


def test_submitit_local_executor(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    # the submitit job process unpickles fake_runner by module name: make this folder importable
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    plan = _plan(tmp_path, folds="1")
    res = tmp_path / "res"
    res.mkdir()
    ids = [c.run_id for c in plan.cells()]
    (res / f"fail_{ids[1]}").touch()
    outcome = sweep.run_sweep(plan, executor="submitit", jobs=2, runner=fake_runner,
                              submitit_options={"cluster": "local", "timeout_min": 5})
    assert outcome.done == [ids[0]]
    assert [f.run_id for f in outcome.failed] == [ids[1]] and "planted failure" in outcome.failed[0].error
    rows = sweep.JobBook(outcome.folder, plan.sweep_id).rows()
    assert all(r["executor"] == "submitit-local" and r["job_id"].isdigit() for r in rows)
    assert {r["status"] for r in rows} == {"done", "failed"}
    # the failed cell is re-runnable: only it is submitted again, here from scratch (resume=False)
    (res / f"fail_{ids[1]}").unlink()
    rerun = sweep.run_sweep(plan, executor="submitit", runner=resume_runner, resume=False,
                            submitit_options={"cluster": "local", "timeout_min": 5})
    assert rerun.ok and rerun.done == [ids[1]] and rerun.skipped == [ids[0]]
    assert [p.name for p in (res / "resume").glob("*")] == [f"{ids[1]}.False"]


# ------------------------------------------------------------------------------------------------
# concurrent writers never corrupt runs.csv


def _writer(path: str, worker: int, count: int) -> None:
    for i in range(count):
        results.append_rows(path, [{"run_id": f"w{worker}-{i}", "uar": 0.5, "note": "x" * 200}])


def test_concurrent_writers_keep_every_row(tmp_path):
    path = str(tmp_path / "runs.csv")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 60 and len({r["run_id"] for r in rows}) == 60
    assert all(r["note"] == "x" * 200 for r in rows)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------
# end to end with the real engine (one tiny cell on SynthDFER smoke clips)


def test_end_to_end_with_the_engine(tmp_path):
    pytest.importorskip("torch")
    plan = sweep.plan_sweep("ifdd_tiny", "full", folds="1", seeds="0", epochs=1,
                            overrides=["data.synth_preset=smoke", "data.size=32", "batch_size=16"],
                            runs_dir=tmp_path / "runs", results_dir=tmp_path / "res")
    (cell,) = plan.cells()
    events = []
    outcome = sweep.run_sweep(plan, progress=events.append)
    assert outcome.ok and outcome.done == [cell.run_id], outcome.failed
    assert any(e["kind"] == "run" and e["data"].get("kind") == "epoch_end" for e in events)
    frame = results.load(tmp_path / "res" / results.RUNS_CSV)
    row = frame.iloc[0]
    # the engine's row carries the same protocol hash the sweep computes: that is what skipping relies on
    assert row["run_id"] == cell.run_id and row["train_hash"] == cell.train_hash
    assert (row["frames"], row["size"], row["epochs"]) == (16, 32, 1)
    # the default sweep probes each trained cell: one probes.csv row per perturbation, of the selected checkpoint
    probes = tmp_path / "res" / results.PROBES_CSV
    rows = results.read_csv_rows(probes)
    assert [r["perturbation"] for r in rows] == list(plan.probes) and len(plan.probes) == 5
    assert {r["run_id"] for r in rows} == {cell.run_id} and float(rows[0]["clean_uar"]) == pytest.approx(row["uar"])
    assert not (tmp_path / "res" / results.EVALS_CSV).exists()  # runs.csv has the clean numbers
    text = probes.read_text()
    assert sweep.run_sweep(plan).skipped == [cell.run_id]
    assert probes.read_text() == text  # a finished sweep runs nothing, probes included
    # a finished cell whose probe rows are missing runs again only to be probed, not trained
    probes.write_text(text.splitlines()[0] + "\n" + "\n".join(text.splitlines()[1:3]) + "\n")  # shuffle, reverse
    runs_text = (tmp_path / "res" / results.RUNS_CSV).read_text()
    status = sweep.sweep_status(plan)
    assert status.todo == status.to_probe == [cell]
    probed = sweep.run_sweep(plan)
    assert probed.ok and probed.probe_only == [cell.run_id] and probed.done == [cell.run_id]
    assert (tmp_path / "res" / results.RUNS_CSV).read_text() == runs_text  # not retrained
    assert [r["perturbation"] for r in results.read_csv_rows(probes)] == list(plan.probes)  # only the missing ones
    (summary,) = sweep.summarize(plan)
    assert summary["variant"] == "full" and 0.0 <= summary["uar_mean"] <= 1.0
    assert summary["n"] == 1 and summary["uar_std"] != summary["uar_std"]  # one run: no std (nan), as the report


def test_cli_refuses_jobs_below_one_before_planning():
    from click.testing import CliRunner

    import cli

    result = CliRunner().invoke(cli.main, ["run", "ablation", "--jobs", "0", "--dry-run"])
    assert result.exit_code == 2
    assert "--jobs" in result.output and "x>=1" in result.output


@pytest.mark.parametrize("flag, resume", [([], True), (["--restart"], False)])
def test_cli_restart_trains_unfinished_cells_from_scratch(tmp_path, monkeypatch, flag, resume):
    from click.testing import CliRunner

    import cli

    seen = {}

    def run_sweep(plan, **kwargs):
        seen.update(kwargs)
        return sweep.SweepOutcome(plan.sweep_id, tmp_path, len(plan.cells()))

    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    result = CliRunner().invoke(cli.main, ["run", "ablation", "--model", TOY, "--variants", "full", "--no-report",
                                           "--runs-dir", str(tmp_path / "runs"), "--results-dir",
                                           str(tmp_path / "res"), *flag])
    assert result.exit_code == 0, result.output
    assert seen["resume"] is resume and "runner" not in seen


def test_cli_probes_options_reach_the_plan(tmp_path):
    from click.testing import CliRunner

    import cli

    args = ["run", "ablation", "--model", TOY, "--variants", "full", "--dry-run", "--runs-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "res")]
    on = CliRunner().invoke(cli.main, args)
    assert on.exit_code == 0 and "probes after training: shuffle,reverse,single,freeze-apex,half-rate" in on.output
    off = CliRunner().invoke(cli.main, args + ["--no-probes"])
    assert off.exit_code == 0 and "probes after training" not in off.output
    some = CliRunner().invoke(cli.main, args + ["--perturb", "single,shuffle"])
    assert "probes after training: shuffle,single" in some.output
    bad = CliRunner().invoke(cli.main, args + ["--perturb", "shufle"])
    assert bad.exit_code == 2 and "did you mean: shuffle" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "runs").exists()


def test_cli_progress_shows_one_line_per_training_cell():
    import io

    from rich.console import Console
    from rich.progress import Progress

    from ifdd_bench.console import sweep_progress

    with Progress(console=Console(file=io.StringIO())) as progress:
        on_event = sweep_progress(progress, total=3)
        on_event({"kind": "cell_start", "run_id": "a", "index": 0, "todo": 3})
        on_event({"kind": "cell_start", "run_id": "b", "index": 1, "todo": 3})  # queued cells show nothing yet
        assert len(progress.tasks) == 1
        on_event({"kind": "run", "run_id": "a", "data": {"kind": "epoch_start", "epoch": 0, "epochs": 5, "steps": 68}})
        on_event({"kind": "run", "run_id": "b", "data": {"kind": "step", "epoch": 1, "step": 9, "steps": 68,
                                                           "loss": 1.5}})
        lines = {t.description.split()[0]: t for t in progress.tasks[1:]}
        assert lines["a"].description == "a epoch 1/5" and lines["b"].completed == 10
        on_event({"kind": "cell_done", "run_id": "a", "index": 0, "seconds": 3.0})
        on_event({"kind": "run", "run_id": "a", "data": {"kind": "epoch_end", "epoch": 4}})  # relayed late
        assert [t.description.split()[0] for t in progress.tasks[1:]] == ["b"]
        assert progress.tasks[0].completed == 1


def test_damaged_runs_csv_is_a_clear_error_naming_the_file(tmp_path):
    """A runs.csv that is not text, or a finished cell's row whose uar is not a number, ends in one
    message naming the file (and the run), exit code 2, not a traceback; nothing is rewritten."""
    from click.testing import CliRunner

    import cli

    res = tmp_path / "res"
    res.mkdir()
    (res / "runs.csv").write_bytes(b"run_id,uar\n\xff\xfe\x00bad\n")
    before = (res / "runs.csv").read_bytes()
    out = CliRunner().invoke(cli.main, ["run", "ablation", "--model", TOY, "--dry-run", "--results-dir", str(res),
                                        "--runs-dir", str(tmp_path / "runs")])
    text = "".join(out.output.split())  # rich may wrap anywhere in a long path: compare without spaces
    assert out.exit_code == 2 and "runs.csvisnotareadableCSVfile" in text and "Traceback" not in text
    assert (res / "runs.csv").read_bytes() == before
    plan = _plan(tmp_path, variants="full", folds="1")
    cell = plan.cells()[0]
    results.append_rows(res / "runs.csv.new", [{"run_id": cell.run_id, "train_hash": cell.train_hash,
                                                 "model": TOY, "variant": "full", "uar": "abc", "war": "0.5"}])
    (res / "runs.csv.new").replace(res / "runs.csv")
    with pytest.raises(DataError, match=rf"the row of {cell.run_id} has uar='abc', not a number"):
        sweep.summarize(plan)


def test_the_default_ablation_trains_the_static_control_beside_the_variants():
    from ifdd_bench.sweep.plan import DEFAULT_SYNTH_BASELINES, plan_sweep

    plan = plan_sweep()
    assert DEFAULT_SYNTH_BASELINES == ("static_control",)
    assert plan.baselines == (("static_control", "full"),)
    assert [c.role for c in plan.cells()].count("baseline") == 1
    assert plan_sweep(baselines="none").baselines == ()
    assert plan_sweep(model="ifdd_tiny").baselines == ()  # another model: only what is asked for
