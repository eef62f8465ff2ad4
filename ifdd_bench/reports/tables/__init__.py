"""Paper-ready tables from the results CSVs: LaTeX (booktabs) and Markdown (pandas only, no torch).

A builder returns a :class:`~ifdd_bench.reports.markup.ReportTable` (header, blocks of rows of
cells, notes), written by ``to_latex`` / ``to_markdown`` (:mod:`ifdd_bench.reports.markup`) and
printed by the CLI with rich. This package only names the public API; the modules:

* ``ablation``   :func:`ablation_table`: IFDD component combinations with check marks (then knob
  variants, then baselines under the same protocol) x UAR/WAR per dataset, Params, GMACs
* ``comparison`` :func:`comparison_table`: our rows against reported literature rows, sources cited
* ``per_class``  :func:`per_class_table`: per-class test recall of every variant on one dataset;
  :func:`absent_class_note` for classes missing from test splits
* ``complexity`` :func:`complexity_table`: reported vs measured params and compute
* ``paired``     :func:`stats_table`: paired differences to the reference over training runs
  (t-intervals from 5 pairs on, Holm-adjusted p); :func:`clip_stats_table`: the same over test
  clips with the trained models held fixed (clip bootstrap interval, swap-test p)
* ``controls``   :func:`controls_table`: every entry against the controls without a temporal
  module (static control, GAP head), paired over runs
* ``temporal``   :func:`temporal_table`: ΔUAR per perturbation of the frame order (probes.csv), with
  t-intervals over runs from 5 runs on (a single run: its clip bootstrap interval)
* ``labels`` (entry labels and order, dataset order, literature source keys), ``cells`` (number
  formats, ``mean ± std`` cells, bold-best), ``compute`` (the profile.csv row behind a compute
  column, its notes), ``protocol`` (each dataset's protocol footnote): what the builders share

Tables print percent as ``mean ± sample std`` over every (fold, seed) run, bold marking the best
mean per metric column, with footnotes stating the protocol, selection rule, folds x seeds, and
the counter, unit, input and views of the compute column. The LaTeX needs
``\\usepackage{booktabs,amssymb}``.

Example::

    >>> from ifdd_bench.reports import inputs, tables
    >>> runs = inputs.load_runs("results/runs.csv")              # doctest: +SKIP
    >>> from ifdd_bench.reports.markup import to_markdown
    >>> print(to_markdown(tables.ablation_table(runs, model="ifdd_tiny")))  # doctest: +SKIP
"""

from ifdd_bench.reports.tables.ablation import CHECK, CHECK_TEX, CROSS, CROSS_TEX, ablation_table
from ifdd_bench.reports.tables.cells import NOT_DEFINED, fmt_compute, fmt_params, fmt_percent, pm_cell
from ifdd_bench.reports.tables.comparison import LITERATURE_DATASETS, comparison_table
from ifdd_bench.reports.tables.complexity import complexity_table
from ifdd_bench.reports.tables.controls import control_label, controls_table
from ifdd_bench.reports.tables.compute import ProfileMatch, find_profile
from ifdd_bench.reports.tables.labels import (DATASET_ORDER, SOURCE_KEYS, entry_label, entry_sort_key, method_names,
                                              ordered_datasets, short_source, short_venue, source_legend)
from ifdd_bench.reports.tables.paired import CLIP_STATS_CAVEAT, clip_stats_table, stats_table
from ifdd_bench.reports.tables.per_class import absent_class_note, absent_classes, per_class_table
from ifdd_bench.reports.tables.protocol import SELECTION_TEXT, protocol_notes
from ifdd_bench.reports.tables.temporal import temporal_table

__all__ = [
    # builders
    "ablation_table", "comparison_table", "per_class_table", "complexity_table", "stats_table", "clip_stats_table",
    "temporal_table", "controls_table",
    # notes and table text
    "absent_class_note", "absent_classes", "protocol_notes", "CLIP_STATS_CAVEAT", "SELECTION_TEXT",
    # labels, order, sources
    "entry_label", "control_label", "entry_sort_key", "method_names", "ordered_datasets", "short_source", "short_venue",
    "source_legend", "DATASET_ORDER", "LITERATURE_DATASETS", "SOURCE_KEYS",
    # cells and formats
    "fmt_compute", "fmt_params", "fmt_percent", "pm_cell", "NOT_DEFINED", "CHECK", "CHECK_TEX", "CROSS", "CROSS_TEX",
    # compute columns
    "ProfileMatch", "find_profile",
]
