"""Paper-ready tables from the results CSVs (pandas only, no torch); the builders live in submodules.

This package only names the public API; ``from ifdd_bench.reports import tables`` then
``tables.ablation_table(...)`` is how the renderer, the README writer and the tests call them.
"""

from ifdd_bench.reports.tables.cells import NOT_DEFINED, fmt_compute, fmt_params, fmt_percent, pm_cell
from ifdd_bench.reports.tables.compute import ProfileMatch, find_profile
from ifdd_bench.reports.tables.labels import (DATASET_ORDER, SOURCE_KEYS, entry_label, entry_sort_key, method_names,
                                              ordered_datasets, short_source, short_venue, source_legend)
from ifdd_bench.reports.tables.paired import (
    CHECK, CHECK_TEX, CLIP_STATS_CAVEAT, CROSS, CROSS_TEX, LITERATURE_DATASETS, ablation_table, absent_class_note,
    absent_classes, clip_stats_table, comparison_table, complexity_table, per_class_table, stats_table)
from ifdd_bench.reports.tables.protocol import SELECTION_TEXT, protocol_notes

__all__ = [
    "CHECK", "CHECK_TEX", "CLIP_STATS_CAVEAT", "CROSS", "CROSS_TEX", "DATASET_ORDER", "LITERATURE_DATASETS",
    "NOT_DEFINED", "SELECTION_TEXT", "SOURCE_KEYS", "ProfileMatch", "ablation_table", "absent_class_note",
    "absent_classes", "clip_stats_table", "comparison_table", "complexity_table", "entry_label",
    "entry_sort_key", "find_profile", "fmt_compute", "fmt_params", "fmt_percent", "method_names",
    "ordered_datasets", "per_class_table", "pm_cell", "protocol_notes", "short_source", "short_venue",
    "source_legend", "stats_table",
]
