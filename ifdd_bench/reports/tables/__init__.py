"""Paper-ready tables from the results CSVs (pandas only, no torch); the builders live in submodules.

This package only names the public API; ``from ifdd_bench.reports import tables`` then
``tables.ablation_table(...)`` is how the renderer, the README writer and the tests call them.
"""

from ifdd_bench.reports.tables.paired import (
    CHECK, CHECK_TEX, CLIP_STATS_CAVEAT, CROSS, CROSS_TEX, DATASET_ORDER, LITERATURE_DATASETS, NOT_DEFINED,
    SELECTION_TEXT, SOURCE_KEYS, ProfileMatch, ablation_table, absent_class_note, absent_classes,
    clip_stats_table, comparison_table, complexity_table, entry_label, entry_sort_key, find_profile,
    fmt_compute, fmt_params, fmt_percent, method_names, ordered_datasets, per_class_table, pm_cell,
    protocol_notes, short_source, short_venue, source_legend, stats_table)

__all__ = [
    "CHECK", "CHECK_TEX", "CLIP_STATS_CAVEAT", "CROSS", "CROSS_TEX", "DATASET_ORDER", "LITERATURE_DATASETS",
    "NOT_DEFINED", "SELECTION_TEXT", "SOURCE_KEYS", "ProfileMatch", "ablation_table", "absent_class_note",
    "absent_classes", "clip_stats_table", "comparison_table", "complexity_table", "entry_label",
    "entry_sort_key", "find_profile", "fmt_compute", "fmt_params", "fmt_percent", "method_names",
    "ordered_datasets", "per_class_table", "pm_cell", "protocol_notes", "short_source", "short_venue",
    "source_legend", "stats_table",
]
