"""Every entry against the controls without a temporal module (static control, GAP head): the
statistics, the table and the README sentence."""
from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

from ifdd_bench.reports import markup, readme, stats, tables
from ifdd_bench.reports.render import render_report

SEEDS = (0, 1, 2, 3, 4)
# UAR per seed; `baseline` sits 6-7 points above the static control in every seed, `full` wobbles around it
UAR = {
    ("ifdd_tiny", "full"): (0.30, 0.20, 0.28, 0.18, 0.25),
    ("ifdd_tiny", "baseline"): (0.28, 0.27, 0.29, 0.26, 0.28),
    ("ifdd_tiny", "gap"): (0.20, 0.19, 0.21, 0.18, 0.20),
    ("static_control", "full"): (0.22, 0.20, 0.23, 0.19, 0.22),
    ("c3d_tiny", "full"): (0.21, 0.22, 0.20, 0.23, 0.19),
}


def _runs(uar=UAR, models_renamed: dict[str, str] | None = None) -> pd.DataFrame:
    rows = []
    for (model, variant), values in uar.items():
        model = (models_renamed or {}).get(model, model)
        for seed, value in zip(SEEDS, values):
            rows.append(dict(run_id=f"{model}-{variant}-synth-f1-s{seed}-unified", model=model, variant=variant,
                             dataset="synth", fold=1, seed=seed, protocol="unified", train_hash="a1b2c3d4",
                             epochs=15, selected_epoch=5, uar=value, war=value, params=1000, frames=16, size=64,
                             num_classes=7, views=1))
    return pd.DataFrame(rows)


