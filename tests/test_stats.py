"""Statistics of the report tables: paired t-intervals, paired t-test, Holm adjustment (issue 15 point 4)."""

import math

import numpy as np
import pandas as pd
import pytest

from ifdd_bench.reports import markup, stats, tables
from test_reports import _predictions  # the prediction-frame builder of the report tests

#: two-sided 95% points of Student's t as printed in statistics tables (t_0.975 with df degrees of freedom)
T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 29: 2.0452, 120: 1.9799}


def _runs(diffs, *, variant="gap", full=0.60, model="ifdd_tiny", seeds=None, war_shift=0.0):
    """runs.csv-like rows: ``full`` and ``variant`` on len(diffs) (fold, seed) cells, variant = full + diff."""
    rows = []
    for k, d in enumerate(diffs):
        fold, seed = (1, k) if seeds is None else seeds[k]
        base = full + 0.01 * k
        rows.append(dict(model=model, variant="full", dataset="synth", fold=fold, seed=seed, uar=base,
                         war=base + 0.05))
        rows.append(dict(model=model, variant=variant, dataset="synth", fold=fold, seed=seed, uar=base + d,
                         war=base + 0.05 + d + war_shift))
    return pd.DataFrame(rows)


def _t_density(x, df):
    scale = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    return scale * (1 + x * x / df) ** (-(df + 1) / 2)


def _p_by_integration(t, df):
    """Two-sided p of a t statistic by integrating the density (independent of the closed form)."""
    xs = np.linspace(0.0, abs(t), 20_001)
    inner = np.trapezoid([_t_density(x, df) for x in xs], xs)
    return 1.0 - 2.0 * inner


# ---------------------------------------------------------------------------------------------
# the t distribution without scipy


@pytest.mark.parametrize("df", sorted(T_975))
def test_t_quantile_matches_printed_tables(df):
    assert stats.t_quantile(0.95, df) == pytest.approx(T_975[df], abs=6e-5)
    assert stats.t_central_mass(T_975[df], df) == pytest.approx(0.95, abs=1e-5)


@pytest.mark.parametrize("t, df", [(0.3, 1), (1.0, 2), (2.0, 3), (6.3246, 4), (2.2, 7), (0.5, 30)])
def test_t_pvalue_matches_numerical_integration(t, df):
    assert stats.t_two_sided_pvalue(t, df) == pytest.approx(_p_by_integration(t, df), abs=1e-6)
    assert stats.t_two_sided_pvalue(-t, df) == stats.t_two_sided_pvalue(t, df)


def test_t_distribution_edges():
    assert stats.t_central_mass(0.0, 3) == 0.0 and stats.t_central_mass(math.inf, 3) == 1.0
    assert stats.t_two_sided_pvalue(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| >= 1) = 1/2
    with pytest.raises(ValueError):
        stats.t_central_mass(1.0, 0)
    with pytest.raises(ValueError):
        stats.t_quantile(1.5, 3)


# ---------------------------------------------------------------------------------------------
# across runs: t-interval from five pairs on, none below


def test_six_pairs_give_the_t_interval_computed_by_hand():
    d = np.array([0.012, 0.031, 0.024, 0.008, 0.027, 0.019])
    row = stats.paired_differences(_runs(d), metrics=("uar",)).iloc[0]
    mean = d.sum() / 6
    s = math.sqrt(((d - mean) ** 2).sum() / 5)
    half = T_975[5] * s / math.sqrt(6)
    assert row["n"] == 6 and row["df"] == 5 and row["ci_method"] == "paired t"
    assert row["mean_diff"] == pytest.approx(mean) and row["std_diff"] == pytest.approx(s)
    assert row["ci_low"] == pytest.approx(mean - half, abs=1e-6)
    assert row["ci_high"] == pytest.approx(mean + half, abs=1e-6)
    assert row["t_stat"] == pytest.approx(mean / (s / math.sqrt(6)))
    assert row["p_value"] == pytest.approx(_p_by_integration(row["t_stat"], 5), abs=1e-6)
    assert row["p_method"] == "paired t-test, two-sided"
    table = markup.to_markdown(tables.stats_table(stats.paired_differences(_runs(d), metrics=("uar",))))
    printed = f"[{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]"
    assert printed in table and "95% t-CI" in table


