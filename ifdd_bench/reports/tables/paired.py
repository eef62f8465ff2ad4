"""Paper-ready tables from the results CSVs: LaTeX (booktabs) and Markdown (pandas only, no torch).

A table is first built as a :class:`~ifdd_bench.reports.markup.ReportTable` (header, blocks of
rows of cells, notes) by one of the builders, then written by ``to_latex`` or ``to_markdown``
(:mod:`ifdd_bench.reports.markup`); the CLI prints the same object with rich.
Builders:

* :func:`ablation_table`   rows = IFDD component combinations with check marks (then knob
  variants, then baselines under the same protocol), columns = UAR/WAR per dataset, Params, GMACs
* :func:`comparison_table` our rows against reported literature rows, sources cited
* :func:`per_class_table`  per-class test recall of every variant on one dataset
* :func:`complexity_table` reported vs measured params and compute
* :func:`stats_table`      paired differences to the reference over training runs: paired t-intervals
  (from 5 pairs on) and Holm-adjusted paired t-test p-values
* :func:`clip_stats_table` the same over test clips with the trained models held fixed (clip bootstrap
  interval, swap-test p, Holm-adjusted), from the runs' predictions

Numbers in ``runs.csv`` are fractions; tables print percent with two decimals as
``mean ± sample std`` over every (fold, seed) run, bold marking the best mean of each metric
column (ties at the printed precision are all bold). Every table carries footnotes stating the
protocol, selection rule, folds x seeds, and the counter, unit, input and views of its compute
column. The LaTeX needs ``\\usepackage{booktabs,amssymb}``.

Example::

    >>> from ifdd_bench.reports import inputs
    >>> runs = inputs.load_runs("results/runs.csv")              # doctest: +SKIP
    >>> from ifdd_bench.reports.markup import to_markdown
    >>> print(to_markdown(ablation_table(runs, model="ifdd_tiny")))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from ifdd_bench.reports import stats
from ifdd_bench.reports.markup import Block, Cell, ReportTable, tex_escape
from ifdd_bench.reports.inputs import VARIANTS_BY_KEY, dataset_name, entry_key, is_ifdd_model
from ifdd_bench.reports.tables.cells import (NOT_DEFINED, bold_best, distinct_texts, fmt_compute, fmt_params,
                                             fmt_percent, pm_cell)
from ifdd_bench.reports.tables.compute import ProfileMatch, compute_notes, find_profile
from ifdd_bench.reports.tables.labels import (DATASET_ORDER, entry_label, entry_sort_key, method_names,
                                              ordered_datasets, short_source, short_venue, source_legend)
from ifdd_bench.reports.tables.protocol import protocol_notes

CHECK, CROSS = "✓", "✗"
CHECK_TEX, CROSS_TEX = r"\checkmark", r"$\times$"
LITERATURE_DATASETS = ("dfew", "ferv39k", "mafw")


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
    ifdd_models = sorted(m for m in runs["model"].unique() if is_ifdd_model(m))
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
            a = agg[(agg["model"] == m) & (agg["variant"] == v) & (agg["dataset"] == d)]
            if a.empty:
                row += [Cell(""), Cell("")]
                continue
            a = a.iloc[0]
            col = len(row)
            values[(len(flat_rows), col)] = a["uar_mean"]
            values[(len(flat_rows), col + 1)] = a["war_mean"]
            row += [pm_cell(a["uar_mean"], a["uar_std"]), pm_cell(a["war_mean"], a["war_std"])]
            if a["n"] < max_n.get(d, 0):
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


def comparison_table(runs: pd.DataFrame, literature: pd.DataFrame | None, *, reference: str = "full",
                     profile: pd.DataFrame | None = None, extra_notes: Sequence[str] = ()) -> ReportTable:
    """Our rows (IFDD ``reference`` variant and baselines) against reported literature rows.

    Columns: Method, Venue, Params (M), G(MAC|FLOP)s, UAR/WAR per dataset (ours plus DFEW, FERV39k
    and MAFW), Source. Literature rows come from ``literature.csv`` as published; only rows with
    a number on a shown dataset or a registry key we ran are listed. When no IFDD run has the
    ``reference`` variant (a sweep without ``full``) the IFDD rows are left out and a note says so.
    """
    names = method_names(literature)
    ifdd_rows = runs["model"].map(is_ifdd_model)
    ours = runs[~ifdd_rows | (runs["variant"] == reference)]
    missing_reference = ifdd_rows.any() and not (ifdd_rows & (runs["variant"] == reference)).any() \
        and reference not in set(runs["model"])
    datasets = ordered_datasets(set(ours["dataset"]) | (set(LITERATURE_DATASETS) if literature is not None else set()))
    agg = stats.aggregate(ours)
    columns = ["Method", "Venue", "Params (M)", "GMACs"]
    columns_tex = ["Method", "Venue", "Params (M)", "GMACs"]
    groups: list[tuple[str, int]] = [("", 4)]
    for d in datasets:
        columns += ["UAR", "WAR"]
        columns_tex += ["UAR", "WAR"]
        groups.append((dataset_name(d), 2))
    columns.append("Source")
    columns_tex.append("Source")
    groups.append(("", 1))

    ours_block, lit_block = Block(), Block(title="Reported in the literature (as published, not re-measured)")
    flat: list[list[Cell]] = []
    values: dict[tuple[int, int], float] = {}
    matches: dict[str, ProfileMatch | None] = {}
    entries = sorted({(m, v) for m, v in zip(ours["model"], ours["variant"])}, key=lambda e: entry_sort_key(*e))
    for m, v in entries:
        rows_mv = ours[(ours["model"] == m) & (ours["variant"] == v)]
        label = entry_label(m, v, names=names, with_model=is_ifdd_model(m))
        match = find_profile(profile, m, v, rows_mv["frames"].iloc[0], rows_mv["size"].iloc[0])
        matches[entry_key(m, v)] = match
        params = distinct_texts(rows_mv["params"])
        row = [Cell(label, entry_label(m, v, names=names, with_model=is_ifdd_model(m), tex=True)),
               Cell("ours"), Cell(fmt_params(float(params[0])) if params else ""),
               Cell(fmt_compute(match.gmacs) if match else "")]
        for d in datasets:
            a = agg[(agg["model"] == m) & (agg["variant"] == v) & (agg["dataset"] == d)]
            if a.empty:
                row += [Cell(""), Cell("")]
                continue
            a = a.iloc[0]
            values[(len(flat), len(row))] = a["uar_mean"]
            values[(len(flat), len(row) + 1)] = a["war_mean"]
            row += [pm_cell(a["uar_mean"], a["uar_std"]), pm_cell(a["war_mean"], a["war_std"])]
        protocols = "/".join(distinct_texts(rows_mv["protocol"]))
        row.append(Cell(f"this run ({protocols}, n={len(rows_mv)})"))
        flat.append(row)
        ours_block.rows.append(row)

    empty_notes: list[str] = []
    if literature is not None:
        our_models = set(runs["model"])
        for lit in literature.itertuples(index=False):
            numbers = {d: (getattr(lit, f"{d}_uar", np.nan), getattr(lit, f"{d}_war", np.nan))
                       for d in datasets if d in LITERATURE_DATASETS}
            has_number = any(not (np.isnan(u) and np.isnan(w)) for u, w in numbers.values())
            key = str(lit.model_key)
            if not has_number and not (key and (key in our_models or is_ifdd_model(key))):
                continue
            row = [Cell(str(lit.method)), Cell(short_venue(lit.venue)), Cell(fmt_percent(lit.params_m, 1)),
                   Cell((fmt_compute(lit.gflops_reported) + "*") if not np.isnan(lit.gflops_reported) else "")]
            for d in datasets:
                u, w = numbers.get(d, (np.nan, np.nan))
                if not np.isnan(u):
                    values[(len(flat), len(row))] = u / 100.0
                if not np.isnan(w):
                    values[(len(flat), len(row) + 1)] = w / 100.0
                row += [Cell(fmt_percent(u)), Cell(fmt_percent(w))]
            source = short_source(lit.source)
            if source == str(lit.source) and len(source) > 16:  # no source key: cite it in a note
                empty_notes.append(f"{lit.method}, source: {source}.")
                source = "see notes"
            row.append(Cell(source))
            if not has_number and lit.note:
                empty_notes.append(f"{lit.method}: {lit.note}")
            flat.append(row)
            lit_block.rows.append(row)
    metric_cols = list(range(4, 4 + 2 * len(datasets)))
    bold_best(flat, metric_cols, values)

    notes = ["Ours: UAR / WAR in %, mean ± sample std over folds × seeds (n runs in the Source column); "
             "reported rows: as published (DFEW and MAFW are 5-fold means), most of them select the checkpoint "
             "on the test fold. Bold: best per column over both groups; an empty cell means not reported / not run."]
    if missing_reference:
        notes.append(f"IFDD rows omitted: no run of the variant {reference!r} this table compares with the "
                     "literature (choose another with --reference).")
    notes += protocol_notes(ours, [d for d in datasets if d in set(ours["dataset"])])
    notes += compute_notes(matches, "run `ifdd-bench profile`")
    if literature is not None:
        notes.append("* Reported compute as published, mostly multiply-accumulates per clip/view counted with "
                     "thop or fvcore and called 'GFLOPs'; counters and views differ per paper (see the "
                     "gflops_unit_note column of ifdd_bench/reports/literature.csv).")
        legend = source_legend(row[-1].text for row in lit_block.rows)
        notes.append((legend + " " if legend else "") + "Full references and conflicting versions: the source "
                     "and note columns of ifdd_bench/reports/literature.csv.")
        notes += empty_notes
    else:
        notes.append("literature.csv not found: reported rows omitted.")
    notes += list(extra_notes)
    return ReportTable(
        key="comparison", caption="Comparison with reported results (UAR / WAR in %).", columns=columns,
        columns_tex=columns_tex, align="llrr" + "c" * (2 * len(datasets)) + "l",
        blocks=[b for b in (ours_block, lit_block) if b.rows], groups=groups, notes=notes, wide=True, resize=True,
        source=runs.attrs.get("path", "runs.csv"),
    )


def absent_classes(per_class: pd.DataFrame) -> pd.DataFrame:
    """Classes with no test clip in some runs (recall undefined, empty in per_class.csv).

    One row per (dataset, class_index, class_name) with ``absent`` (runs without the class) and
    ``runs`` (runs of that dataset); empty when every class is present in every run.
    """
    columns = ["dataset", "class_index", "class_name", "absent", "runs"]
    if per_class is None or per_class.empty or not per_class["recall"].isna().any():
        return pd.DataFrame(columns=columns)
    runs_per_dataset = per_class.groupby("dataset")["run_id"].nunique()
    missing = per_class[per_class["recall"].isna()]
    rows = [dict(dataset=d, class_index=int(ci), class_name=str(name), absent=part["run_id"].nunique(),
                 runs=int(runs_per_dataset[d]))
            for (d, ci, name), part in missing.groupby(["dataset", "class_index", "class_name"])]
    return pd.DataFrame(rows, columns=columns)


def absent_class_note(per_class: pd.DataFrame | None) -> list[str]:
    """A footnote for tables of UAR when a test split lacks a class (else ``[]``): UAR is over classes present."""
    if per_class is None:
        return []
    absent = absent_classes(per_class)
    if absent.empty:
        return []
    parts = []
    for dataset in ordered_datasets(absent["dataset"].unique()):
        rows = absent[absent["dataset"] == dataset]
        parts.append(f"{dataset_name(dataset)}: " + ", ".join(
            f"{r.class_name} (absent in {r.absent} of {r.runs} runs)" for r in rows.itertuples()))
    return ["UAR = mean recall over the classes present in each run's test split; a class with no test clip "
            "has no recall and is left out, not counted as 0. Absent from some test splits (per_class.csv): "
            + "; ".join(parts) + "."]


def per_class_table(per_class: pd.DataFrame, runs: pd.DataFrame, dataset: str, *,
                    literature: pd.DataFrame | None = None) -> ReportTable:
    """Per-class test recall (%, mean ± std over runs) of every variant on one dataset.

    A class with no test clip in a run has no recall there (empty in per_class.csv): mean and std
    are over the runs that have the class, and a cell whose class is absent from every run of its
    variant shows an em dash. The notes say which classes were absent and that UAR averages over the
    classes present.
    """
    names = method_names(literature)
    part = per_class[(per_class["dataset"] == dataset) & per_class["run_id"].isin(set(runs["run_id"]))]
    if part.empty:
        raise ValueError(f"no per-class rows for dataset {dataset!r}")
    classes = (part.drop_duplicates("class_index").sort_values("class_index")[["class_index", "class_name"]])
    agg = (part.groupby(["model", "variant", "class_index"])["recall"]
           .agg(["mean", lambda s: s.std(ddof=1) if s.count() > 1 else np.nan, "count"]).reset_index())
    agg.columns = ["model", "variant", "class_index", "mean", "std", "n"]
    columns = ["Variant"] + [str(c) for c in classes["class_name"]]
    block, flat, values = Block(), [], {}
    undefined = False
    entries = sorted({(m, v) for m, v in zip(part["model"], part["variant"])}, key=lambda e: entry_sort_key(*e))
    for m, v in entries:
        row = [Cell(entry_label(m, v, names=names), entry_label(m, v, names=names, tex=True))]
        for ci in classes["class_index"]:
            a = agg[(agg["model"] == m) & (agg["variant"] == v) & (agg["class_index"] == ci)]
            if a.empty:
                row.append(Cell(""))
                continue
            if a["n"].iloc[0] == 0:  # no run of this variant had a test clip of the class
                row.append(Cell(NOT_DEFINED))
                undefined = True
                continue
            values[(len(flat), len(row))] = a["mean"].iloc[0]
            row.append(pm_cell(a["mean"].iloc[0], a["std"].iloc[0], digits=1))
        flat.append(row)
        block.rows.append(row)
    bold_best(flat, range(1, len(columns)), values, digits=1)
    blocks = [block]
    if "support" in part.columns and part["support"].notna().any():
        support = part.groupby("class_index")["support"].mean()
        blocks.append(Block(rows=[[Cell("test clips per run")] + [
            Cell(f"{support.get(ci, np.nan):.0f}" if not np.isnan(support.get(ci, np.nan)) else "")
            for ci in classes["class_index"]]], title="Support"))
    n = part.groupby(["model", "variant", "class_index"]).size().max()
    notes = [f"Recall of each class on the test split in %, mean ± sample std over up to {int(n)} runs "
             f"(folds × seeds) at the selected checkpoint; bold: best per class. Mean over the classes present "
             f"= UAR."]
    absent = absent_classes(part)
    if not absent.empty:
        listed = ", ".join(f"{r.class_name} ({r.absent} of {r.runs} runs)" for r in absent.itertuples())
        notes.append(f"Classes with no clip in some test splits: {listed}. Their recall is undefined there: "
                     "mean and std are over the runs that have the class"
                     + (f"; {NOT_DEFINED}: absent from every run of that variant" if undefined else "")
                     + ". UAR averages over the classes present in each run, so an absent class is left out, "
                     "not counted as 0.")
    return ReportTable(
        key=f"per_class_{dataset}", caption=f"Per-class recall on {dataset_name(dataset)}.", columns=columns,
        columns_tex=[tex_escape(c) for c in columns], align="l" + "c" * (len(columns) - 1), blocks=blocks,
        notes=notes, wide=len(columns) > 6, source="per_class.csv",
    )


def _unit_cell(note: str, letters: dict[str, str]) -> Cell:
    """A footnote letter standing for a (long, often repeated) reported-unit note."""
    note = str(note).strip()
    if not note:
        return Cell("")
    letter = letters.setdefault(note, "abcdefghijklmnopqrstuvwxyz"[len(letters) % 26])
    return Cell(f"({letter})")


_SHAPE = re.compile(r"(\d+)\s*[x×]\s*(\d+)(?:\s*[x×]\s*(\d+)|²)?")


def _parse_input(text: str) -> tuple[float, float] | None:
    """(frames, size) from ``16x112x112`` / ``16×112²``; ``None`` if unparsable."""
    m = _SHAPE.search(str(text))
    return (float(m.group(1)), float(m.group(2))) if m else None


def complexity_table(literature: pd.DataFrame | None, profile: pd.DataFrame | None) -> ReportTable:
    """Reported params/GFLOPs (literature.csv) next to our measured params/GMACs/GFLOPs (profile.csv).

    One row per registry key that is in either file (variant ``full``); the measured side is the
    per-clip row at the reported input when one exists.
    """
    keys: list[str] = []
    lit_by_key: dict[str, object] = {}
    if literature is not None:
        for row in literature.itertuples(index=False):
            if row.model_key and row.model_key not in lit_by_key:
                lit_by_key[row.model_key] = row
                keys.append(row.model_key)
    if profile is not None:
        for model in profile["model"].astype(str):
            if model not in keys:
                keys.append(model)
    columns = ["Method", "Key", "Input (rep.)", "Params rep. (M)", "Params meas. (M)", "GFLOPs rep.",
               "Unit note", "GMACs meas.", "GFLOPs meas.", "Input meas."]
    block = Block()
    counters, missing = set(), []
    unit_notes: dict[str, str] = {}  # unit note -> footnote letter
    for key in keys:
        lit = lit_by_key.get(key)
        geometry = _parse_input(lit.input) if lit is not None else None
        match = find_profile(profile, key, "full", *(geometry or (None, None)))
        if match is None:
            missing.append(key)
        else:
            counters.add(f"{match.counter} {match.counter_version}".strip())
        block.rows.append([
            Cell(str(lit.method) if lit is not None else key),
            Cell(key, r"\texttt{" + tex_escape(key) + "}"),
            Cell(str(lit.input) if lit is not None else ""),
            Cell(fmt_percent(lit.params_m, 2) if lit is not None else ""),
            Cell(fmt_params(match.params) if match else ""),
            Cell(fmt_compute(lit.gflops_reported) if lit is not None else ""),
            _unit_cell(lit.gflops_unit_note if lit is not None else "", unit_notes),
            Cell(fmt_compute(match.gmacs) if match else ""),
            Cell(fmt_compute(match.gflops) if match else ""),
            Cell(match.shape if match else ""),
        ])
    flop_counters = (distinct_texts(f"{c} {v}".strip()
                                    for c, v in zip(profile["flop_counter"], profile["flop_counter_version"]))
                     if profile is not None else [])
    notes = ["Reported: literature.csv (as published, with its unit note). Measured: profile.csv, per clip at "
             "batch 1 in eval mode; GMACs = multiply-accumulates counted by " + (", ".join(sorted(counters)) or "-") +
             "; GFLOPs = FLOPs (2 per multiply-accumulate) counted by " + (", ".join(flop_counters) or "-") + "."]
    notes += [f"({letter}) {note}" for note, letter in unit_notes.items()]
    if missing:
        notes.append(f"Not profiled yet (measured cells empty): {', '.join(missing)}.")
    if literature is None:
        notes.append("literature.csv not found: reported cells empty.")
    if profile is None:
        notes.append("profile.csv not found: run `ifdd-bench profile --all` to fill the measured cells.")
    return ReportTable(
        key="complexity", caption="Reported vs measured model complexity.", columns=columns,
        columns_tex=[tex_escape(c) for c in columns], align="llcrrrcrrc", blocks=[block], notes=notes,
        wide=True, resize=True,
        source="literature.csv + profile.csv",
    )


def _signed(value: float) -> str:
    """``+1.25`` / ``−0.50`` with a typographic minus."""
    return f"{value:+.2f}".replace("-", "−")


def _p_text(p: float) -> str:
    """A p-value as printed: three decimals, ``<0.001`` below; empty for NaN."""
    if p is None or np.isnan(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


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
    multi = len({m for m in set(diffs["model"]) | set(diffs["reference_model"]) if is_ifdd_model(m)}) > 1
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
            diff = "" if np.isnan(r["mean_diff"]) else _signed(100 * r["mean_diff"])
            if np.isnan(r["ci_low"]):
                ci = NOT_DEFINED if not np.isnan(r["mean_diff"]) else ""
            else:
                ci = f"[{_signed(100 * r['ci_low'])}, {_signed(100 * r['ci_high'])}]"
            p = r["p_holm"]
            row += [Cell(diff), Cell(ci), Cell(_p_text(p), bold=bool(not np.isnan(p) and p < 0.05))]
        block.rows.append(row)
    return columns, block, ref_label, metrics


def _holm_note(diffs: pd.DataFrame, names: dict[str, str]) -> str:
    """Which p-values were Holm-adjusted together: per metric and reference, with the family sizes."""
    multi = len({m for m in set(diffs["model"]) | set(diffs["reference_model"]) if is_ifdd_model(m)}) > 1
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
    notes += _entry_count_note(diffs, "unpaired", "Runs without a partner in the reference (ignored): ")
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
