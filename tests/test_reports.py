"""Tables, statistics and input validation of ``ifdd_bench.reports`` on the fixture CSVs."""

import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ifdd_bench.errors import BenchError, ConfigError, DataError
from ifdd_bench import registry
from ifdd_bench.reports import inputs, markup, stats, tables
from ifdd_bench.reports.render import render_report

FIXTURES = Path(__file__).parent / "fixtures"
LITERATURE = FIXTURES / "literature.csv"
KNOWN = {"former_dfer", "c3d", "ifdd", "ifdd_tiny"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results_dir(tmp_path):
    for name in ("runs.csv", "per_class.csv", "profile.csv", "probes.csv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


def _runs(path=FIXTURES / "runs.csv", **kw):
    return inputs.load_runs(path, known_models=KNOWN, **kw)


def _pm(values):
    """mean ± sample std (percent, 2 decimals) computed independently of the code under test."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    assert abs(std - statistics.stdev(values)) < 1e-9
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


# ---------------------------------------------------------------------------------------------
# LaTeX shape checks


def _strip_math(text):
    return re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", text)


def assert_latex_shaped(tex, n_columns=None):
    """Balanced braces and environments, escaped specials, every tabular row with the right cells."""
    body = "\n".join(line.removesuffix("{%") + ("{" if line.endswith("{%") else "")  # a box opened at line end
                     for line in tex.splitlines() if not line.lstrip().startswith("%"))
    depth = 0
    for ch in re.sub(r"\\[{}]", "", body):  # escaped braces do not count
        depth += ch == "{"
        depth -= ch == "}"
        assert depth >= 0, "closing brace without an opening one"
    assert depth == 0, "unbalanced braces"
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", body):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"\\end{{{env}}} does not close the open environment"
    assert not stack, f"unclosed environments {stack}"
    assert body.count("$") % 2 == body.count(r"\$") % 2, "unbalanced math shifts"
    text = _strip_math(body)
    assert not re.search(r"(?<!\\)[_%#]", text), "unescaped _ % or # in text"
    assert not re.search(r"[<>]", text), "bare < or > in text (OT1 prints them as inverted ! and ?)"
    assert not re.search(r"(?<!\\)&", re.sub(r"\\begin\{tabular\}.*?\\end\{tabular\}", "", text, flags=re.S)), \
        "unescaped & outside the tabular"
    start = body.index(r"\begin{tabular}{") + len(r"\begin{tabular}{")
    depth, end = 1, start
    while depth:  # the column spec may hold braces itself (p{3cm})
        depth += {"{": 1, "}": -1}.get(body[end], 0)
        end += 1
    spec = body[start:end - 1]
    n = n_columns or len(re.findall(r"p\{[^}]*\}|[lcr]", spec))
    rows = body[end:body.index(r"\end{tabular}")]
    for line in rows.splitlines():
        line = line.strip()
        if not line.endswith(r"\\"):
            continue
        spans = sum(int(s) for s in re.findall(r"\\multicolumn\{(\d+)\}", line))
        plain = len(re.findall(r"\\multicolumn", line))
        cells = len(re.findall(r"(?<!\\)&", line)) + 1
        assert cells - plain + spans == n, f"row has {cells - plain + spans} cells, expected {n}: {line}"


def assert_markdown_shaped(md):
    rows = [line for line in md.splitlines() if line.startswith("|")]
    widths = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
    assert len(widths) == 1, f"markdown rows have different cell counts: {widths}"
    assert re.fullmatch(r"\|(:?-+:?\|)+", rows[1]), "second row must be the alignment row"


# ---------------------------------------------------------------------------------------------
# tables


def test_ablation_numbers_bold_and_order():
    runs = _runs()
    table = tables.ablation_table(runs, model="ifdd_tiny", profile=inputs.load_profile(FIXTURES / "profile.csv"),
                                  literature=inputs.load_literature(LITERATURE))
    md = markup.to_markdown(table)
    assert_markdown_shaped(md)
    full = _pm([0.60, 0.64, 0.62, 0.66])
    base = _pm([0.50, 0.52, 0.51, 0.55])
    assert full == "63.00 ± 2.58" and base == "52.00 ± 2.16"
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert f"**{full}**" in rows["IFDD (full)"]
    assert f"**{_pm([0.70, 0.72, 0.71, 0.75])}**" in rows["IFDD (full)"]
    assert f"| {base} |" in rows["Baseline (lazy split)"] and "**" not in rows["Baseline (lazy split)"]
    assert md.count("**") == 2 * 2 + 2  # two bold cells + the caption
    # check marks: +ISSM is ISSM on, LADM off, L_lift off
    assert [c.strip() for c in rows["+ISSM"].split("|")[2:5]] == ["✓", "✗", "✗"]
    # paper order, baselines last under their method name
    labels = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")][1:]
    assert labels == ["Baseline (lazy split)", "+ISSM", "+LADM +L_lift", "IFDD (full)",
                      "*Baselines, same protocol*", "Former-DFER"]
    # params from runs.csv, GMACs from the batch-1 profile row (not the batch-4 one)
    assert "| 0.412 | 0.084 |" in rows["IFDD (full)"]
    notes = " ".join(table.notes)
    for needle in ("2 fold(s) × 2 seed(s)", "protocol unified", "a1b2c3d4", "best validation UAR", "fvcore",
                   "1x3x8x32x32", "1 view(s)", "MACs"):
        assert needle in notes


def test_ablation_latex_is_compile_shaped():
    table = tables.ablation_table(_runs(), profile=inputs.load_profile(FIXTURES / "profile.csv"))
    tex = markup.to_latex(table)
    assert_latex_shaped(tex)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\textbf{63.00 $\pm$ 2.58}" in tex
    assert r"ifdd\_tiny" in tex and r"\checkmark" in tex and r"\multicolumn{2}{c}{SynthDFER}" in tex


def test_escaping_of_hostile_names(tmp_path):
    frame = pd.read_csv(FIXTURES / "runs.csv")
    frame.loc[frame["model"] == "former_dfer", "model"] = "my_net&co%"
    frame.to_csv(tmp_path / "runs.csv", index=False)
    runs = inputs.load_runs(tmp_path / "runs.csv", known_models=KNOWN | {"my_net&co%"})
    for table in (tables.ablation_table(runs), tables.comparison_table(runs, inputs.load_literature(LITERATURE))):
        tex = markup.to_latex(table)
        assert_latex_shaped(tex)
        assert r"my\_net\&co\%" in tex
    assert markup.tex_escape("a_b 50% & $x# {y} ~^\\") == \
        r"a\_b 50\% \& \$x\# \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    md = markup.to_markdown(tables.ablation_table(runs))
    assert_markdown_shaped(md)


def test_other_tables_are_shaped():
    runs = _runs()
    lit = inputs.load_literature(LITERATURE)
    profile = inputs.load_profile(FIXTURES / "profile.csv")
    per_class = inputs.load_per_class(FIXTURES / "per_class.csv")
    diffs = stats.paired_differences(runs)
    built = [tables.comparison_table(runs, lit, profile=profile), tables.per_class_table(per_class, runs, "synth"),
             tables.complexity_table(lit, profile), tables.stats_table(diffs)]
    for table in built:
        assert_latex_shaped(markup.to_latex(table))
        assert_markdown_shaped(markup.to_markdown(table))
    comparison, per_class_t, complexity, stats_t = (markup.to_markdown(t) for t in built)
    # reported rows as published, with their source; best DFEW UAR in bold
    assert "| Former-DFER | MM'21 | 18.0 | 9.11* |" in comparison and "DC, MD12-14" in comparison
    assert "DC = DFER-CLIP README" in comparison and "| MAE-DFER | MM'23 |" in comparison
    assert "**63.41**" in comparison and "this run (unified, n=4)" in comparison
    # per-class: mean recall of 'happy' for full = mean(u + 0.2)
    happy = [0.80, 0.84, 0.82, 0.86]
    mean, std = 100 * statistics.mean(happy), 100 * statistics.stdev(happy)
    full_row = next(line for line in per_class_t.splitlines() if line.startswith("| IFDD (full)"))
    assert full_row.split("|")[2].strip() == f"**{mean:.1f} ± {std:.1f}**" == "**83.0 ± 2.6**"
    # complexity: the measured side uses the profile row at the reported input (16x112x112)
    row = next(line for line in complexity.splitlines() if line.startswith("| Former-DFER"))
    assert "| 8.32 | 16.7 | 1x3x16x112x112 |" in row and "| 18.03 |" in row
    assert "Not profiled yet" in complexity and "c3d" in complexity
    assert "| SynthDFER | Baseline (lazy split) | 4 | −11.00 | — |" in stats_t  # 4 pairs: no interval
    assert "fewer than 5 pairs, no interval" in stats_t and "Holm-adjusted" in stats_t


# ---------------------------------------------------------------------------------------------
# statistics


def test_paired_differences_by_hand():
    diffs = stats.paired_differences(_runs())
    row = diffs[(diffs["variant"] == "baseline") & (diffs["metric"] == "uar")].iloc[0]
    by_hand = np.array([0.50, 0.52, 0.51, 0.55]) - np.array([0.60, 0.64, 0.62, 0.66])
    assert row["n"] == 4 and row["unpaired"] == 0
    assert row["mean_diff"] == pytest.approx(by_hand.mean())
    assert row["std_diff"] == pytest.approx(statistics.stdev(by_hand))
    assert math.isnan(row["ci_low"]) and row["ci_method"] == "none: n < 5"  # 4 pairs: no interval
    assert row["t_stat"] == pytest.approx(by_hand.mean() / (statistics.stdev(by_hand) / 2)) and row["df"] == 3
    assert row["p_holm"] >= row["p_value"] and row["holm_family_size"] == 4
    assert set(diffs["model"] + ":" + diffs["variant"]) == {
        "ifdd_tiny:baseline", "ifdd_tiny:no_ladm", "ifdd_tiny:no_issm", "former_dfer:full"}


def test_sign_flip_matches_brute_force_and_monte_carlo():
    rng = np.random.default_rng(3)
    d = rng.normal(0.01, 0.02, size=7)
    p, method = stats.sign_flip_pvalue(d)
    brute = np.mean([abs(np.mean(d * np.array(s))) >= abs(d.mean()) - 1e-15
                     for s in np.array(np.meshgrid(*[[-1, 1]] * 7)).T.reshape(-1, 7)])
    assert method == "exact" and p == pytest.approx(brute)
    big = rng.normal(0.05, 0.01, size=30)
    p_big, method_big = stats.sign_flip_pvalue(big, n_resamples=5000)
    assert method_big == "monte-carlo" and p_big < 0.001
    assert stats.sign_flip_pvalue(np.zeros(5))[0] == 1.0
    assert math.isnan(stats.bootstrap_ci(np.array([0.1]))[0])


def test_unpaired_cells_are_counted():
    runs = _runs()
    runs = runs[~((runs["variant"] == "no_ladm") & (runs["fold"] == 2))]
    diffs = stats.paired_differences(runs, metrics=("uar",))
    row = diffs[diffs["variant"] == "no_ladm"].iloc[0]
    assert row["n"] == 2 and row["unpaired"] == 2
    table = tables.ablation_table(runs)
    assert "†" in markup.to_markdown(table) and "n=2" in " ".join(table.notes)


def _predictions(rows):
    """Prediction frame of (variant, fold, labels, preds) rows as load_predictions returns it."""
    parts = []
    for variant, fold, labels, preds in rows:
        parts.append(pd.DataFrame({"run_id": f"ifdd_tiny-{variant}-synth-f{fold}-s0-unified", "model": "ifdd_tiny",
                                   "variant": variant, "dataset": "synth", "fold": fold, "seed": 0,
                                   "clip_id": np.arange(len(labels)), "label": labels, "pred": preds}))
    return pd.concat(parts, ignore_index=True)


def _uar(labels, preds):
    """Mean per-class recall, computed independently of the code under test."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    return np.mean([np.mean(preds[labels == c] == c) for c in np.unique(labels)])


def test_clip_paired_differences_by_hand():
    rng = np.random.default_rng(4)
    labels = np.array([0] * 10 + [1] * 30 + [2] * 20)  # unequal supports: UAR != WAR
    full = np.where(rng.random(60) < 0.4, labels, (labels + 1) % 3)
    better = np.where(rng.random(60) < 0.9, labels, (labels + 2) % 3)
    frame = _predictions([("full", 1, labels, full), ("baseline", 1, labels, better)])
    diffs = stats.clip_paired_differences(frame, n_resamples=4000)
    uar = diffs[diffs["metric"] == "uar"].iloc[0]
    war = diffs[diffs["metric"] == "war"].iloc[0]
    assert uar["mean_diff"] == pytest.approx(_uar(labels, better) - _uar(labels, full))
    assert war["mean_diff"] == pytest.approx(np.mean(better == labels) - np.mean(full == labels))
    assert uar["mean_diff"] != pytest.approx(war["mean_diff"])
    assert (uar["cells"], uar["clips"], uar["skipped_cells"]) == (1, 60, 0)
    assert 0 < uar["ci_low"] < uar["mean_diff"] < uar["ci_high"]
    assert uar["p_value"] < 0.01  # 0.4 vs 0.9 accuracy on 60 clips
    again = stats.clip_paired_differences(frame, n_resamples=4000)
    pd.testing.assert_frame_equal(diffs, again)  # seeded


def test_clip_swap_test_matches_exact_enumeration():
    """With few differing clips the swap test's p is computable exactly: the Monte Carlo one is close."""
    labels = np.repeat(np.arange(3), 6)
    full = labels.copy()
    other = labels.copy()
    other[[0, 6, 12, 13]] = (labels[[0, 6, 12, 13]] + 1) % 3  # 4 clips lost, one class 2 clip ...
    full[[7]] = (labels[7] + 1) % 3  # ... and one gained
    frame = _predictions([("full", 1, labels, full), ("baseline", 1, labels, other)])
    row = stats.clip_paired_differences(frame, n_resamples=20_000).query("metric == 'war'").iloc[0]
    d = (other == labels).astype(float) - (full == labels).astype(float)
    nz = d[d != 0]
    patterns = np.array(np.meshgrid(*[[-1, 1]] * len(nz))).T.reshape(-1, len(nz))
    exact = np.mean(np.abs(patterns @ nz) >= abs(nz.sum()) - 1e-12)
    assert row["mean_diff"] == pytest.approx(d.mean())
    assert row["p_value"] == pytest.approx(exact, abs=0.015)


def test_clip_paired_identical_and_unpairable_runs():
    labels = np.repeat(np.arange(7), 4)
    preds = np.roll(labels, 3)
    frame = _predictions([("full", 1, labels, preds), ("no_ladm", 1, labels, preds),
                          ("full", 2, labels, preds), ("no_ladm", 2, labels[::-1], preds)])  # fold 2: labels differ
    diffs = stats.clip_paired_differences(frame, n_resamples=500)
    row = diffs[diffs["metric"] == "uar"].iloc[0]
    assert (row["cells"], row["skipped_cells"]) == (1, 1)
    assert row["mean_diff"] == 0 and row["ci_low"] == 0 and row["ci_high"] == 0 and row["p_value"] == 1.0
    table = markup.to_markdown(tables.clip_stats_table(diffs))
    assert "ifdd_tiny:no_ladm on synth (1)" in table
    only_fold2 = stats.clip_paired_differences(frame[frame["fold"] == 2], n_resamples=100)
    assert only_fold2["cells"].eq(0).all() and only_fold2["mean_diff"].isna().all()


def test_difference_tables_name_the_model_when_two_ifdd_models_share_variants():
    labels = np.repeat(np.arange(7), 4)
    scratch = _predictions([("full", 1, labels, np.roll(labels, 3)), ("baseline", 1, labels, labels)])
    pretext = _predictions([("full", 1, labels, labels), ("baseline", 1, labels, np.roll(labels, 2))])
    pretext["model"] = "ifdd_tiny_pretext"
    pretext["run_id"] = pretext["run_id"].str.replace("ifdd_tiny-", "ifdd_tiny_pretext-")
    diffs = stats.clip_paired_differences(pd.concat([scratch, pretext], ignore_index=True), n_resamples=200)
    table = tables.clip_stats_table(diffs)
    markdown, latex = markup.to_markdown(table), markup.to_latex(table)
    assert "Baseline (lazy split) [ifdd_tiny] | IFDD (full) [ifdd_tiny]" in markdown
    assert "Baseline (lazy split) [ifdd_tiny_pretext] | IFDD (full) [ifdd_tiny_pretext]" in markdown
    assert r"[ifdd\_tiny\_pretext]" in latex and "[ifdd_tiny_pretext]" not in latex
    single = markup.to_markdown(tables.clip_stats_table(stats.clip_paired_differences(scratch, n_resamples=200)))
    assert "[ifdd_tiny]" not in single  # one IFDD model: labels stay short


def test_aggregate_single_run_has_no_std():
    agg = stats.aggregate(_runs().head(1))
    assert agg.loc[0, "n"] == 1 and math.isnan(agg.loc[0, "uar_std"])
    assert stats.format_pm(0.5, float("nan")) == "50.00"


# ---------------------------------------------------------------------------------------------
# bad input


def test_foreign_empty_and_malformed_csvs(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks column"):
        _runs(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        _runs(path)
    path.write_text((FIXTURES / "runs.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="no rows"):
        _runs(path)
    frame = pd.read_csv(FIXTURES / "runs.csv", dtype=str)
    frame.loc[3, "uar"] = "oops"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"line 5: column 'uar' holds 'oops'"):
        _runs(path)
    frame.loc[3, "uar"] = "63.0"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"line 5: uar = 63.0 is not a fraction"):
        _runs(path)
    frame.loc[3, "uar"], frame.loc[3, "fold"] = "0.6", "1.5"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"line 5: fold = 1.5 is not a whole number"):
        _runs(path)
    with pytest.raises(DataError, match="does not exist"):
        _runs(tmp_path / "nope.csv")


def test_unknown_variant_and_model(tmp_path):
    frame = pd.read_csv(FIXTURES / "runs.csv")
    frame.loc[0, "variant"] = "no_isssm"
    frame.to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(ConfigError, match=r"line 2: unknown IFDD variant 'no_isssm' \(did you mean: no_issm"):
        _runs(tmp_path / "runs.csv")
    frame = pd.read_csv(FIXTURES / "runs.csv")
    frame.loc[frame["model"] == "former_dfer", "model"] = "formerdfer"
    frame.to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(ConfigError, match="unknown model 'formerdfer'.*former_dfer"):
        _runs(tmp_path / "runs.csv")


def test_mixed_protocols_refused_unless_allowed(tmp_path):
    frame = pd.read_csv(FIXTURES / "runs.csv")
    frame.loc[frame["variant"] == "baseline", "train_hash"] = "ffff0000"
    frame.to_csv(tmp_path / "runs.csv", index=False)
    runs = _runs(tmp_path / "runs.csv")
    with pytest.raises(DataError, match="mixes protocols for dataset 'synth'") as err:
        inputs.check_mixed(runs, allow_mixed=False)
    assert "--allow-mixed" in str(err.value) and "--filter train_hash=" in str(err.value)
    notes = inputs.check_mixed(runs, allow_mixed=True)
    assert len(notes) == 1 and "ffff0000" in notes[0]
    with pytest.raises(DataError, match="mixes protocols"):
        render_report(tmp_path, tmp_path / "runs", tmp_path / "out", plots=False, known_models=KNOWN,
                      literature_path=LITERATURE)
    result = render_report(tmp_path, tmp_path / "runs", tmp_path / "out", plots=False, allow_mixed=True,
                           known_models=KNOWN, literature_path=LITERATURE)
    assert "ffff0000" in (tmp_path / "out" / "ablation_ifdd_tiny.md").read_text()
    assert result.tables["stats"].n_rows() == 4
    filtered = _runs(tmp_path / "runs.csv", filters=["train_hash=a1b2c3d4"])
    assert "baseline" not in set(filtered["variant"]) and not inputs.check_mixed(filtered, allow_mixed=False)
    with pytest.raises(ConfigError, match="filter column 'train_hsh'"):
        _runs(tmp_path / "runs.csv", filters=["train_hsh=a1b2c3d4"])


def test_render_writes_every_table_atomically(results_dir):
    out = results_dir / "report"
    result = render_report(results_dir, results_dir / "runs", out, plots=False, known_models=KNOWN,
                           literature_path=LITERATURE)
    names = {p.name for p in result.files}
    for stem in ("ablation_ifdd_tiny", "comparison", "per_class_synth", "complexity", "stats"):
        assert {f"{stem}.tex", f"{stem}.md"} <= names
    assert {"report.md", "summary.csv", "paired_differences.csv"} <= names
    assert not list(out.glob(".*.tmp"))
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[summary["entry"] == "ifdd_tiny:full", "uar_mean"].item() == pytest.approx(0.63)
    page = (out / "report.md").read_text()
    assert "63.00 ± 2.58" in page and "Rendered by" in page
    only_md = render_report(results_dir, results_dir / "runs", results_dir / "md", formats="md", plots=False,
                            known_models=KNOWN, literature_path=LITERATURE)
    assert all(p.suffix != ".tex" for p in only_md.files)
    with pytest.raises(ConfigError, match="unknown report format 'pdf'"):
        render_report(results_dir, formats="pdf", plots=False, known_models=KNOWN)
    with pytest.raises(ConfigError, match="--reference 'no_lfit' is neither.*did you mean: no_l"):
        render_report(results_dir, reference="no_lfit", plots=False, known_models=KNOWN)


def test_render_clip_statistics_from_run_predictions(results_dir):
    runs = pd.read_csv(results_dir / "runs.csv")
    labels = np.repeat(np.arange(7), 6)
    expected = {}
    for k, run in enumerate(runs.itertuples()):
        rng = np.random.default_rng(k)
        preds = np.where(rng.random(len(labels)) < run.uar, labels, (labels + 1) % 7)
        folder = results_dir / "runs" / run.run_id
        folder.mkdir(parents=True)
        pd.DataFrame({"clip_id": [f"{i:05d}" for i in range(len(labels))], "label": labels, "pred": preds}).to_csv(
            folder / "predictions.csv", index=False)
        expected[(run.model, run.variant, run.fold, run.seed)] = _uar(labels, preds)
    result = render_report(results_dir, results_dir / "runs", results_dir / "out", plots=False,
                           known_models=KNOWN, literature_path=LITERATURE)
    assert not any("clip-level" in reason for reason in result.skipped)
    cells = [(f, s) for (m, v, f, s) in expected if (m, v) == ("ifdd_tiny", "baseline")]
    by_hand = np.mean([expected[("ifdd_tiny", "baseline", f, s)] - expected[("ifdd_tiny", "full", f, s)]
                       for f, s in cells])
    md = (results_dir / "out" / "stats_clips.md").read_text()
    line = next(row for row in md.splitlines() if "| Baseline (lazy split) |" in row)
    assert f"| {len(cells)} | {42 * len(cells)} | {100 * by_hand:+.2f} |".replace("-", "−") in line
    assert "test-set sampling" in md
    assert_latex_shaped((results_dir / "out" / "stats_clips.tex").read_text())
    csv = pd.read_csv(results_dir / "out" / "clip_paired_differences.csv")
    assert set(csv["variant"]) >= {"baseline", "no_ladm", "no_issm"}
    no_clip_ids = render_report(results_dir, results_dir / "nowhere", results_dir / "out2", plots=False,
                                known_models=KNOWN, literature_path=LITERATURE)
    assert "stats_clips" not in no_clip_ids.tables
    assert any("clip-level statistics: no predictions.csv" in reason for reason in no_clip_ids.skipped)


def test_reference_can_be_a_baseline(results_dir):
    result = render_report(results_dir, results_dir / "runs", results_dir / "out", plots=False,
                           reference="former_dfer", known_models=KNOWN, literature_path=LITERATURE)
    md = markup.to_markdown(result.tables["stats"])
    assert "| SynthDFER | IFDD (full) | 4 | +17.00 |" in md and "to Former-DFER" in md


def test_registered_names_are_read_without_import(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('from x import register_model\n@register_model("net_a", config_cls=C)\ndef a(c): ...\n'
                   '@registry.register_model("net_b", config_cls=C)\ndef b(c): ...\nregister_model(name)\n')
    assert inputs._names_registered_in(src) == {"net_a", "net_b"}
    assert {"former_dfer", "c3d"} <= set(inputs.registered_model_names())


# ---------------------------------------------------------------------------------------------
# no torch, and the CLI


def test_reports_never_import_torch():
    subprocess.run([sys.executable, "-c", "import ifdd_bench.reports.render, sys; assert 'torch' not in sys.modules"],
                   check=True, cwd=ROOT)
    every_module = (  # nothing under ifdd_bench/reports/ may pull torch in
        "import importlib, pkgutil, sys, ifdd_bench.reports as r\n"
        "for m in pkgutil.iter_modules(r.__path__):\n    importlib.import_module(f'ifdd_bench.reports.{m.name}')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", every_module], check=True, cwd=ROOT)


def test_report_command_does_not_import_torch(results_dir):
    code = (
        "import sys\n"
        f"sys.argv = ['ifdd-bench', 'report', '--results-dir', {str(results_dir)!r}, '--no-plots', "
        f"'--literature', {str(LITERATURE)!r}]\n"
        "import cli\n"
        "try:\n    cli.main()\nexcept SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr + done.stdout
    assert "IFDD (full)" in done.stdout and "63.00 ± 2.58" in done.stdout
    assert (results_dir / "report" / "ablation_ifdd_tiny.tex").exists()
    # piped: the progress display says each step on stderr (stdout keeps the tables only)
    assert "report: tables" in done.stderr and "report: paired statistics" in done.stderr
    assert "report:" not in done.stdout


def test_cli_errors_are_clean(tmp_path):
    import cli

    runner = CliRunner()
    res = runner.invoke(cli.main, ["report", "--results-dir", str(tmp_path), "--no-plots"])
    text = " ".join(res.output.split())  # rich wraps long messages
    assert res.exit_code == DataError.exit_code and "does not exist" in text
    assert "Traceback" not in text
    (tmp_path / "runs.csv").write_text("x,y\n1,2\n")
    res = runner.invoke(cli.main, ["report", "--results-dir", str(tmp_path), "--no-plots"])
    assert res.exit_code == BenchError.exit_code and "lacks column" in " ".join(res.output.split())


@pytest.mark.parametrize("broken", [
    r"\begin{table}\begin{tabular}{ll} a & b \\ \end{tabular}",  # unclosed table
    r"\begin{tabular}{ll} a & {b \\ \end{tabular}",  # unbalanced brace
    r"\begin{tabular}{ll} a_b & c \\ \end{tabular}",  # unescaped underscore
    r"\begin{tabular}{ll} a & b & c \\ \end{tabular}",  # too many cells
])
def test_latex_checker_rejects_broken_output(broken):
    with pytest.raises(AssertionError):
        assert_latex_shaped(broken)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (the shape checks above still run)")
def test_tables_compile_with_pdflatex(results_dir, tmp_path):
    render_report(results_dir, results_dir / "runs", tmp_path, formats="latex", plots=False, known_models=KNOWN,
                  literature_path=LITERATURE)
    inputs_ = "\n".join(rf"\input{{{p.stem}}}\clearpage" for p in sorted(tmp_path.glob("*.tex")))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,amssymb,graphicx}\n"
        f"\\begin{{document}}\n{inputs_}\n\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "doc.pdf").read_bytes()[:5] == b"%PDF-"


def test_profile_read_defensively(tmp_path):
    profile = inputs.load_profile(FIXTURES / "profile.csv")
    assert "oom" not in set(profile.get("status", [])) and profile["gmacs"].max() < 99
    match = tables.find_profile(profile, "ifdd_tiny", "full", 8, 32)
    assert match.gmacs == pytest.approx(0.0841) and match.shape == "1x3x8x32x32" and match.exact_geometry
    (tmp_path / "profile.csv").write_text("model,variant,params\nifdd_tiny,full,412345\n")  # no GMACs column
    bare = inputs.load_profile(tmp_path / "profile.csv")
    table = tables.ablation_table(_runs(), profile=bare)
    assert "GMACs empty for" in " ".join(table.notes)
    assert all(row[-1].text == "" for block in table.blocks for row in block.rows)
    assert inputs.load_profile(tmp_path / "missing.csv") is None


# ---------------------------------------------------------------------------------------------
# bad input: a class absent from a test split (issue 15)


def _absent_class_results(tmp_path, empty="", support=True):
    """Fixture CSVs where class 'sad' (index 1) had no test clip in fold 2 of every run."""
    for name in ("runs.csv", "profile.csv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    frame = pd.read_csv(FIXTURES / "per_class.csv", dtype=str)
    absent = (frame["class_index"] == "1") & (frame["fold"] == "2")
    frame.loc[absent, "recall"] = empty
    if support:
        frame.loc[absent, "support"] = "0"
    else:
        frame = frame.drop(columns="support")
    frame.to_csv(tmp_path / "per_class.csv", index=False)
    return tmp_path, int(absent.sum())


@pytest.mark.parametrize("empty", ["", "nan"])  # "nan" is what the engine writes for an absent class
def test_absent_class_is_undefined_and_the_report_renders(tmp_path, empty):
    results_dir, n_absent = _absent_class_results(tmp_path, empty)
    per_class = inputs.load_per_class(results_dir / "per_class.csv")
    assert per_class["recall"].isna().sum() == n_absent > 0
    result = render_report(results_dir, results_dir / "runs", results_dir / "out", plots=False,
                           known_models=KNOWN, literature_path=LITERATURE)
    md = (results_dir / "out" / "per_class_synth.md").read_text()
    notes = " ".join(result.tables["per_class_synth"].notes)
    assert "sad (10 of 20 runs)" in notes and "left out, not counted as 0" in notes
    # mean over the runs that have the class: fold-1 recall of 'sad' for full, by hand
    fold1 = pd.read_csv(FIXTURES / "per_class.csv").query(
        "model == 'ifdd_tiny' and variant == 'full' and class_index == 1 and fold == 1")
    full_row = next(line for line in md.splitlines() if line.startswith("| IFDD (full)"))
    sad = full_row.split("|")[3].strip().strip("*")
    assert sad == f"{100 * fold1['recall'].mean():.1f} ± {100 * statistics.stdev(fold1['recall']):.1f}"
    assert "classes present in each run's test split" in " ".join(result.tables["ablation_ifdd_tiny"].notes)
    assert "sad (absent in 10 of 20 runs)" in (results_dir / "out" / "comparison.md").read_text()
    assert_latex_shaped((results_dir / "out" / "per_class_synth.tex").read_text())


def test_class_absent_from_every_run_shows_a_dash(tmp_path):
    results_dir, _ = _absent_class_results(tmp_path, support=False)
    frame = pd.read_csv(results_dir / "per_class.csv", dtype=str)
    frame.loc[frame["class_index"] == "1", "recall"] = ""  # no run had a 'sad' test clip
    frame.to_csv(results_dir / "per_class.csv", index=False)
    result = render_report(results_dir, results_dir / "runs", results_dir / "out", known_models=KNOWN,
                           literature_path=LITERATURE)  # with plots: the heatmap takes the NaN column
    table = result.tables["per_class_synth"]
    sad = table.columns.index("sad")
    assert all(row[sad].text == "—" and not row[sad].bold for row in table.blocks[0].rows)
    assert "—: absent from every run of that variant" in " ".join(table.notes)
    tex = markup.to_latex(table)
    assert_latex_shaped(tex)
    assert " & --- & " in tex
    assert (results_dir / "out" / "plots" / "per_class_recall_synth.pdf").exists()


def test_empty_recall_with_test_clips_is_refused(tmp_path):
    frame = pd.read_csv(FIXTURES / "per_class.csv", dtype=str)
    frame.loc[4, "recall"] = ""
    frame.to_csv(tmp_path / "per_class.csv", index=False)
    with pytest.raises(DataError, match=r"line 6: recall is empty but support is 20 test clips"):
        inputs.load_per_class(tmp_path / "per_class.csv")


# ---------------------------------------------------------------------------------------------
# bad input: a sweep without the reference variant (issue 15)


def test_sweep_without_full_renders_every_table_that_needs_no_reference(tmp_path):
    frame = pd.read_csv(FIXTURES / "runs.csv", dtype=str)
    # `run ablation --variants baseline,no_ladm,no_issm`, plus a baseline
    frame = frame[~((frame["model"] == "ifdd_tiny") & (frame["variant"] == "full"))]
    frame.to_csv(tmp_path / "runs.csv", index=False)
    shutil.copy(FIXTURES / "per_class.csv", tmp_path / "per_class.csv")
    result = render_report(tmp_path, tmp_path / "runs", tmp_path / "out", plots=False, known_models=KNOWN,
                           literature_path=LITERATURE)
    note = result.reference_note
    assert "no run of ifdd_tiny has that variant" in note and "'full'" in note
    assert "--variants baseline,no_ladm,no_issm,full" in note and "--reference one of:" in note
    assert "former_dfer" in note and note in result.skipped
    assert {"ablation_ifdd_tiny", "comparison", "per_class_synth", "complexity"} <= set(result.tables)
    assert "stats" not in result.tables and "stats_clips" not in result.tables
    assert not (tmp_path / "out" / "paired_differences.csv").exists()
    comparison = markup.to_markdown(result.tables["comparison"])
    assert "IFDD rows omitted" in comparison and "Baseline (lazy split)" not in comparison
    assert note in (tmp_path / "out" / "report.md").read_text()
    # only IFDD variants, no baseline and no literature: no comparison table either, and it says so
    only = frame[frame["model"] == "ifdd_tiny"]
    only.to_csv(tmp_path / "runs.csv", index=False)
    bare = render_report(tmp_path, tmp_path / "runs", tmp_path / "out2", plots=False, known_models=KNOWN,
                         literature_path=tmp_path / "none.csv")
    assert "comparison" not in bare.tables and bare.reference_note
    assert "ablation_ifdd_tiny" in bare.tables
    # `run ablation --variants baseline`: one variant, nothing another reference could be compared with
    frame[frame["variant"] == "baseline"].to_csv(tmp_path / "runs.csv", index=False)
    single = render_report(tmp_path, tmp_path / "runs", tmp_path / "out3", plots=False, known_models=KNOWN,
                           literature_path=LITERATURE)
    assert "(--variants baseline,full)" in single.reference_note and "--reference" not in single.reference_note
    assert {"ablation_ifdd_tiny", "comparison", "per_class_synth"} <= set(single.tables)


def test_reference_found_leaves_no_note(results_dir):
    result = render_report(results_dir, results_dir / "runs", results_dir / "out", plots=False,
                           known_models=KNOWN, literature_path=LITERATURE)
    assert result.reference_note == "" and "stats" in result.tables
    missing_model = render_report(results_dir, results_dir / "runs", results_dir / "o2", plots=False,
                                  reference="c3d", known_models=KNOWN, literature_path=LITERATURE)
    assert "no run has it; train 'c3d'" in missing_model.reference_note


# ---------------------------------------------------------------------------------------------
# reproducible bytes (issue 16)


def _all_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerender_gives_identical_bytes_even_with_last_bit_noise(results_dir, tmp_path, monkeypatch):
    render_report(results_dir, results_dir / "runs", tmp_path / "a", known_models=KNOWN, literature_path=LITERATURE)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")  # another "now": a date left in a file would differ
    render_report(results_dir, results_dir / "runs", tmp_path / "b", known_models=KNOWN, literature_path=LITERATURE)
    first, second = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert first.keys() == second.keys() and {"summary.csv", "paired_differences.csv", "plots/bars_uar_war.pdf",
                                               "temporal_reliance.csv", "plots/temporal_reliance.pdf"} <= set(first)
    for name in first:
        assert first[name] == second[name], name
    # another CPU may differ in the last bits of a sum: the CSVs the report writes must not
    frame = pd.read_csv(results_dir / "runs.csv")
    frame["uar"] = np.nextafter(frame["uar"].to_numpy(), 1.0)
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    frame.to_csv(noisy / "runs.csv", index=False, float_format="%.17g")
    shutil.copy(results_dir / "per_class.csv", noisy / "per_class.csv")
    shutil.copy(results_dir / "profile.csv", noisy / "profile.csv")
    render_report(noisy, noisy / "runs", tmp_path / "c", plots=False, known_models=KNOWN, literature_path=LITERATURE)
    for name in ("summary.csv", "paired_differences.csv"):
        assert (tmp_path / "c" / name).read_bytes() == first[name], name
    assert "0.63," in first["summary.csv"].decode()  # 6 significant digits, not 0.6300000000000001


def test_plot_files_carry_no_date_and_one_font(results_dir, tmp_path):
    import matplotlib
    from matplotlib import font_manager

    from ifdd_bench.reports import plots

    result = render_report(results_dir, results_dir / "runs", tmp_path, known_models=KNOWN,
                           literature_path=LITERATURE)
    pdfs = [p for p in result.files if p.suffix == ".pdf"]
    pngs = [p for p in result.files if p.suffix == ".png"]
    assert pdfs and pngs
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert b"/CreationDate" not in data and b"/ModDate" not in data, pdf.name
        assert not re.search(rb"\(D:\d{8}", data), pdf.name  # no PDF date string anywhere
        assert f"/Producer ({plots.PRODUCER})".encode() in data and b"Matplotlib v" not in data
        assert b"DejaVuSans" in data and b"Arial" not in data
    for png in pngs:
        data = png.read_bytes()
        assert b"tIME" not in data and b"Software" not in data, png.name
    with plots._style():
        path = font_manager.findfont(font_manager.FontProperties(family=matplotlib.rcParams["font.sans-serif"]))
    assert Path(path).name == "DejaVuSans.ttf" and "mpl-data" in Path(path).parts  # matplotlib's own copy


def test_cli_tables_print_bracketed_labels_as_text():
    """Labels such as 'GAP head [ifdd_tiny]' are table text, not rich markup: two IFDD models in one
    results folder must stay distinguishable in the terminal as in report.md."""
    import cli

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # a frozen results file with both ifdd_tiny and ifdd_tiny_pretext
        results = Path(tmp) / "results"
        results.mkdir()
        shutil.copy(ROOT / "tests" / "fixtures" / "readme_runs.csv", results / "runs.csv")
        res = CliRunner().invoke(cli.main, ["report", "--results-dir", str(results), "--runs-dir", str(Path(tmp) / "runs"),
                                            "--out-dir", str(Path(tmp) / "out"), "--no-plots"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "GAP head [ifdd_tiny]" in res.output and "IFDD (full) [ifdd_tiny_pretext]" in res.output


def test_report_variant_rows_come_from_the_models_ablation_table():
    """One home: every IFDD variant's label and check marks are read from ABLATIONS, and the marks
    agree with the config the registry builds for that variant."""
    from ifdd_bench.models.ifdd_config import ABLATIONS

    assert [v.key for v in inputs.IFDD_VARIANTS] == list(ABLATIONS)
    for key, ablation in ABLATIONS.items():
        info = inputs.VARIANTS_BY_KEY[key]
        assert info.label == ablation.label and info.note == ablation.note
        cfg = registry.resolve_config("ifdd_tiny", key)
        assert (info.split == "issm") == cfg.issm and info.ladm == cfg.ladm
        assert info.lift == (cfg.lambda_lift > 0) and (info.split == "none") == (cfg.top_kind == "gap")


def test_protocol_note_counts_runs_that_selected_their_last_epoch():
    import pandas as pd

    from ifdd_bench.reports.tables.protocol import last_epoch_share, protocol_notes

    runs = pd.DataFrame({"dataset": ["synth"] * 3, "protocol": ["unified"] * 3, "train_hash": ["h"] * 3,
                         "epochs": [5, 5, 5], "selection": ["val_uar"] * 3, "views": [1] * 3, "frames": [16] * 3,
                         "size": [64] * 3, "selected_epoch": [4, 2, 4]})
    assert last_epoch_share(runs) == " The selected epoch was the last one in 2 of 3 run(s)."
    assert protocol_notes(runs, ["synth"])[0].endswith("last one in 2 of 3 run(s).")
    assert last_epoch_share(runs.drop(columns="selected_epoch")) == ""
# ---------------------------------------------------------------------------------------------
# temporal reliance (probes.csv)


def _fixture_probe_deltas(variant, perturbation, model="ifdd_tiny"):
    """ΔUAR of each run's own test-split probe (the last row per run), read without the code under test."""
    import csv

    runs = {r["run_id"]: r for r in csv.DictReader((FIXTURES / "runs.csv").open())}
    last = {}
    for row in csv.DictReader((FIXTURES / "probes.csv").open()):
        own = runs.get(row["run_id"])
        if (own and row["model"] == model and row["variant"] == variant and row["perturbation"] == perturbation
                and row["split"] == "test" and row["fold"] == own["fold"]):
            last[row["run_id"]] = row
    return [float(r["delta_uar"]) for r in last.values()], [float(r["clean_uar"]) for r in last.values()]


def test_temporal_table_from_the_fixture_probes(results_dir):
    result = render_report(results_dir, results_dir / "runs", results_dir / "out", plots=False, known_models=KNOWN,
                           literature_path=LITERATURE)
    table = result.tables["temporal_reliance"]
    md = (results_dir / "out" / "temporal_reliance.md").read_text()
    assert_markdown_shaped(md)
    assert_latex_shaped((results_dir / "out" / "temporal_reliance.tex").read_text(), n_columns=8)
    deltas, clean = _fixture_probe_deltas("full", "shuffle")
    assert len(deltas) == 4  # the stale row, the other fold's and the val split's are left out
    mean = 100 * sum(deltas) / len(deltas)
    assert f"| IFDD (full) | 4 | {100 * sum(clean) / len(clean):.2f} | {mean:+.2f} —".replace("-", "−") in md
    # one run: its own clip interval, marked; an entry without a perturbation: an empty cell
    (former,), _ = _fixture_probe_deltas("full", "single", model="former_dfer")
    assert f"{100 * former:+.2f} [{100 * (former - 0.05):+.2f}, {100 * (former + 0.05):+.2f}]ᶜ".replace("-", "−") in md
    no_issm = next(row for row in table.blocks[0].rows if row[0].text == "+LADM +L_lift")
    assert [cell.text for cell in no_issm][4] == ""  # reverse was not probed for no_issm
    assert "n < 5" in " ".join(table.notes) and "model held fixed" in " ".join(table.notes)
    summary = pd.read_csv(results_dir / "out" / "temporal_reliance.csv")
    full = summary[(summary["variant"] == "full") & (summary["model"] == "ifdd_tiny")]
    assert list(full["perturbation"]) == ["shuffle", "reverse", "single", "freeze-apex", "half-rate"]
    assert set(full["n"]) == {4} and set(full["ci_method"]) == {"none: n < 5"}
    assert "## Temporal reliance" in (results_dir / "out" / "report.md").read_text()


def test_temporal_summary_gives_the_t_interval_over_five_runs():
    deltas = [-0.20, -0.18, -0.25, -0.21, -0.16]
    probes = pd.DataFrame({"model": "ifdd_tiny", "variant": "full", "entry": "ifdd_tiny:full", "dataset": "synth",
                           "perturbation": "shuffle", "run_id": [f"r{i}" for i in range(5)], "clean_uar": 0.6,
                           "clean_war": 0.7, "uar": [0.6 + d for d in deltas], "war": 0.6, "delta_uar": deltas,
                           "delta_war": -0.1, "delta_uar_low": -0.3, "delta_uar_high": 0.1,
                           "delta_war_low": -0.2, "delta_war_high": 0.0})
    (row,) = stats.probe_summary(probes).to_dict("records")
    expected = stats.paired_t(deltas)
    assert row["n"] == 5 and row["ci_method"] == "paired t"
    assert row["delta_uar_low"] == pytest.approx(expected.ci_low) and row["delta_uar_high"] == pytest.approx(expected.ci_high)
    assert row["delta_uar_low"] != -0.3  # not a run's own clip interval
    cell = markup.to_markdown(tables.temporal_table(stats.probe_summary(probes)))
    assert f"[{100 * expected.ci_low:+.2f}, {100 * expected.ci_high:+.2f}] |".replace("-", "−") in cell
    assert "ᶜ" not in cell.split("\n- ")[0]


@pytest.mark.parametrize("column, value, needle", [
    ("perturbation", "shufle", "unknown perturbation 'shufle' (did you mean: shuffle"),
    ("delta_uar", "-12.5", "delta_uar = -12.5 is not a difference of fractions"),
    ("clean_uar", "abc", "column 'clean_uar' holds 'abc'"),
])
def test_a_damaged_probes_csv_is_refused_with_its_line(results_dir, column, value, needle):
    frame = pd.read_csv(results_dir / "probes.csv", dtype=str)
    frame.loc[3, column] = value
    frame.to_csv(results_dir / "probes.csv", index=False)
    with pytest.raises(BenchError) as info:
        render_report(results_dir, results_dir / "runs", results_dir / "out", plots=False, known_models=KNOWN,
                      literature_path=LITERATURE)
    assert needle in str(info.value) and "probes.csv, line 5" in str(info.value)
