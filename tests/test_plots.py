"""Figures of ``ifdd-bench report`` are written (PNG + PDF) for the fixture CSVs."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ifdd_bench.reports import plots
from ifdd_bench.reports.render import render_report

FIXTURES = Path(__file__).parent / "fixtures"
KNOWN = {"former_dfer", "c3d", "ifdd", "ifdd_tiny", "static_control"}
PNG = b"\x89PNG\r\n\x1a\n"


def _fake_run_folders(runs_csv, runs_dir):
    """history.csv and predictions.csv for every fixture run (what the engine writes)."""
    rng = np.random.default_rng(0)
    for run in pd.read_csv(runs_csv).itertuples():
        folder = runs_dir / run.run_id
        folder.mkdir(parents=True)
        epochs = np.arange(4)
        rise = 1 - np.exp(-(epochs + 1) / 2)
        pd.DataFrame({"epoch": epochs, "train_loss": 2 * np.exp(-epochs / 3), "lr": 1e-3,
                      "val_uar": run.uar * rise, "test_uar": run.uar * rise - 0.01}).to_csv(
            folder / "history.csv", index=False)
        labels = np.repeat(np.arange(7), 5)
        pred = np.where(rng.random(len(labels)) < run.uar, labels, rng.integers(0, 7, len(labels)))
        pd.DataFrame({"clip_id": np.arange(len(labels)), "label": labels, "pred": pred}).to_csv(
            folder / "predictions.csv", index=False)


def _add_static_control(root):
    """A static control beside the fixture's runs (former_dfer's numbers under its name), so every
    table of the report, the controls table included, has something to render."""
    for name in ("runs.csv", "per_class.csv"):
        frame = pd.read_csv(root / name)
        static = frame[frame["model"] == "former_dfer"].assign(
            model="static_control", run_id=lambda f: f["run_id"].str.replace("former_dfer", "static_control"))
        pd.concat([frame, static]).to_csv(root / name, index=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    for name in ("runs.csv", "per_class.csv", "profile.csv", "probes.csv"):
        shutil.copy(FIXTURES / name, root / name)
    _add_static_control(root)
    _fake_run_folders(root / "runs.csv", root / "runs")
    events: list[dict] = []
    result = render_report(root, root / "runs", root / "out", known_models=KNOWN,
                           literature_path=FIXTURES / "literature.csv", progress=events.append)
    result.events = events  # what the report command's progress display was fed
    return root / "out", result


@pytest.mark.parametrize("stem", ["bars_uar_war", "uar_vs_gmacs", "per_class_recall_synth", "curves_synth",
                                  "confusion_synth", "temporal_reliance"])
def test_every_plot_is_written(rendered, stem):
    out, result = rendered
    png, pdf = out / "plots" / f"{stem}.png", out / "plots" / f"{stem}.pdf"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert png in result.files and pdf in result.files
    assert f"plots/{stem}.png" in (out / "report.md").read_text()


def test_rerendering_the_same_csvs_gives_identical_files(rendered, tmp_path, monkeypatch):
    out, _ = rendered
    root = out.parent
    # a different "now" for the second render: a creation timestamp left in the files would differ
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    again = render_report(root, root / "runs", tmp_path / "again", known_models=KNOWN,
                          literature_path=FIXTURES / "literature.csv")
    for path in again.files:
        if path.suffix in (".png", ".pdf"):
            assert path.read_bytes() == (out / path.relative_to(tmp_path / "again")).read_bytes(), path.name


def test_progress_events_announce_each_step_before_it_runs(rendered):
    _, result = rendered
    events = result.events
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "stage" and set(kinds) == {"stage", "table", "plot", "panel"}
    for i, event in enumerate(events):  # each figure's step is announced before the figure is written
        if event["kind"] == "plot":
            stages = [e["name"] for e in events[:i] if e["kind"] == "stage"]
            assert stages[-1] == f"plot: {event['name']}"
    panels = [e for e in events if e["kind"] == "panel"]
    assert [p["done"] for p in panels] == list(range(1, len(panels) + 1)) and panels[-1]["total"] == len(panels)
    assert kinds.index("panel") < kinds.index("plot", kinds.index("panel"))  # panels before their figure is done


def test_nothing_skipped_and_no_temp_files(rendered):
    out, result = rendered
    assert result.skipped == [] and "controls" in result.tables
    assert not list((out / "plots").glob(".*.tmp"))


def test_missing_run_folders_and_profile_are_reported(tmp_path):
    shutil.copy(FIXTURES / "runs.csv", tmp_path / "runs.csv")
    result = render_report(tmp_path, tmp_path / "runs", tmp_path / "out", known_models=KNOWN,
                           literature_path=FIXTURES / "literature.csv")
    skipped = " ".join(result.skipped)
    assert "training curves" in skipped and "confusion matrices" in skipped and "per-class" in skipped
    assert "temporal-reliance table and plot" in skipped and "temporal_reliance" not in result.tables
    assert "plotted against params" in skipped
    assert (tmp_path / "out" / "plots" / "uar_vs_params.png").read_bytes()[:8] == PNG


def test_pareto_front_and_palette():
    # (gmacs, uar): b is beaten by a (cheaper, better); d ties a on cost but is worse
    x = [1.0, 2.0, 3.0, 1.0, 0.5]
    y = [60.0, 55.0, 70.0, 50.0, 40.0]
    assert plots.pareto_front(x, y) == [4, 0, 2]
    order = [f"m:v{i}" for i in range(12)]
    palette = plots.entry_palette(order)
    assert len(set(palette.values())) == 12 and plots.entry_palette(order[:3]) == {k: palette[k] for k in order[:3]}
    assert plots.mathtext_label("+LADM +L_lift") == r"+LADM +$\mathcal{L}_{\mathrm{lift}}$"
