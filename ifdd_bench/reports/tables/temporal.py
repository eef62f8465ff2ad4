"""Temporal reliance: how much each model's test UAR drops when the frame order of its clips is perturbed.

One row per entry (model, variant) and dataset, one column per perturbation of ``probes.csv``
(``ifdd-bench eval --perturb``, run for every cell by the default ablation). A cell is the mean
ΔUAR = perturbed − clean over the entry's runs in percentage points, with an interval
(:func:`ifdd_bench.reports.stats.probe_summary`): the t-interval over runs from
:data:`~ifdd_bench.reports.stats.MIN_PAIRS_FOR_INTERVAL` runs on, the run's own clip bootstrap
interval (marked ᶜ) for an entry with one run, and none in between.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ifdd_bench.config import PERTURBATIONS
from ifdd_bench.reports import stats
from ifdd_bench.reports.inputs import dataset_name, ifdd_models_in
from ifdd_bench.reports.markup import Block, Cell, ReportTable, tex_escape
from ifdd_bench.reports.tables.cells import NOT_DEFINED, pm_cell, signed_text
from ifdd_bench.reports.tables.labels import entry_label, entry_sort_key, method_names, ordered_datasets

#: marks an interval that is one run's clip bootstrap (LaTeX: \textsuperscript{c}, by tex_escape)
CLIP_MARK = "ᶜ"

#: what each perturbation tests, for the table's note (docs/probes.md says it at length)
PERTURBATION_NOTES = {
    "shuffle": "frames in a random order (one seeded permutation per clip, never the identity)",
    "reverse": "frames in reverse order",
    "single": "one random frame repeated over the clip (no motion)",
    "freeze-apex": "the sampled frame nearest the expression apex repeated (SynthDFER only)",
    "half-rate": "every second frame dropped and the kept ones shown twice (0, 0, 2, 2, …)",
}


def _delta_cell(row: pd.Series) -> Cell:
    """``−12.34 [−15.10, −9.51]`` (pp); ᶜ after a one-run clip interval; ``—`` when none is given."""
    mean = row["delta_uar_mean"]
    if mean is None or np.isnan(mean):
        return Cell("")
    text = signed_text(100 * mean)
    if np.isnan(row["delta_uar_low"]):
        text += f" {NOT_DEFINED}"
    else:
        text += f" [{signed_text(100 * row['delta_uar_low'])}, {signed_text(100 * row['delta_uar_high'])}]"
        text += CLIP_MARK if row["ci_method"] == stats.PROBE_CLIP_CI else ""
    return Cell(text, tex_escape(text))


def temporal_table(summary: pd.DataFrame, *, literature: pd.DataFrame | None = None) -> ReportTable:
    """The temporal-reliance table from :func:`ifdd_bench.reports.stats.probe_summary`'s frame.

    Columns: Dataset (only when there are several), Variant, n (runs), clean UAR (mean of the
    runs' clean pass), then one ΔUAR cell per perturbation present (:func:`_delta_cell`).
    """
    names = method_names(literature)
    datasets = ordered_datasets(summary["dataset"].unique())
    perturbations = [p for p in PERTURBATIONS if p in set(summary["perturbation"])]
    multi_model = len(ifdd_models_in(summary)) > 1  # two IFDD models share variant labels: name the model
    columns = (["Dataset"] if len(datasets) > 1 else []) + ["Variant", "n", "clean UAR (%)"]
    columns += [f"Δ {p}" for p in perturbations]
    block = Block()
    for dataset in datasets:
        part = summary[summary["dataset"] == dataset]
        entries = sorted({(m, v) for m, v in zip(part["model"], part["variant"])}, key=lambda e: entry_sort_key(*e))
        for model, variant in entries:
            rows = part[(part["model"] == model) & (part["variant"] == variant)].set_index("perturbation")
            first = rows.iloc[0]
            cells = [Cell(dataset_name(dataset))] if len(datasets) > 1 else []
            cells += [Cell(entry_label(model, variant, names=names, with_model=multi_model),
                           entry_label(model, variant, names=names, with_model=multi_model, tex=True)),
                      Cell(f"{int(rows['n'].max())}"), pm_cell(first["clean_uar_mean"], np.nan)]
            cells += [_delta_cell(rows.loc[p]) if p in rows.index else Cell("") for p in perturbations]
            block.rows.append(cells)
    confidence = float(summary["confidence"].iloc[0]) if len(summary) else 0.95
    level = f"{int(round(confidence * 100))}%"
    methods = set(summary["ci_method"])
    notes = [
        "Δ = UAR on the perturbed test clips − UAR on the same clips unperturbed, in percentage points, mean over "
        "the n runs (each run's selected checkpoint on its own test split); clean UAR: mean of the runs' clean pass. "
        "Each perturbation acts on the sampled frames of every view: "
        + "; ".join(f"{p}: {PERTURBATION_NOTES[p]}" for p in perturbations) + ".",
        f"Interval: {level} t-interval over runs, Δ ± t(n−1)·s/√n, from {stats.MIN_PAIRS_FOR_INTERVAL} runs on"
        + (f"; {CLIP_MARK}: an entry with a single run shows that run's {level} percentile bootstrap over its test "
           "clips (resampled within class, model held fixed): test-set sampling only, not the variation between "
           "training runs" if stats.PROBE_CLIP_CI in methods else "")
        + (f"; {NOT_DEFINED}: 2–{stats.MIN_PAIRS_FOR_INTERVAL - 1} runs (n < {stats.MIN_PAIRS_FOR_INTERVAL}), no "
           "interval: its width would rest on a standard deviation from so few values. Add seeds or folds"
           if any(m.startswith("none") for m in methods) else "") + ".",
        "A drop means the predictions depend on the frame order or motion that the perturbation removes; no drop "
        "under shuffle or single means the model reads the label from single frames (or order-free statistics) on "
        "these clips. It does not say which component uses the dynamics, nor that a model which drops uses them "
        "correctly (docs/probes.md).",
    ]
    align = ("l" if len(datasets) > 1 else "") + "lrr" + "r" * len(perturbations)
    caption = "Temporal reliance: ΔUAR when the frame order of the test clips is perturbed"
    caption += "." if len(datasets) > 1 else f" ({dataset_name(datasets[0])})." if datasets else "."
    return ReportTable(
        key="temporal_reliance", caption=caption, columns=columns, columns_tex=[tex_escape(c) for c in columns],
        align=align, blocks=[block], notes=notes, wide=True, resize=len(perturbations) > 3, colsep="4pt",
        source="probes.csv",
    )
