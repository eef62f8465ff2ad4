"""`ifdd-bench eval` and `runs migrate`: a trained run scored on other folds, splits and views,
bad requests refused before anything is written, and older run folders renamed in place."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import test_engine_fixtures as fx
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew, write_mafw
from ifdd_bench.engine.checkpoint import load_checkpoint, save_atomic


def _cli(*args):
    from cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    result.text = " ".join(result.output.split())
    return result


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A unified run of the test model on a two-fold DFEW-layout folder (fold 1 trained)."""
    base = tmp_path_factory.mktemp("eval")
    root = base / "dfew"
    write_dfew(root, balanced_dfew_rows(3, frames=6), test=balanced_dfew_rows(1, frames=6, start=100), size=16)
    write_dfew(root, balanced_dfew_rows(3, frames=6, start=100), fold=2, test=balanced_dfew_rows(2, frames=6),
               size=16)
    runs, results = base / "runs", base / "results"
    out = _cli("run", "train", "--model", fx.TEST_MODEL, "--dataset", "dfew", "--data-root", root, "--epochs", 2,
               "-s", "frames=4", "-s", "data.size=8", "-s", "batch_size=7", "-s", "device=cpu",
               "--runs-dir", runs, "--results-dir", results)
    assert out.exit_code == 0, out.output
    (run_dir,) = runs.iterdir()
    return {"root": root, "runs": runs, "results": results, "run_dir": run_dir, "base": base}


def test_eval_on_its_own_test_split_reproduces_the_engine(trained, tmp_path):
    out = _cli("eval", trained["run_dir"], "--results-dir", tmp_path, "--json")
    assert out.exit_code == 0, out.output
    row = json.loads(out.output)
    trained_row = _rows(trained["results"] / "runs.csv")[0]
    assert row["kind"] == "eval" and row["run_id"] == trained_row["run_id"] == trained["run_dir"].name
    assert row["uar"] == pytest.approx(float(trained_row["uar"]), abs=1e-12)
    assert row["war"] == pytest.approx(float(trained_row["war"]), abs=1e-12)
    engine = _rows(trained["run_dir"] / "predictions.csv")
    mine = _rows(trained["run_dir"] / "evals" / row["eval_id"] / "predictions.csv")
    assert [(r["clip_id"], r["pred"]) for r in mine] == [(r["clip_id"], r["pred"]) for r in engine]
    assert [r["kind"] for r in _rows(tmp_path / "evals.csv")] == ["eval"]


def test_eval_on_another_fold_split_and_view_count(trained, tmp_path):
    out = _cli("eval", trained["run_dir"], "--fold", 2, "--views", 2, "--results-dir", tmp_path, "--json")
    assert out.exit_code == 0, out.output
    row = json.loads(out.output)
    assert (row["fold"], row["views"], row["split"], row["clips"], row["trained_fold"]) == (2, 2, "test", 14, 1)
    metrics = json.loads((trained["run_dir"] / "evals" / row["eval_id"] / "metrics.json").read_text())
    assert metrics["data_config"]["eval_views"] == 2 and len(metrics["confusion"]) == 7
    val = _cli("eval", trained["run_dir"], "--split", "val", "--results-dir", tmp_path, "--json")
    assert val.exit_code == 0, val.output
    trained_row = _rows(trained["results"] / "runs.csv")[0]
    assert json.loads(val.output)["clips"] == int(trained_row["val_clips"])
    assert len(_rows(tmp_path / "evals.csv")) == 2
    table = _cli("eval", trained["run_dir"], "--results-dir", tmp_path)
    assert table.exit_code == 0 and "per-class recall" in table.text and "UAR" in table.text


def _legacy_copy(run_dir: Path, dest: Path) -> Path:
    """A copy of a run folder as the older scheme wrote it: no scheme, no hash in the run id."""
    old_id = run_dir.name.rsplit("-", 1)[0]
    legacy = dest / old_id
    shutil.copytree(run_dir, legacy, ignore=shutil.ignore_patterns("evals"))
    config = json.loads((legacy / "config.json").read_text())
    config.pop("run_id_scheme"), config.pop("model_overrides")
    config["run_id"] = old_id
    (legacy / "config.json").write_text(json.dumps(config))
    result = json.loads((legacy / "result.json").read_text())
    result["row"]["run_id"] = old_id
    for row in result["per_class"]:
        row["run_id"] = old_id
    (legacy / "result.json").write_text(json.dumps(result))
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(legacy / name)
        ckpt.pop("run_id_scheme")
        ckpt["run_id"] = old_id
        save_atomic(ckpt, legacy / name)
    return legacy


