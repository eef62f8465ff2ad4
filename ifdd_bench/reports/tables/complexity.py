"""Reported params and compute (literature.csv) next to ours as measured (profile.csv)."""

from __future__ import annotations

import re

import pandas as pd

from ifdd_bench.reports.markup import Block, Cell, ReportTable, tex_escape
from ifdd_bench.reports.tables.cells import distinct_texts, fmt_compute, fmt_params, fmt_percent
from ifdd_bench.reports.tables.compute import find_profile


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
