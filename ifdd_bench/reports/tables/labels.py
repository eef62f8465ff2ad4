"""How table rows, datasets and literature sources are named and ordered.

Entry labels (the paper-style IFDD variant label, a baseline under its published method name),
the order of entries and of datasets, and the source keys of literature.csv with their legend.
"""

from __future__ import annotations

import re
from typing import Iterable

import pandas as pd

from ifdd_bench.reports.markup import tex_escape
from ifdd_bench.reports.inputs import DATASET_NAMES, VARIANT_ORDER, VARIANTS_BY_KEY, is_ifdd_model

DATASET_ORDER = tuple(DATASET_NAMES)  # synth, dfew, ferv39k, mafw, then anything else


def entry_sort_key(model: str, variant: str) -> tuple:
    """IFDD variants in paper order first, then other models alphabetically."""
    if is_ifdd_model(model):
        return (0, model, VARIANT_ORDER.get(variant, 99), variant)
    return (1, model, 0 if variant == "full" else 1, variant)


def method_names(literature: pd.DataFrame | None) -> dict[str, str]:
    """Published method name of each registry key in ``literature.csv`` (``former_dfer`` -> ``Former-DFER``)."""
    if literature is None:
        return {}
    names = {}
    for row in literature.itertuples(index=False):
        if row.model_key and row.model_key not in names:
            names[row.model_key] = re.sub(r"\s*\(.*\)$", "", str(row.method)).strip() or row.model_key
    return names


def entry_label(model: str, variant: str, *, names: dict[str, str] | None = None, with_model: bool = False,
                tex: bool = False) -> str:
    """Row label: the paper-style IFDD label, or the baseline's method name (variant if not full)."""
    if is_ifdd_model(model):
        info = VARIANTS_BY_KEY.get(variant)
        label = (info.label_tex if tex else info.label) if info else (tex_escape(variant) if tex else variant)
        if with_model:
            label += f" [{tex_escape(model) if tex else model}]"
        return label
    names = names or {}
    if model in names:
        name = names[model]
    elif model.endswith("_tiny") and model[:-5] in names:
        name = names[model[:-5]] + "-tiny"
    else:
        name = model
    if variant != "full":
        name += f" ({variant})"
    return tex_escape(name) if tex else name


def ordered_datasets(datasets: Iterable[str]) -> list[str]:
    """Known datasets in a fixed order (synth, dfew, ferv39k, mafw), others alphabetically after."""
    datasets = set(datasets)
    known = [d for d in DATASET_ORDER if d in datasets]
    return known + sorted(datasets - set(known))


def short_venue(venue: str) -> str:
    """Venue without its parenthesised remark: ``"CVPR'17 (DFEW-paper baseline)"`` -> ``"CVPR'17"``."""
    return re.sub(r"\s*\(.*\)\s*$", "", str(venue)).strip() or str(venue)


#: what the source keys of literature.csv stand for (the public pages the numbers were read from)
SOURCE_KEYS = {
    "DC": "DFER-CLIP README comparison table (zengqunzhao/DFER-CLIP)",
    "MD": "MAE-DFER README result tables 12-14 for DFEW, FERV39k, MAFW (sunlicai/MAE-DFER)",
    "MDR": "MAE-DFER README text on its released per-fold checkpoints",
    "SV": "SurveyFER README table of video-based DFER methods (wangyanckxx/SurveyFER)",
    "FV": "FERV39k README model zoo (wangyanckxx/FERV39k)",
    "DW": "official DFEW repository README (jiangxingxun/DFEW)",
    "FD": "Former-DFER README (zengqunzhao/Former-DFER)",
    "S2D": "S2D README (MSA-LMC/S2D)",
    "DK": "README of the DK-VLP release (ACM MM 2024)",
    "UL": "UniLearn abstract, arXiv 2409.06154",
    "CE": "CLAIP-Emo abstract, arXiv 2509.14527",
}
_SOURCE_KEY = re.compile(r"\b(DC|MDR|MD(?=\d)|SV|FV|DW|FD|S2D|DK|UL|CE)")


def short_source(text: str) -> str:
    """Source keys of a literature.csv source cell: ``"literature.md §1 (DC, FV); ..."`` -> ``"DC, FV"``."""
    groups = re.findall(r"\(([^()]*)\)", str(text))
    keys = [k.strip() for g in groups for k in g.split(",") if _SOURCE_KEY.match(k.strip())]
    return ", ".join(dict.fromkeys(keys)) if keys else str(text)


def source_legend(cells: Iterable[str]) -> str:
    """One footnote naming every source key that occurs in ``cells``."""
    found = []
    for cell in cells:
        for key in _SOURCE_KEY.findall(str(cell)):
            if key not in found:
                found.append(key)
    if not found:
        return ""
    return "Sources: " + "; ".join(f"{'MD12-14' if k == 'MD' else k} = {SOURCE_KEYS[k]}" for k in found) + "."