@pytest.mark.parametrize("args, message", [
    (["--split", "train"], "'train' is not one of"),
    (["--views", "0"], "--views must be >= 1"),
    (["-s", "data.frames=6"], "takes 4 frames"),
    (["-s", "data.size=12"], "takes 8x8 pixels"),
    (["--fold", "3"], "set_3"),
    (["-s", "data.nope=1"], "unknown data config key"),
    (["--data-root", "/nonexistent/dfew-copy"], "/nonexistent/dfew-copy"),  # another copy of the run's dataset
])
def test_bad_eval_requests_exit_clearly_and_write_nothing(trained, tmp_path, args, message):
    before = sorted(p.name for p in (trained["run_dir"] / "evals").glob("*")) if (
        trained["run_dir"] / "evals").exists() else []
    out = _cli("eval", trained["run_dir"], *args, "--results-dir", tmp_path)
    assert out.exit_code == 2, out.output
    assert message in out.text and "Traceback" not in out.text
    assert not (tmp_path / "evals.csv").exists()
    after = sorted(p.name for p in (trained["run_dir"] / "evals").glob("*")) if (
        trained["run_dir"] / "evals").exists() else []
    assert after == before


def test_eval_refuses_other_classes_reference_val_and_older_run_folders(trained, tmp_path):
    mafw = write_mafw(tmp_path / "mafw", [("happy", 6), ("sad", 6)], [("anger", 6), ("happy", 6)])
    out = _cli("eval", trained["run_dir"], "--dataset", "mafw", "--data-root", mafw, "-s", "data.frames=4",
               "--results-dir", tmp_path)
    assert out.exit_code == 2 and "predicts 7 classes" in out.text and "mafw fold 1 has 11" in out.text
    legacy = _legacy_copy(trained["run_dir"], tmp_path / "old_runs")
    out = _cli("eval", legacy, "--results-dir", tmp_path)
    assert out.exit_code == 2 and "older identity scheme" in out.text and "runs migrate" in out.text
    ckpt = load_checkpoint(trained["run_dir"] / "best.pt")
    ckpt["protocol"] = "reference"
    save_atomic(ckpt, tmp_path / "reference.pt")
    out = _cli("eval", tmp_path / "reference.pt", "--split", "val", "--results-dir", tmp_path)
    assert out.exit_code == 2 and "no validation split" in out.text
    assert not (tmp_path / "evals.csv").exists()


def test_runs_migrate_renames_older_folders_and_rows_so_the_run_is_found_again(trained, tmp_path):
    from ifdd_bench.engine.run import train_run
    from ifdd_bench.spec import build_run_spec

    runs, results = tmp_path / "runs", tmp_path / "results"
    legacy = _legacy_copy(trained["run_dir"], runs)
    results.mkdir()
    for name in ("runs.csv", "per_class.csv"):
        text = (trained["results"] / name).read_text().replace(trained["run_dir"].name, legacy.name)
        (results / name).write_text(text)
    dry = _cli("runs", "migrate", "--runs-dir", runs, "--results-dir", results, "--dry-run")
    assert dry.exit_code == 0 and "would rename" in dry.text and legacy.exists()
    out = _cli("runs", "migrate", "--runs-dir", runs, "--results-dir", results)
    assert out.exit_code == 0, out.output
    assert f"renamed {legacy.name} -> {trained['run_dir'].name}" in out.text
    assert sorted(p.name for p in runs.iterdir()) == [trained["run_dir"].name]
    assert {r["run_id"] for r in _rows(results / "runs.csv")} == {trained["run_dir"].name}
    assert {r["run_id"] for r in _rows(results / "per_class.csv")} == {trained["run_dir"].name}
    assert load_checkpoint(runs / trained["run_dir"].name / "best.pt")["run_id"] == trained["run_dir"].name
    spec = build_run_spec(fx.TEST_MODEL, dataset="dfew", data_root=trained["root"], epochs=2,
                          overrides=("frames=4", "data.size=8", "batch_size=7", "device=cpu"),
                          runs_dir=runs, results_dir=results)
    (runs / spec.run_id / "done").write_text("x\n")
    events: list[dict] = []
    train_run(spec, progress=events.append)
    assert events[-1]["kind"] == "done" and events[-1]["cached"]  # found, not retrained
    again = _cli("runs", "migrate", "--runs-dir", runs, "--results-dir", results)
    assert "0 folder(s)" in again.text


