"""Numbers and values as table cells and note text: number formats, ``mean ± std`` cells, bold-best.

Numbers in ``runs.csv`` are fractions; tables print percent with two decimals as
``mean ± sample std``, bold marking the best mean of each metric column (ties at the printed
precision are all bold).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from ifdd_bench.reports import stats
from ifdd_bench.reports.markup import Cell, tex_escape

#: the cell of an interval that is not given (too few pairs) and of a recall that is undefined
NOT_DEFINED = "—"


def fmt_params(params: float) -> str:
    """Parameter count in millions: two decimals, three below 1 M; empty for NaN."""
    if params is None or (isinstance(params, float) and math.isnan(params)):
        return ""
    millions = float(params) / 1e6
    return f"{millions:.2f}" if millions >= 1 else f"{millions:.3f}"


def fmt_compute(value: float) -> str:
    """GMACs / GFLOPs with precision by magnitude (36.0, 8.32, 0.412); empty for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_percent(value: float, digits: int = 2) -> str:
    """A reported percentage (already in %) or empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):.{digits}f}"


def pm_cell(mean: float, std: float, *, digits: int = 2, scale: float = 100.0) -> Cell:
    """``mean ± std`` cell (fractions -> percent)."""
    text = stats.format_pm(mean, std, scale=scale, digits=digits)
    return Cell(text, tex_escape(text))


def append_uar_war(row: list[Cell], values: dict[tuple[int, int], float], row_index: int, agg: pd.DataFrame,
                   model: str, variant: str, dataset: str) -> pd.Series | None:
    """Append the UAR and WAR ``mean ± std`` cells of (model, variant, dataset) to ``row``.

    ``agg`` is :func:`ifdd_bench.reports.stats.aggregate`'s frame; the means go into
    ``values[(row_index, column)]`` for :func:`bold_best`. Without a row two empty cells are
    appended. Returns the aggregate row, or ``None``.
    """
    a = agg[(agg["model"] == model) & (agg["variant"] == variant) & (agg["dataset"] == dataset)]
    if a.empty:
        row += [Cell(""), Cell("")]
        return None
    a = a.iloc[0]
    values[(row_index, len(row))] = a["uar_mean"]
    values[(row_index, len(row) + 1)] = a["war_mean"]
    row += [pm_cell(a["uar_mean"], a["uar_std"]), pm_cell(a["war_mean"], a["war_std"])]
    return a


def bold_best(rows: list[list[Cell]], columns: Iterable[int], values: dict[tuple[int, int], float],
               digits: int = 2, higher: bool = True) -> None:
    """Bold the best value per column (``values[(row, col)]`` are fractions), compared as printed (percent)."""
    for col in columns:
        vals = {r: round(v * 100, digits)
                for (r, c), v in values.items() if c == col and v is not None and not np.isnan(v)}
        if len(vals) < 2:
            continue
        best = max(vals.values()) if higher else min(vals.values())
        for r, v in vals.items():
            if v == best:
                rows[r][col].bold = True


def distinct_texts(values: Iterable[object]) -> list[str]:
    """Distinct non-empty values as text (order kept)."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == "":
            continue
        text = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        if text not in out:
            out.append(text)
    return out


def signed_text(value: float) -> str:
    """``+1.25`` / ``−0.50`` with a typographic minus (differences in the paired tables and the README)."""
    return f"{value:+.2f}".replace("-", "−")


def p_text(p: float) -> str:
    """A p-value as printed: three decimals, ``<0.001`` below; empty for NaN."""
    if p is None or np.isnan(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"