def test_control_differences_by_hand():
    diffs = stats.control_differences(_runs(), metrics=("uar",))
    compared = set(zip(diffs["reference"], diffs["model"], diffs["variant"]))
    # the two controls are never compared with each other
    assert compared == {(c, m, v) for c in ("static_control", "gap")
                        for m, v in [("ifdd_tiny", "full"), ("ifdd_tiny", "baseline"), ("c3d_tiny", "full")]}
    row = diffs[(diffs["reference"] == "static_control") & (diffs["variant"] == "baseline")].iloc[0]
    by_hand = np.subtract(UAR["ifdd_tiny", "baseline"], UAR["static_control", "full"])
    half = 2.7764451 * statistics.stdev(by_hand) / np.sqrt(5)  # t(4) 97.5 % quantile
    assert row["n"] == 5 and row["mean_diff"] == pytest.approx(by_hand.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((by_hand.mean() - half, by_hand.mean() + half), abs=1e-6)
    assert row["ci_low"] > 0  # clearly above
    # Holm: one family per control, over the three entries left after dropping the other control
    assert set(diffs["holm_family_size"]) == {3}
    gap_full = diffs[(diffs["reference"] == "gap") & (diffs["variant"] == "full") & (diffs["model"] == "ifdd_tiny")]
    assert gap_full["reference_model"].item() == "ifdd_tiny"
    assert gap_full["mean_diff"].item() == pytest.approx(np.mean(np.subtract(UAR["ifdd_tiny", "full"],
                                                                             UAR["ifdd_tiny", "gap"])))


def test_no_control_gives_an_empty_frame():
    runs = _runs({k: v for k, v in UAR.items() if k[0] != "static_control" and k[1] != "gap"})
    assert stats.control_differences(runs).empty


def test_table_bolds_intervals_that_exclude_zero_and_pairs_gap_with_its_own_model():
    runs = pd.concat([_runs(), _runs({k: v for k, v in UAR.items() if k[0] == "ifdd_tiny"},
                                     models_renamed={"ifdd_tiny": "ifdd_tiny_pretext"})], ignore_index=True)
    # the second model's GAP head is far below its `full`: its row must show that, not ifdd_tiny's gap
    runs.loc[(runs["model"] == "ifdd_tiny_pretext") & (runs["variant"] == "gap"), "uar"] -= 0.10
    runs = runs[~((runs["model"] == "c3d_tiny") & (runs["seed"] == 4))]  # one run missing: 4 pairs
    table = tables.controls_table(stats.control_differences(runs))
    md = markup.to_markdown(table)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    baseline = rows["Baseline (lazy split) [ifdd_tiny]"]
    assert "**+6.40 [" in baseline  # interval above 0 against the static control: bold
    assert "+8.00 [" in baseline and "**+8.00" in baseline  # against its own GAP head
    assert "+18.00 [" in rows["Baseline (lazy split) [ifdd_tiny_pretext]"]  # its own, lower GAP head
    full = rows["IFDD (full) [ifdd_tiny]"]
    assert "**" not in full.split("|")[3]  # +0.6 with an interval across 0: not bold
    assert "vs static_control:" in md and "vs GAP head:" in md
    c3d = [cell.strip() for cell in rows["c3d_tiny"].strip("|").split("|")]
    assert c3d[1].endswith("(n=4)") and "(n=" not in baseline
    assert c3d[3:] == ["", ""]  # a baseline has no GAP head of its own when two IFDD models have one
    tex = markup.to_latex(table)
    assert r"\multicolumn{2}{c}{vs static\_control:}" in tex and r"\textbf{+6.40" in tex


def test_an_entry_without_a_run_in_common_with_a_control_gets_an_empty_cell():
    runs = _runs()
    runs.loc[runs["model"] == "static_control", "seed"] += 10  # the control ran other seeds
    diffs = stats.control_differences(runs)
    assert (diffs.loc[diffs["reference"] == "static_control", "n"] == 0).all()
    md = markup.to_markdown(tables.controls_table(diffs))
    assert "nan" not in md.lower()
    baseline = next(line for line in md.splitlines() if line.startswith("| Baseline (lazy split)"))
    cells = [cell.strip() for cell in baseline.strip("|").split("|")]
    assert cells[1:3] == ["", ""] and cells[3].startswith("**+8.00 [")  # the GAP head still pairs


def test_render_and_readme_say_which_entries_are_clearly_above(tmp_path):
    runs = _runs()
    runs.to_csv(tmp_path / "runs.csv", index=False)
    result = render_report(tmp_path, tmp_path / "no-runs", tmp_path / "out", formats="md", plots=False)
    assert "controls" in result.tables
    written = pd.read_csv(tmp_path / "out" / "control_differences.csv")
    assert set(written["reference"]) == {"static_control", "gap"}
    text = readme.headline_markdown(result, model="ifdd_tiny", variants=("full", "baseline", "gap"),
                                    dataset="synth", folds=(1,), seeds=SEEDS, baselines=("static_control",))
    assert "**Against the controls.**" in text
    assert "Clearly above static_control: 1 of 2, Baseline (lazy split) (+6.40 [" in text
    assert "Clearly above GAP head: 1 of 2, Baseline (lazy split) (+8.00 [" in text

    # the static control's runs 8 points higher: nothing is clearly above it any more
    runs.loc[runs["model"] == "static_control", "uar"] += 0.08
    runs.to_csv(tmp_path / "runs.csv", index=False)
    result = render_report(tmp_path, tmp_path / "no-runs", tmp_path / "out2", formats="md", plots=False)
    text = readme.headline_markdown(result, model="ifdd_tiny", variants=("full", "baseline", "gap"),
                                    dataset="synth", folds=(1,), seeds=SEEDS, baselines=("static_control",))
    assert "Clearly above static_control: none of 2 (largest difference Baseline (lazy split), −1.60 [" in text


def test_render_without_controls_says_why(tmp_path):
    _runs({k: v for k, v in UAR.items() if k[0] != "static_control" and k[1] != "gap"}).to_csv(
        tmp_path / "runs.csv", index=False)
    result = render_report(tmp_path, tmp_path / "no-runs", tmp_path / "out", formats="md", plots=False)
    assert "controls" not in result.tables
    assert any(s.startswith("controls table: no run of a control") for s in result.skipped)
    assert not (tmp_path / "out" / "control_differences.csv").exists()
