"""Protocol footnotes: per dataset, the protocol, train hash, epochs, checkpoint rule, views and input of the runs."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ifdd_bench.reports.inputs import dataset_name
from ifdd_bench.reports.tables.cells import distinct_texts

SELECTION_TEXT = {
    "val_uar": "best validation UAR (stratified 10% hold-out of the train fold); test evaluated once there",
    "test_war": "best test WAR over epochs (the IFDD reference rule: selection on the test fold, optimistic)",
}


def last_epoch_share(runs: pd.DataFrame) -> str:
    """How many runs selected their last epoch (``selected_epoch`` counts from 0), as text.

    A run that selects its last epoch was still improving when training stopped; a recipe whose
    runs mostly select an earlier epoch has converged on the selection metric.
    """
    if "selected_epoch" not in runs or "epochs" not in runs:
        return ""
    known = runs.dropna(subset=["selected_epoch", "epochs"])
    if known.empty:
        return ""
    last = int((known["selected_epoch"].astype(int) == known["epochs"].astype(int) - 1).sum())
    return f" The selected epoch was the last one in {last} of {len(known)} run(s)."


def protocol_notes(runs: pd.DataFrame, datasets: Sequence[str]) -> list[str]:
    """One footnote per dataset: protocol, train hash, epochs, selection rule, views, input size, and
    how many runs selected their last epoch."""
    notes = []
    for dataset in datasets:
        part = runs[runs["dataset"] == dataset]
        protocols = distinct_texts(part["protocol"])
        hashes = distinct_texts(part["train_hash"])
        epochs = distinct_texts(part["epochs"])
        selections = distinct_texts(part["selection"])
        views = distinct_texts(part["views"])
        frames, sizes = distinct_texts(part["frames"]), distinct_texts(part["size"])
        sel = "; ".join(SELECTION_TEXT.get(s, s) for s in selections) or "not recorded"
        geometry = (f"{'/'.join(frames) or '?'}×{'/'.join(sizes) or '?'}×{'/'.join(sizes) or '?'}"
                    if frames or sizes else "not recorded")
        notes.append(
            f"{dataset_name(dataset)}: protocol {'/'.join(protocols)} (TrainConfig hash {'/'.join(hashes) or '?'}, "
            f"{'/'.join(epochs) or '?'} epoch(s)), checkpoint = {sel}; {'/'.join(views) or '?'} test view(s), "
            f"input T×H×W = {geometry}.{last_epoch_share(part)}")
    return notes
