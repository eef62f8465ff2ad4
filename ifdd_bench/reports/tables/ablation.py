"""The IFDD ablation table: check-mark rows x (UAR, WAR per dataset, Params, GMACs)."""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from ifdd_bench.reports import stats
from ifdd_bench.reports.markup import Block, Cell, ReportTable
from ifdd_bench.reports.inputs import VARIANTS_BY_KEY, dataset_name, entry_key, ifdd_models_in, is_ifdd_model
from ifdd_bench.reports.tables.cells import append_uar_war, bold_best, distinct_texts, fmt_compute, fmt_params
from ifdd_bench.reports.tables.compute import ProfileMatch, compute_notes, find_profile
from ifdd_bench.reports.tables.labels import entry_label, entry_sort_key, method_names, ordered_datasets
from ifdd_bench.reports.tables.protocol import protocol_notes

CHECK, CROSS = "✓", "✗"
CHECK_TEX, CROSS_TEX = r"\checkmark", r"$\times$"


def _count_note(agg: pd.DataFrame, marked: set[str]) -> str:
    folds, seeds, n = agg["folds"].max(), agg["seeds"].max(), agg["n"].max()
    text = (f"UAR / WAR on the test split in %, mean ± sample std over {int(folds)} fold(s) × {int(seeds)} "
            f"seed(s) = {int(n)} runs per row; bold: best mean per column.")
    if marked:
        text += " † fewer runs: " + ", ".join(sorted(marked)) + "."
    if n < 2:
        text += " Single runs have no std."
    return text


def ablation_table(runs: pd.DataFrame, *, model: str | None = None, profile: pd.DataFrame | None = None,
                   literature: pd.DataFrame | None = None, extra_notes: Sequence[str] = ()) -> ReportTable:
    """The IFDD ablation table: check-mark rows x (UAR, WAR per dataset, Params, GMACs).

    Rows: IFDD component combinations in paper order, then knob variants of the full model, then
    baselines trained under the same protocol (rendered under their method name). ``model``
    picks the IFDD model when ``runs`` holds several (default: the first in alphabetical order).
    """
    ifdd_models = ifdd_models_in(runs)
    model = model or (ifdd_models[0] if ifdd_models else None)
    part = runs[(runs["model"] == model) | ~runs["model"].map(is_ifdd_model)]
    datasets = ordered_datasets(part["dataset"].unique())
    agg = stats.aggregate(part)
    names = method_names(literature)
    entries = sorted({(m, v) for m, v in zip(part["model"], part["variant"])}, key=lambda e: entry_sort_key(*e))
    max_n = agg.groupby("dataset")["n"].max().to_dict()

    columns = ["Variant", "ISSM", "LADM", "L_lift"]
    columns_tex = ["Variant", "ISSM", "LADM", r"$\mathcal{L}_{\mathrm{lift}}$"]
    groups: list[tuple[str, int]] = [("", 4)]
    for d in datasets:
        columns += ["UAR", "WAR"]
        columns_tex += ["UAR", "WAR"]
        groups.append((dataset_name(d), 2))
    columns += ["Params (M)", "GMACs"]
    columns_tex += ["Params (M)", "GMACs"]
    groups.append(("", 2))

    blocks = {0: Block(title=""), 1: Block(title="Knob variants of the full model"),
              2: Block(title="Baselines, same protocol")}
    flat_rows: list[list[Cell]] = []
    values: dict[tuple[int, int], float] = {}
    marked: set[str] = set()
    matches: dict[str, ProfileMatch | None] = {}
    params_vary: list[str] = []
    for m, v in entries:
        info = VARIANTS_BY_KEY.get(v) if is_ifdd_model(m) else None
        label = entry_label(m, v, names=names)
        label_tex = entry_label(m, v, names=names, tex=True)
        if info is not None:
            marks = [info.split == "issm", info.ladm, info.lift]
            row = [Cell(label, label_tex)] + [Cell(CHECK if x else CROSS, CHECK_TEX if x else CROSS_TEX) for x in marks]
        else:
            row = [Cell(label, label_tex)] + [Cell("", "") for _ in range(3)]
        short = False
        for d in datasets:
            a = append_uar_war(row, values, len(flat_rows), agg, m, v, d)
            if a is not None and a["n"] < max_n.get(d, 0):
                short = True
                marked.add(f"{label} n={int(a['n'])} on {dataset_name(d)}")
        if short:
            row[0] = Cell(row[0].text + " †", (row[0].tex or "") + r"\textsuperscript{\textdagger}")
        rows_mv = part[(part["model"] == m) & (part["variant"] == v)]
        first_dataset = next(d for d in datasets if d in set(rows_mv["dataset"]))
        first = rows_mv[rows_mv["dataset"] == first_dataset]
        params = distinct_texts(first["params"])
        if len(distinct_texts(rows_mv["params"])) > 1:
            params_vary.append(label)
        match = find_profile(profile, m, v, first["frames"].iloc[0], first["size"].iloc[0])
        matches[entry_key(m, v)] = match
        if not params and match is not None:
            params = [str(int(match.params))] if not math.isnan(match.params) else []
        row.append(Cell(fmt_params(float(params[0])) if params else ""))
        row.append(Cell(fmt_compute(match.gmacs) if match is not None else ""))
        flat_rows.append(row)
        block = info.block if info is not None else 2
        blocks[block].rows.append(row)

    metric_cols = [c for c in range(4, 4 + 2 * len(datasets))]
    bold_best(flat_rows, metric_cols, values)

    notes = [_count_note(agg, marked)]
    notes += protocol_notes(part, datasets)
    notes.append("ISSM ✓: content-aware inter-frame split (✗: lazy even/odd split); LADM: lifting-based "
                 "aggregation-disentanglement module; L_lift: lifting loss. GAP head: no split, mean over the "
                 "pyramid tokens.")
    classes = distinct_texts(part["num_classes"])
    notes.append("Params: Σ numel of every parameter of the trained model"
                 + (f" (K = {'/'.join(classes)} classes)" if classes else "") + ", from runs.csv"
                 + (f"; {', '.join(params_vary)}: differs across datasets or runs, the first dataset's value shown."
                    if params_vary else "."))
    hint = "run `ifdd-bench profile " + " ".join(sorted({f'{m}:{v}' for m, v in entries})[:3]) + " ...`"
    notes += compute_notes(matches, hint)
    if runs.attrs.get("duplicates"):
        notes.append(f"{runs.attrs['duplicates']} duplicate row(s) of the same run and train hash were dropped "
                     "(the last one kept).")
    notes += list(extra_notes)
    caption = (f"Ablation of IFDD ({model}) components" if model else "Results") + \
        f" on {', '.join(dataset_name(d) for d in datasets)}."
    return ReportTable(
        key=f"ablation_{model or 'baselines'}", caption=caption, columns=columns, columns_tex=columns_tex,
        align="l" + "c" * 3 + "c" * (2 * len(datasets)) + "rr",
        blocks=[b for b in (blocks[0], blocks[1], blocks[2]) if b.rows], groups=groups, notes=notes,
        wide=len(datasets) > 1, source=runs.attrs.get("path", "runs.csv"),
    )
