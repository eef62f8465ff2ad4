"""Per-class test recall of every variant on one dataset, and the notes on classes absent from test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ifdd_bench.reports.markup import Block, Cell, ReportTable, tex_escape
from ifdd_bench.reports.inputs import dataset_name
from ifdd_bench.reports.tables.cells import NOT_DEFINED, bold_best, pm_cell
from ifdd_bench.reports.tables.labels import entry_label, entry_sort_key, method_names, ordered_datasets


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