def test_runs_migrate_lists_what_it_cannot_rename_and_retries_after_a_failure(trained, tmp_path):
    """A damaged checkpoint stops that folder's migration before its config.json is touched, so a
    second run retries it; a folder that is no run record is listed, not passed over; a missing
    --runs-dir is an error, not '0 folder(s)'."""
    from ifdd_bench.engine.migrate import is_legacy

    runs, results = tmp_path / "runs", tmp_path / "results"
    legacy = _legacy_copy(trained["run_dir"], runs)
    (legacy / "last.pt").write_text("not a checkpoint")
    broken = runs / "broken-run"
    broken.mkdir()
    (broken / "config.json").write_text("[1, 2]")
    out = _cli("runs", "migrate", "--runs-dir", runs, "--results-dir", results)
    assert out.exit_code == 0, out.output
    assert "broken-run: not a readable run record" in out.text and "re-run to retry" in out.text
    assert legacy.exists() and is_legacy(legacy)  # untouched: still found as older-scheme
    (legacy / "last.pt").unlink()
    again = _cli("runs", "migrate", "--runs-dir", runs, "--results-dir", results)
    assert f"renamed {legacy.name} -> {trained['run_dir'].name}" in again.text and not legacy.exists()
    missing = _cli("runs", "migrate", "--runs-dir", tmp_path / "nope")
    assert missing.exit_code == 2 and "is not a folder" in missing.text


# ------------------------------------------------------------------------------------------------
# eval --perturb: the temporal-reliance probes


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_probe_rows_carry_the_clean_uar_that_eval_reports(trained, tmp_path):
    plain = _cli("eval", trained["run_dir"], "--results-dir", tmp_path / "plain", "--json")
    assert plain.exit_code == 0, plain.output
    out = _cli("eval", trained["run_dir"], "--perturb", "half-rate,shuffle,reverse,single", "--results-dir",
               tmp_path / "probed", "--json")
    assert out.exit_code == 0, out.output
    result, row = json.loads(out.output), json.loads(plain.output)
    rows = _rows(tmp_path / "probed" / "probes.csv")
    assert [r["perturbation"] for r in rows] == ["shuffle", "reverse", "single", "half-rate"]  # table order
    assert [r["perturbation"] for r in result["probes"]] == [r["perturbation"] for r in rows]
    for r in rows:
        assert float(r["clean_uar"]) == pytest.approx(row["uar"], abs=1e-12)
        assert float(r["clean_war"]) == pytest.approx(row["war"], abs=1e-12)
        assert (r["run_id"], r["eval_id"], int(r["clips"]), r["split"]) == (row["run_id"], row["eval_id"], row["clips"],
                                                                            "test")
        assert float(r["delta_uar"]) == pytest.approx(float(r["uar"]) - float(r["clean_uar"]))
        assert float(r["delta_uar_low"]) <= float(r["delta_uar"]) <= float(r["delta_uar_high"])
    assert result["uar"] == pytest.approx(row["uar"], abs=1e-12)  # the probed eval's own row: the same clean score
    assert [r["kind"] for r in _rows(tmp_path / "probed" / "evals.csv")] == ["eval"]
    folder = trained["run_dir"] / "evals" / row["eval_id"]
    clips = _rows(folder / "probe_predictions.csv")
    assert len(clips) == row["clips"] and {"pred_clean", "pred_shuffle", "pred_half-rate"} <= set(clips[0])
    assert [c["pred_clean"] for c in clips] == [p["pred"] for p in _rows(folder / "predictions.csv")]
    again = _cli("eval", trained["run_dir"], "--perturb", "shuffle", "--results-dir", tmp_path / "again", "--json")
    assert json.loads(again.output)["probes"][0]["uar"] == result["probes"][0]["uar"]  # seeded: same shuffles


