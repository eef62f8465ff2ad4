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


def protocol_notes(runs: pd.DataFrame, datasets: Sequence[str]) -> list[str]:
    """One footnote per dataset: protocol, train hash, epochs, selection rule, views, input size."""
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
            f"input T×H×W = {geometry}.")
    return notes
