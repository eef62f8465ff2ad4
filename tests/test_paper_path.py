"""A rehearsal of the path DFER researchers take: the official DFEW layout, the paper-size IFDD,
the reference protocol, then `report` on the rows. One short epoch on two clips (about a minute
on two cores): what is checked is that the recipe that trains is the paper's, not the accuracy."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from ifdd_bench.data.fixtures import write_dfew


def _cli(*args):
    from cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    result.text = " ".join(result.output.split())
    return result


@pytest.mark.slow
def test_reference_ablation_of_paper_ifdd_on_a_dfew_layout(tmp_path):
    root = write_dfew(tmp_path / "DFEW", [(1, 1, 20), (2, 2, 12)], test=[(3, 1, 18), (4, 3, 16)], size=32)
    runs, results = tmp_path / "runs", tmp_path / "results"
    out = _cli("run", "ablation", "--model", "ifdd", "--dataset", "dfew", "--data-root", root,
               "--protocol", "reference", "--variants", "full", "--folds", "1", "--epochs", 1,
               "-s", "batch_size=2", "-s", "eval_batch_size=2", "-s", "device=cpu",
               "--runs-dir", runs, "--results-dir", results)
    assert out.exit_code == 0, out.output
    assert "16x224²" in out.text and "reference protocol" in out.text

    (run_dir,) = runs.glob("ifdd-full-dfew-f1-s0-reference-*")
    config = json.loads((run_dir / "config.json").read_text())
    data, train, model = config["data_config"], config["train_config"], config["model_config"]
    # paper geometry, as `run train --model ifdd` would train it
    assert (data["frames"], data["size"], model["frames"], model["img_size"]) == (16, 224, 16, 224)
    # the reference data recipe: consecutive frames, the reference augmentation, centre eval window
    assert (data["sampling"], data["train_aug"], data["eval_sampling"], data["segments"]) == (
        "consecutive", "reference", "center", 16)
    # the reference training recipe: its schedule, mixup, selection on test WAR, warm-up clamped
    assert (train["schedule"], train["mixup"], train["selection"], train["warmup_epochs"]) == (
        "reference", True, "test_war", 0)
    assert config["run_id_scheme"] == 2 and run_dir.name == config["run_id"]

    with (results / "runs.csv").open(newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["run_id"] == run_dir.name and (row["frames"], row["size"]) == ("16", "224")
    assert (row["train_clips"], row["val_clips"], row["test_clips"]) == ("2", "0", "2")

    report = _cli("report", "--results-dir", results, "--runs-dir", runs, "--no-plots")
    assert report.exit_code == 0, report.output
    text = (results / "report" / "report.md").read_text()
    assert "reference" in text and "ifdd" in text
