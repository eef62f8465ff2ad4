"""Every entry against the controls without a temporal module: paired ΔUAR over runs, a column group per control.

The controls (:data:`ifdd_bench.reports.stats.CONTROLS`) have no temporal module: the static
control classifies each frame on its own, and IFDD's GAP head averages the backbone's tokens over
time and space before its classifier (only the backbone's short temporal kernels see motion). An
entry that uses the dynamics should sit above them over runs; this table says by how much, with
the paired interval and a Holm-adjusted p.
The differences come from :func:`ifdd_bench.reports.stats.control_differences`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ifdd_bench.reports import stats
from ifdd_bench.reports.inputs import VARIANTS_BY_KEY, dataset_name, ifdd_models_in, is_ifdd_model
from ifdd_bench.reports.markup import Block, Cell, ReportTable, tex_escape
from ifdd_bench.reports.tables.cells import NOT_DEFINED, p_text, signed_text
from ifdd_bench.reports.tables.labels import entry_label, entry_sort_key, method_names, ordered_datasets


def control_label(control: str, names: dict[str, str], *, tex: bool = False) -> str:
    """How a control is named in headers and sentences: the label of an IFDD variant (``gap`` ->
    ``GAP head``), else of a model's ``full`` entry (``static_control``)."""
    model = "ifdd" if control in VARIANTS_BY_KEY else control
    variant = control if control in VARIANTS_BY_KEY else "full"
    return entry_label(model, variant, names=names, tex=tex)


def _pair_cells(row: pd.Series | None, n_max: int) -> list[Cell]:
    """``Δ [low, high]`` and the Holm-adjusted p of one comparison (two empty cells when there is none
    or when the entry shares no (fold, seed) cell with the control); ``(n=k)`` after Δ when the
    comparison has fewer pairs than the table's most."""
    if row is None or int(row["n"]) == 0:
        return [Cell(""), Cell("")]
    diff = signed_text(100 * row["mean_diff"])
    if np.isnan(row["ci_low"]):
        text = f"{diff} {NOT_DEFINED}"
    else:
        text = f"{diff} [{signed_text(100 * row['ci_low'])}, {signed_text(100 * row['ci_high'])}]"
    if int(row["n"]) < n_max:
        text += f" (n={int(row['n'])})"
    bold = bool(not np.isnan(row["ci_low"]) and (row["ci_low"] > 0 or row["ci_high"] < 0))
    return [Cell(text, tex_escape(text), bold=bold), Cell(p_text(row["p_holm"]))]


def controls_table(diffs: pd.DataFrame, *, literature: pd.DataFrame | None = None) -> ReportTable:
    """ΔUAR of every non-control entry against each control, from :func:`stats.control_differences`.

    One row per (dataset, entry); per control present: Δ with its paired t-interval (bold when the
    interval excludes 0; the number of pairs when it is below the table's most) and the
    Holm-adjusted p. An IFDD entry is paired
    with the GAP head of its own model; a baseline with the GAP head only when one IFDD model is in
    the results (otherwise the cell stays empty).
    """
    names = method_names(literature)
    part = diffs[diffs["metric"] == "uar"]
    controls = [c for c in stats.CONTROLS if c in set(part["reference"])]
    controls += sorted(set(part["reference"]) - set(controls))
    datasets = ordered_datasets(part["dataset"].unique())
    ifdd_models = ifdd_models_in(part, "reference_model")
    multi = len(ifdd_models) > 1
    confidence = float(part["confidence"].iloc[0]) if len(part) else 0.95
    n_max = int(part["n"].max()) if len(part) else 0
    level = f"{int(round(confidence * 100))}%"
    columns = ["Dataset"] if len(datasets) > 1 else []
    columns += ["Variant"]
    groups = [("", len(columns))]
    for control in controls:
        columns += [f"ΔUAR [{level} CI]", "p Holm"]
        groups.append((f"vs {control_label(control, names)}:", 2))
    block = Block()
    for dataset in datasets:
        here = part[part["dataset"] == dataset]
        entries = sorted({(m, v) for m, v in zip(here["model"], here["variant"])}, key=lambda e: entry_sort_key(*e))
        for model, variant in entries:
            rows = here[(here["model"] == model) & (here["variant"] == variant)]
            cells = [Cell(dataset_name(dataset))] if len(datasets) > 1 else []
            cells.append(Cell(entry_label(model, variant, names=names, with_model=multi),
                              entry_label(model, variant, names=names, with_model=multi, tex=True)))
            for control in controls:
                match = rows[rows["reference"] == control]
                if is_ifdd_model(model) and control not in set(match["reference_model"]):  # a variant control
                    match = match[match["reference_model"] == model]  # (gap): this model's own
                cells += _pair_cells(match.iloc[0] if len(match) == 1 else None, n_max)
            block.rows.append(cells)
    notes = [
        f"Δ = entry − control in percentage points, mean over the n = {n_max} (fold, seed) cells both have "
        "(paired; a smaller n is given in the cell, an empty cell means no cell in common); "
        f"{level} paired t-interval, Δ ± t(n−1)·s/√n, given from {stats.MIN_PAIRS_FOR_INTERVAL} pairs on; bold: "
        "the interval excludes 0 (what this report calls clearly above or below a control).",
        "p Holm: two-sided paired t-test, Holm-adjusted over the entries compared with one control; the "
        "intervals are not adjusted.",
        "Controls: the static control classifies each frame alone and averages the frame logits (it sees "
        "neither order nor motion); the GAP head averages its backbone's tokens over time and space before the "
        "classifier, so only the backbone's short temporal kernels see motion (an IFDD entry is paired with its "
        "own model's GAP head). The temporal-reliance table shows whether each loses accuracy on shuffled frames.",
        "Variation covered: between training runs (seeds, folds) and their test sets. Being above a control "
        "does not say which component reads the dynamics.",
    ]
    align = ("l" if len(datasets) > 1 else "") + "l" + "cr" * len(controls)
    return ReportTable(
        key="controls",
        caption="Every entry against the controls without a temporal module (paired over training runs).",
        columns=columns, columns_tex=[tex_escape(c) for c in columns], align=align, blocks=[block],
        groups=groups, notes=notes, wide=True, colsep="4pt", source="runs.csv",
    )
