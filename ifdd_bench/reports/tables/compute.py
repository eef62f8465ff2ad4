"""The compute columns: the profile.csv row behind a table row's GMACs, and the notes saying how they were counted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ifdd_bench.reports.tables.cells import distinct_texts


@dataclass(frozen=True)
class ProfileMatch:
    """The profile.csv row used for one table row's compute column, and how it was matched."""

    gmacs: float
    gflops: float
    params: float
    counter: str
    counter_version: str
    unit: str
    shape: str  # "1x3x16x112x112"
    views: str
    exact_geometry: bool


def find_profile(profile: pd.DataFrame | None, model: str, variant: str, frames: float | None = None,
                 size: float | None = None) -> ProfileMatch | None:
    """The profile row of (model, variant) for a compute column, preferring the run's input geometry.

    Rows whose MACs are per clip (``gmacs_per_clip``) are all usable; otherwise only batch-1 rows
    (their MACs could be per batch). Rows with a GMACs value and fp32 rows are preferred.
    Returns ``None`` when nothing matches.
    """
    if profile is None:
        return None
    rows = profile[(profile["model"] == model) & (profile["variant"] == variant)]
    rows = rows[rows["per_clip"] | rows["batch"].isna() | (rows["batch"] == 1)]
    per_clip = rows["per_clip"].astype(bool)
    rows = rows[per_clip | rows["mode"].isin(["", "infer", "inference", "eval"])]  # per-clip MACs: any mode
    if rows.empty:
        return None
    exact = rows
    if frames is not None and not np.isnan(frames):
        exact = exact[exact["frames"] == frames]
    if size is not None and not np.isnan(size):
        exact = exact[exact["height"] == size]
    chosen = exact if not exact.empty else rows
    order = chosen.assign(_has=chosen["gmacs"].notna(), _fp32=chosen["precision"].isin(["", "fp32", "float32"]))
    row = order.sort_values(["_has", "_fp32"], ascending=False).iloc[0]
    dims = [row.get(k) for k in ("batch", "channels", "frames", "height", "width")]
    dims = [1 if (k == 0 and (d is None or np.isnan(d))) else d for k, d in enumerate(dims)]
    shape = "x".join(str(int(d)) if d is not None and not np.isnan(d) else "?" for d in dims)
    views = distinct_texts([row.get("views")])
    return ProfileMatch(
        gmacs=float(row["gmacs"]), gflops=float(row["gflops"]), params=float(row["params"]),
        counter=str(row.get("counter", "")), counter_version=str(row.get("counter_version", "")),
        unit=str(row.get("unit", "")), shape=shape, views=views[0] if views else "1",
        exact_geometry=not exact.empty,
    )


def compute_notes(matches: dict[str, ProfileMatch | None], missing_hint: str) -> list[str]:
    """Footnotes stating counter, unit, input and views of the GMACs column (or why it is empty)."""
    found = {k: m for k, m in matches.items() if m is not None and not math.isnan(m.gmacs)}
    notes = []
    if found:
        counters = distinct_texts(f"{m.counter} {m.counter_version}".strip() for m in found.values())
        units = distinct_texts(m.unit for m in found.values())
        shapes = distinct_texts(m.shape for m in found.values())
        views = distinct_texts(m.views for m in found.values())
        notes.append(
            f"GMACs: {', '.join(counters) or 'counter not recorded'} count of multiply-accumulates per clip "
            f"(unit: {', '.join(units) or 'not recorded'}), input B×C×T×H×W = {', '.join(shapes)}, "
            f"{', '.join(views)} view(s), from profile.csv; FLOPs ≈ 2 × MACs.")
        off = [k for k, m in found.items() if not m.exact_geometry]
        if off:
            notes.append(f"GMACs of {', '.join(off)} were profiled at a different input than the runs.")
    missing = [k for k, m in matches.items() if m is None or math.isnan(m.gmacs)]
    if missing:
        notes.append(f"GMACs empty for {', '.join(missing)}: no usable row in profile.csv ({missing_hint}).")
    return notes
