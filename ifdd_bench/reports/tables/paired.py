"""Paired differences to the reference: over training runs (t-intervals) and over test clips (models held fixed).

Both tables print Δ in percentage points, an interval and a Holm-adjusted p per metric; the
differences come from :mod:`ifdd_bench.reports.stats`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ifdd_bench.reports import stats
from ifdd_bench.reports.markup import Block, Cell, ReportTable, tex_escape
from ifdd_bench.reports.inputs import dataset_name, ifdd_models_in, is_ifdd_model
from ifdd_bench.reports.tables.cells import NOT_DEFINED, p_text, signed_text
from ifdd_bench.reports.tables.labels import DATASET_ORDER, entry_label, entry_sort_key, method_names


def _difference_rows(diffs: pd.DataFrame, names: dict[str, str], counts: Sequence[tuple[str, str]],
                     ci_header: str) -> tuple[list[str], Block, str, list[str]]:
    """Shared body of the two paired-difference tables: header, one row per compared entry.

    ``counts`` are ``(header, diffs column)`` pairs printed after the entry (``("n", "n")``);
    ``ci_header`` names the interval column. Each metric gets Δ, the interval (an em dash where
    none is given) and the Holm-adjusted p (bold below 0.05).
    Returns ``(columns, block, reference label, metrics)``; the "vs" column is the third.
    """
    columns = ["Dataset", "Variant", "vs"] + [header for header, _ in counts]
    metrics = [m for m in ("uar", "war") if m in set(diffs["metric"])]
    for metric in metrics:
        columns += [f"Δ{metric.upper()} (pp)", ci_header, "p (Holm-adj.)"]
    block = Block()
    ref_label = ""
    # two IFDD models (e.g. from scratch and pre-trained) share variant labels: name the model too
    multi = len(ifdd_models_in(diffs, "reference_model")) > 1
    for (ref_model, dataset, model, variant), part in sorted(
            diffs.groupby(["reference_model", "dataset", "model", "variant"]),
            key=lambda kv: (DATASET_ORDER.index(kv[0][1]) if kv[0][1] in DATASET_ORDER else 9, kv[0][0],
                            entry_sort_key(kv[0][2], kv[0][3]))):
        first = part.iloc[0]
        ref_variant = first["reference"] if is_ifdd_model(ref_model) else "full"
        ref_label = entry_label(ref_model, ref_variant, names=names, with_model=multi)
        row = [Cell(dataset_name(dataset)),
               Cell(entry_label(model, variant, names=names, with_model=multi),
                    entry_label(model, variant, names=names, with_model=multi, tex=True)),
               Cell(ref_label, entry_label(ref_model, ref_variant, names=names, with_model=multi, tex=True))]
        row += [Cell(f"{int(first[column]):,}") for _, column in counts]
        for metric in metrics:
            r = part[part["metric"] == metric].iloc[0]
            diff = "" if np.isnan(r["mean_diff"]) else signed_text(100 * r["mean_diff"])
            if np.isnan(r["ci_low"]):
                ci = NOT_DEFINED if not np.isnan(r["mean_diff"]) else ""
            else:
                ci = f"[{signed_text(100 * r['ci_low'])}, {signed_text(100 * r['ci_high'])}]"
            p = r["p_holm"]
            row += [Cell(diff), Cell(ci), Cell(p_text(p), bold=bool(not np.isnan(p) and p < 0.05))]
        block.rows.append(row)
    return columns, block, ref_label, metrics


def _holm_note(diffs: pd.DataFrame, names: dict[str, str]) -> str:
    """Which p-values were Holm-adjusted together: per metric and reference, with the family sizes."""
    multi = len(ifdd_models_in(diffs, "reference_model")) > 1
    families = []
    for (ref_model, reference, metric), part in diffs.groupby(list(stats.HOLM_FAMILY), sort=False):
        ref_variant = reference if is_ifdd_model(ref_model) else "full"
        label = entry_label(ref_model, ref_variant, names=names, with_model=multi)
        families.append(f"{int(part['holm_family_size'].max())} {metric.upper()} comparisons with {label}")
    return ("p: Holm-adjusted over the comparisons of this table, one family per metric and reference "
            f"({'; '.join(dict.fromkeys(families))}); bold: adjusted p < 0.05. The intervals are not adjusted, "
            "so an interval may exclude 0 while its adjusted p is ≥ 0.05.")


def _entry_count_note(diffs: pd.DataFrame, column: str, prefix: str) -> list[str]:
    """``[prefix + "model:variant on dataset (count), ..."]`` for entries whose ``column`` is > 0, else ``[]``."""
    counts = diffs.groupby(["model", "variant", "dataset"])[column].first()
    if not (counts > 0).any():
        return []
    return [prefix + ", ".join(f"{m}:{v} on {d} ({int(k)})" for (m, v, d), k in counts.items() if k > 0) + "."]


def _drop_single_reference(diffs: pd.DataFrame, columns: list[str], align: str,
                           block: Block) -> tuple[list[str], str]:
    """With one reference it is named in the caption: drop the "vs" column (the third)."""
    if diffs["reference_model"].nunique() > 1:
        return columns, align
    for row in block.rows:
        del row[2]
    return columns[:2] + columns[3:], align[:2] + align[3:]


def stats_table(diffs: pd.DataFrame, *, literature: pd.DataFrame | None = None) -> ReportTable:
    """Paired differences to the reference over runs (percentage points): t-intervals, Holm-adjusted p.

    ``diffs`` comes from :func:`ifdd_bench.reports.stats.paired_differences`. Entries with fewer
    than the minimum pairs get no interval (an em dash) and a note saying why.
    """
    names = method_names(literature)
    confidence = float(diffs["confidence"].iloc[0]) if len(diffs) else 0.95
    level = f"{int(round(confidence * 100))}%"
    columns, block, ref_label, metrics = _difference_rows(diffs, names, [("n", "n")], f"{level} t-CI")
    notes = [
        "Δ = variant − reference in percentage points, mean over the n (fold, seed) cells both have "
        f"(paired). CI: {level} paired t-interval of the mean difference, Δ ± t(n−1)·s/√n, "
        f"given from {stats.MIN_PAIRS_FOR_INTERVAL} pairs on. "
        "Variation covered: between training runs (seeds, folds) and their test sets.",
        _holm_note(diffs, names) + " Unadjusted p: two-sided paired t-test, exact if the differences are "
        "normally distributed (paired_differences.csv, p_value).",
    ]
    few = diffs[(diffs["n"] >= 1) & (diffs["n"] < stats.MIN_PAIRS_FOR_INTERVAL)]
    if not few.empty:
        counts = ", ".join(f"n={n}" for n in sorted({int(n) for n in few["n"]}))
        notes.append(f"{NOT_DEFINED} ({counts}): fewer than {stats.MIN_PAIRS_FOR_INTERVAL} pairs, no interval: "
                     "with so few runs the interval's width rests on a standard deviation estimated from "
                     "2–4 values and on a normality assumption they cannot check; their p rests on the same "
                     "assumption. Add seeds or folds.")
    if (diffs["n"] == 1).any():
        notes.append("Entries with a single pair have neither interval nor p.")
    notes += _entry_count_note(diffs, "unpaired",
                               "(fold, seed) cells that only one side of a comparison has, entry or reference (ignored): ")
    columns, align = _drop_single_reference(diffs, columns, "lllr" + "rcr" * len(metrics), block)
    return ReportTable(
        key="stats", caption=f"Paired differences to {ref_label or 'the reference'} over training runs.",
        columns=columns, columns_tex=[tex_escape(c) for c in columns], align=align, blocks=[block],
        notes=notes, wide=True, colsep="4pt", source="runs.csv",
    )


#: what the clip-level table can and cannot say (a table note, also printed by the CLI)
CLIP_STATS_CAVEAT = ("The trained models are held fixed: the interval and p show whether a gap is larger than "
                     "test-set sampling alone would produce between these trained models. They do not include the "
                     "variation between training runs (seeds, folds), which the table of paired differences over "
                     "runs measures.")


def clip_stats_table(diffs: pd.DataFrame, *, literature: pd.DataFrame | None = None) -> ReportTable:
    """Paired differences to the reference over test clips (trained models held fixed), from predictions."""
    names = method_names(literature)
    confidence = float(diffs["confidence"].iloc[0]) if len(diffs) else 0.95
    level = f"{int(round(confidence * 100))}%"
    n_res = int(diffs["n_resamples"].iloc[0]) if len(diffs) else 10_000
    columns, block, ref_label, metrics = _difference_rows(
        diffs, names, [("cells", "cells"), ("clips", "clips")], f"{level} CI (clips)")
    notes = [
        CLIP_STATS_CAVEAT,
        "Δ = variant − reference in percentage points on the test clips both runs predicted, paired clip by "
        "clip within each (fold, seed) cell and averaged over the cells. "
        f"CI: {level} percentile bootstrap over test clips, resampled within each "
        f"class (class supports fixed), {n_res:,} resamples, seeded. Unadjusted p: two-sided swap test (each "
        f"clip's two predictions exchanged with probability 1/2, {n_res:,} times; "
        "clip_paired_differences.csv, p_value).",
        _holm_note(diffs, names),
    ]
    notes += _entry_count_note(diffs, "skipped_cells", "Cells whose two runs predicted different test clips "
                                                      "(ignored): ")
    columns, align = _drop_single_reference(diffs, columns, "lllrr" + "rcr" * len(metrics), block)
    return ReportTable(
        key="stats_clips",
        caption=f"Paired differences to {ref_label or 'the reference'} over test clips (trained models held fixed).",
        columns=columns, columns_tex=[tex_escape(c) for c in columns], align=align, blocks=[block],
        notes=notes, wide=True, colsep="4pt", source="runs/<run_id>/predictions.csv",
    )