def test_three_pairs_give_no_interval_and_a_note():
    runs = _runs([0.0134, 0.0441, 0.0289])
    diffs = stats.paired_differences(runs)
    assert diffs["n"].eq(3).all() and diffs["ci_low"].isna().all() and diffs["ci_high"].isna().all()
    assert diffs["ci_method"].eq("none: n < 5").all()
    assert diffs["p_value"].notna().all()  # the test is still given; only the interval is not
    table = tables.stats_table(diffs)
    md = markup.to_markdown(table)
    row = next(line for line in md.splitlines() if line.startswith("| SynthDFER"))
    assert row.split("|")[5].strip() == "—"  # the interval cell of ΔUAR
    notes = " ".join(table.notes)
    assert "fewer than 5 pairs, no interval" in notes and "n=3" in notes
    assert "[" not in row  # no bracketed interval anywhere in the row


def test_interval_and_unadjusted_p_agree():
    """The t-interval excludes 0 exactly when the unadjusted paired t p is below 0.05."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        d = rng.normal(rng.uniform(-0.02, 0.02), 0.02, size=int(rng.integers(5, 9)))
        r = stats.paired_t(d)
        assert (r.ci_low > 0 or r.ci_high < 0) == (r.p_value < 0.05)


def test_paired_t_degenerate_inputs():
    assert math.isnan(stats.paired_t([]).mean) and stats.paired_t([]).n == 0
    one = stats.paired_t([0.02])
    assert one.mean == 0.02 and math.isnan(one.p_value) and math.isnan(one.ci_low)
    same = stats.paired_t([0.02] * 5)
    assert same.p_value == 0.0 and same.ci_low == pytest.approx(0.02) and same.ci_high == pytest.approx(0.02)
    zero = stats.paired_t([0.0] * 5)
    assert zero.p_value == 1.0


def test_the_issue_example_no_longer_contradicts_itself():
    """GAP head at n = 2 (+1.34, +4.41 pp): no interval, and the p of a t-test on 2 pairs."""
    diffs = stats.paired_differences(_runs([0.0134, 0.0441]), metrics=("uar",))
    row = diffs.iloc[0]
    assert math.isnan(row["ci_low"]) and row["n"] == 2
    t = 0.02875 / (abs(0.0441 - 0.0134) / math.sqrt(2) / math.sqrt(2))
    assert row["t_stat"] == pytest.approx(t) and row["p_value"] == pytest.approx(_p_by_integration(t, 1), abs=1e-6)
    assert row["p_value"] > 0.05


# ---------------------------------------------------------------------------------------------
# Holm


def test_holm_on_known_pvalues():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.3, 0.9]).tolist() == pytest.approx([0.6, 0.9])
    assert stats.holm([0.6, 0.7]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1, then kept monotone
    out = stats.holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[[0, 2]].tolist() == pytest.approx([0.02, 0.02])  # m = 2, NaN left out
    assert stats.holm([]).size == 0


def test_holm_families_are_one_table_per_metric_and_reference():
    rng = np.random.default_rng(1)
    parts = []
    for model in ("ifdd_tiny", "ifdd_tiny_pretext"):
        for variant in ("gap", "baseline", "no_ladm"):
            part = _runs(rng.normal(-0.02, 0.02, size=6), variant=variant, model=model, war_shift=0.01)
            parts.append(part if variant == "gap" else part[part["variant"] != "full"])
    diffs = stats.paired_differences(pd.concat(parts, ignore_index=True))
    assert len(diffs) == 2 * 3 * 2 and diffs["holm_family_size"].eq(3).all()
    for _, family in diffs.groupby(["reference_model", "metric"]):
        assert family["p_holm"].to_numpy() == pytest.approx(stats.holm(family["p_value"].to_numpy()))
        assert (family["p_holm"] >= family["p_value"] - 1e-15).all()
    table = tables.stats_table(diffs)
    md = markup.to_markdown(table)
    assert "p (Holm-adj.)" in md and "Holm-adjusted over the comparisons of this table" in md
    assert "3 UAR comparisons with IFDD (full) [ifdd_tiny]" in md


def test_bold_follows_the_adjusted_p():
    effects = {"gap": [0.02, 0.03, 0.025, 0.018, 0.04], "baseline": [0.01, 0.03, 0.002, 0.02, 0.025],
               "no_ladm": [0.05, 0.06, 0.055, 0.052, 0.058], "no_issm": [0.0, 0.01, -0.01, 0.005, 0.002]}
    parts = []
    for variant, d in effects.items():
        part = _runs(d, variant=variant)
        parts.append(part if variant == "gap" else part[part["variant"] != "full"])
    diffs = stats.paired_differences(pd.concat(parts, ignore_index=True), metrics=("uar",))
    baseline = diffs[diffs["variant"] == "baseline"].iloc[0]
    # unadjusted p < 0.05 and an interval above 0, but not significant once the 4 comparisons are adjusted
    assert baseline["p_value"] < 0.05 < baseline["p_holm"] and baseline["ci_low"] > 0
    table = tables.stats_table(diffs)
    bold = {row[1].text: row[-1].bold for row in table.blocks[0].rows}
    assert bold == {"GAP head": True, "Baseline (lazy split)": False, "+ISSM": True, "+LADM +L_lift": False}
    assert "an interval may exclude 0 while its adjusted p is ≥ 0.05" in " ".join(table.notes)


# ---------------------------------------------------------------------------------------------
# over test clips: bootstrap kept, labelled as holding the trained models fixed


def test_clip_table_is_labelled_as_holding_the_models_fixed():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 15)
    rows = [("full", 1, labels, np.where(rng.random(60) < 0.5, labels, (labels + 1) % 4))]
    for variant in ("gap", "baseline", "no_ladm"):
        rows.append((variant, 1, labels, np.where(rng.random(60) < 0.7, labels, (labels + 1) % 4)))
    diffs = stats.clip_paired_differences(_predictions(rows), n_resamples=500)
    assert list(diffs.columns) == stats.CLIP_COLUMNS
    assert diffs["ci_method"].str.contains("models fixed").all() and diffs["holm_family_size"].eq(3).all()
    for _, family in diffs.groupby("metric"):
        assert family["p_holm"].to_numpy() == pytest.approx(stats.holm(family["p_value"].to_numpy()))
    table = tables.clip_stats_table(diffs)
    assert "trained models held fixed" in table.caption
    assert "held fixed" in table.notes[0] and "variation between training runs" in table.notes[0]
    assert "p (Holm-adj.)" in markup.to_markdown(table) and "CI (clips)" in markup.to_markdown(table)


def test_run_csv_columns():
    diffs = stats.paired_differences(_runs([0.01, 0.02, 0.03, 0.02, 0.01, 0.0]))
    assert list(diffs.columns) == stats.RUN_COLUMNS
    for gone in ("n_resamples", "p_min"):
        assert gone not in diffs.columns


def test_a_model_as_reference_is_its_full_variant_not_the_mean_of_its_variants():
    """``--reference former_dfer_tiny`` compares with that model's ``full`` runs; its other variants
    (here ``no_sformer``, 0.20 lower) must not be averaged into the reference."""
    rows = []
    for seed in range(2):
        rows += [dict(model="former_dfer_tiny", variant="full", dataset="synth", fold=1, seed=seed, uar=0.60, war=0.6),
                 dict(model="former_dfer_tiny", variant="no_sformer", dataset="synth", fold=1, seed=seed, uar=0.40,
                      war=0.4),
                 dict(model="c3d_tiny", variant="full", dataset="synth", fold=1, seed=seed, uar=0.60, war=0.6)]
    diffs = stats.paired_differences(pd.DataFrame(rows), reference="former_dfer_tiny", metrics=("uar",),
                                     ifdd_models=())
    c3d = diffs[diffs["model"] == "c3d_tiny"].iloc[0]
    assert c3d["mean_diff"] == pytest.approx(0.0) and c3d["n"] == 2