def _one_frame_checkpoint(run_dir: Path, dest: Path) -> Path:
    """The trained run as a model of one frame (the test net is shape-agnostic): nothing to perturb."""
    ckpt = load_checkpoint(run_dir / "best.pt")
    ckpt["model_config"]["frames"] = 1
    ckpt["data_config"]["frames"] = 1
    dest.mkdir(parents=True)
    save_atomic(ckpt, dest / "best.pt")
    return dest


@pytest.mark.parametrize("case, message", [
    ("unknown", "unknownperturbation'shufle'(didyoumean:shuffle"),
    ("no-apex", "--perturbfreeze-apexneedstheapexframeofeveryclip,whichonlySynthDFERrecords"),
    ("one-frame", "aperturbationoftheframeorderneedsatleast2"),
    ("older-scheme", "olderidentityscheme"),
])
def test_bad_probe_requests_exit_clearly_and_write_nothing(trained, tmp_path, case, message):
    source, args = trained["run_dir"], ["--perturb", "shuffle,freeze-apex" if case == "no-apex" else "half-rate"]
    if case == "unknown":
        args = ["--perturb", "shufle,reverse"]
    elif case == "one-frame":
        source = _one_frame_checkpoint(trained["run_dir"], tmp_path / "one-frame")
    elif case == "older-scheme":
        source = _legacy_copy(trained["run_dir"], tmp_path / "old_runs")
    before = _listing(source)
    out = _cli("eval", source, *args, "--results-dir", tmp_path / "res")
    assert out.exit_code == 2, out.output
    assert message in out.text.replace(" ", "") and "Traceback" not in out.text
    assert not (tmp_path / "res").exists() and _listing(source) == before


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    """A one-epoch run of the test model on the SynthDFER smoke preset (whose clips.csv knows every apex)."""
    base = tmp_path_factory.mktemp("synth")
    out = _cli("run", "train", "--model", fx.TEST_MODEL, "--dataset", "synth", "--epochs", 1,
               "-s", "data.synth_preset=smoke", "-s", "frames=4", "-s", "data.size=8", "-s", "batch_size=16",
               "-s", "device=cpu", "--runs-dir", base / "runs", "--results-dir", base / "results")
    assert out.exit_code == 0, out.output
    (run_dir,) = (base / "runs").iterdir()
    return run_dir


def test_freeze_apex_on_synthdfer_freezes_the_sampled_frame_nearest_the_apex(synth_run, tmp_path):
    from ifdd_bench.data import build_datasets
    from ifdd_bench.data.synth import load_truth
    from ifdd_bench.engine.capture import source_frames
    from ifdd_bench.engine.evaluate import eval_data_config
    from ifdd_bench.engine.probes import apex_positions

    out = _cli("eval", synth_run, "--perturb", "all", "--views", 2, "--results-dir", tmp_path, "--json")
    assert out.exit_code == 0, out.output
    assert [r["perturbation"] for r in _rows(tmp_path / "probes.csv")] == [
        "shuffle", "reverse", "single", "freeze-apex", "half-rate"]
    ckpt = load_checkpoint(synth_run / "best.pt")
    data = eval_data_config(ckpt, views=2)
    bundle = build_datasets(data, seed=0, protocol="unified", run_dir=synth_run)
    test, truth = bundle.test, load_truth(bundle.info["root"])
    positions = apex_positions(["freeze-apex"], data, test, lambda: truth)
    assert len(positions) == len(test.records)
    for i, record in enumerate(test.records):
        apex = truth[record.clip_id].apex
        for view, position in zip(test.frame_indices(i, source_frames(record)), positions[i].tolist()):
            distance = [abs(f - apex) for f in view]
            assert distance[position] == min(distance) and distance.index(min(distance)) == position
