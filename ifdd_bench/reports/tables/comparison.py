"""Our rows (the IFDD reference variant and baselines) against reported literature rows, sources cited."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ifdd_bench.reports import stats
from ifdd_bench.reports.markup import Block, Cell, ReportTable
from ifdd_bench.reports.inputs import dataset_name, entry_key, is_ifdd_model
from ifdd_bench.reports.tables.cells import (append_uar_war, bold_best, distinct_texts, fmt_compute, fmt_params,
                                             fmt_percent)
from ifdd_bench.reports.tables.compute import ProfileMatch, compute_notes, find_profile
from ifdd_bench.reports.tables.labels import (entry_label, entry_sort_key, method_names, ordered_datasets,
                                              short_source, short_venue, source_legend)
from ifdd_bench.reports.tables.protocol import protocol_notes

LITERATURE_DATASETS = ("dfew", "ferv39k", "mafw")


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
            append_uar_war(row, values, len(flat), agg, m, v, d)
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
