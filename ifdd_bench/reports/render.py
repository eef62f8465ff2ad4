"""Render every table and plot of a results folder into an output folder (``ifdd-bench report``).

Reads only CSVs (``runs.csv``, ``per_class.csv``, ``profile.csv``, ``probes.csv``, ``literature.csv``
and the run folders' ``history.csv`` / ``predictions.csv``); never imports torch. Writes, atomically:

* ``<table>.tex`` / ``<table>.md`` for the ablation table(s), comparison, per-class recall,
  reported-vs-measured complexity, paired statistics, every entry against the controls without a
  temporal module, and temporal reliance (probes)
* ``report.md``: every Markdown table and figure in one page, with the command that made it
* ``summary.csv`` (mean/std per model, variant, dataset), ``paired_differences.csv``,
  ``clip_paired_differences.csv``, ``control_differences.csv`` and ``temporal_reliance.csv`` (the probes per entry and
  perturbation), floats written with :data:`CSV_FLOAT_FORMAT` so that a re-render
  on another machine gives the same bytes
* ``plots/*.png`` and ``plots/*.pdf``

When no run has the ``reference`` (a sweep over ``--variants gap``, without ``full``), every table
that needs no reference is still rendered; the paired tables are not, and
``RenderResult.reference_note`` says which runs they would need.

Example::

    >>> result = render_report("results", "runs", "results/report")   # doctest: +SKIP
    >>> [p.name for p in result.files][:2]                           # doctest: +SKIP
    ['ablation_ifdd_tiny.tex', 'ablation_ifdd_tiny.md']
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ifdd_bench import results
from ifdd_bench.atomic import write_text_atomic
from ifdd_bench.errors import BenchError, ConfigError, suggest
from ifdd_bench.reports import inputs, markup, stats, tables
from ifdd_bench.reports.inputs import VARIANTS_BY_KEY, is_ifdd_model

FORMATS = ("latex", "md")
#: floats in the CSVs the report writes: 6 significant digits. Sums and matrix products may differ in
#: the last bits between CPUs (SIMD width, BLAS); rounding far above that keeps the files byte-identical.
CSV_FLOAT_FORMAT = "%.6g"


@dataclass
class RenderResult:
    """What :func:`render_report` produced."""

    tables: dict[str, markup.ReportTable] = field(default_factory=dict)
    ablation_keys: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what was not rendered, and why
    #: "" when the reference has runs; otherwise why the paired tables were not rendered and which
    #: runs (or which --reference) they need. Also the first entry of ``skipped``.
    reference_note: str = ""
    seconds: float = 0.0
    out_dir: Path | None = None  # the folder the files were written to


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically with mode ``0666 & ~umask`` (:mod:`ifdd_bench.atomic`)."""
    return write_text_atomic(path, text)


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """``"latex,md"`` -> ``["latex", "md"]``; unknown names raise :class:`ConfigError`."""
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    aliases = {"tex": "latex", "markdown": "md"}
    out = []
    for item in items:
        item = aliases.get(item, item)
        if item not in FORMATS:
            raise ConfigError(f"unknown report format {item!r}{suggest(item, FORMATS)}; valid: {', '.join(FORMATS)}")
        if item not in out:
            out.append(item)
    if not out:
        raise ConfigError("--format needs at least one of: latex, md")
    return out


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as CSV atomically, floats with :data:`CSV_FLOAT_FORMAT` (machine-independent bytes)."""
    return write_text(path, frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n"))


def check_reference(runs: pd.DataFrame, reference: str, known_models: Iterable[str] | None = None) -> str:
    """``""`` when ``reference`` has runs; a note naming what the paired tables need when it has none.

    ``reference`` is an IFDD variant (``full``) or a model name (``former_dfer``). A known variant
    or registered model without runs (a sweep that left ``full`` out) gives the note; any other
    name is a typo and raises :class:`ConfigError` with the closest choices.
    """
    ifdd_models = inputs.ifdd_models_in(runs)
    ifdd_variants = sorted(set(runs.loc[runs["model"].map(is_ifdd_model), "variant"]),
                           key=lambda v: (inputs.VARIANT_ORDER.get(v, 99), v))
    models = set(runs["model"])
    if reference in ifdd_variants or reference in models:
        return ""
    baselines = sorted(models - set(ifdd_models))
    choices = ifdd_variants + baselines
    known = set(known_models) if known_models is not None else set(inputs.registered_model_names())
    # another reference only helps when there is something left to compare with it
    other = f" or render with --reference one of: {', '.join(choices)}" if len(choices) > 1 else ""
    if reference in VARIANTS_BY_KEY and ifdd_models:
        return (f"paired statistics (stats, stats_clips): they compare every entry with the reference "
                f"{reference!r}, and no run of {', '.join(ifdd_models)} has that variant; re-run the sweep with it "
                f"(--variants {','.join(ifdd_variants + [reference])}){other}")
    if reference in known or reference in VARIANTS_BY_KEY:
        return (f"paired statistics (stats, stats_clips): they compare every entry with the reference "
                f"{reference!r}, and no run has it; train {reference!r} on the same folds and seeds{other}")
    hint = suggest(reference, sorted(set(choices) | set(VARIANTS_BY_KEY) | known))
    raise ConfigError(f"--reference {reference!r} is neither an IFDD variant nor a model{hint}; "
                      f"choose one of: {', '.join(choices)}")


def _labels(runs: pd.DataFrame, literature: pd.DataFrame | None) -> tuple[list[str], dict[str, str]]:
    """Canonical entry order and short labels for plots."""
    names = tables.method_names(literature)
    multi = len(inputs.ifdd_models_in(runs)) > 1
    pairs = sorted({(m, v) for m, v in zip(runs["model"], runs["variant"])}, key=lambda e: tables.entry_sort_key(*e))
    order = [inputs.entry_key(m, v) for m, v in pairs]
    labels = {inputs.entry_key(m, v): tables.entry_label(m, v, names=names, with_model=multi) for m, v in pairs}
    return order, labels


def _compute_by_entry(runs: pd.DataFrame, profile: pd.DataFrame | None) -> tuple[dict[str, float], str, str]:
    """GMACs per entry from profile.csv; params (M) from runs.csv when no GMACs exist."""
    gmacs: dict[str, float] = {}
    for (m, v), part in runs.groupby(["model", "variant"]):
        match = tables.find_profile(profile, m, v, part["frames"].iloc[0], part["size"].iloc[0])
        if match is not None and not np.isnan(match.gmacs):
            gmacs[inputs.entry_key(m, v)] = match.gmacs
    if gmacs:
        return gmacs, "GMACs per clip (profile.csv)", "uar_vs_gmacs"
    params = runs.groupby("entry")["params"].first() / 1e6
    return {e: float(p) for e, p in params.items() if not np.isnan(p)}, "Params (M), no GMACs in profile.csv", \
        "uar_vs_params"


def _class_names(per_class: pd.DataFrame | None, predictions: pd.DataFrame) -> dict[str, list[str]]:
    """Class names per dataset from per_class.csv, else from the predictions' ``label_name`` column."""
    out: dict[str, list[str]] = {}
    sources = [(per_class, "class_index", "class_name"), (predictions, "label", "label_name")]
    for frame, index_col, name_col in sources:
        if frame is None or name_col not in frame.columns:
            continue
        for dataset, part in frame.groupby("dataset"):
            if dataset in out:
                continue
            order = part.drop_duplicates(index_col).sort_values(index_col)
            names = dict(zip(order[index_col].astype(int), order[name_col].astype(str)))
            out[dataset] = [names.get(i, str(i)) for i in range(max(names) + 1)]
    return out


def render_report(
    results_dir: str | os.PathLike = "results",
    runs_dir: str | os.PathLike = "runs",
    out_dir: str | os.PathLike | None = None,
    *,
    formats: str | Sequence[str] = FORMATS,
    plots: bool = True,
    allow_mixed: bool = False,
    reference: str = "full",
    filters: Sequence[str] = (),
    literature_path: str | os.PathLike | None = None,
    n_resamples: int = 10_000,
    seed: int = 0,
    known_models: Iterable[str] | None = None,
    command: str = "ifdd-bench report",
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> RenderResult:
    """Render all tables (``formats``) and, with ``plots``, all figures of ``results_dir``.

    Raises a :class:`~ifdd_bench.errors.BenchError` for a missing, empty or foreign ``runs.csv``,
    unknown variant or model names, a results file mixing protocols or train hashes for one
    dataset (unless ``allow_mixed``), an unknown format or a ``reference`` that names no variant or
    model. A known reference without runs renders everything else and leaves the reason in
    ``RenderResult.reference_note`` (see :func:`check_reference`). Inputs that are optional
    (per_class.csv, profile.csv, literature.csv, run folders) are skipped with a reason in
    ``RenderResult.skipped``. A class absent from a test split (empty recall in per_class.csv) is
    shown as undefined, and the UAR tables say their mean is over the classes present.
    """
    start = time.perf_counter()
    notify = progress or (lambda event: None)  # events: stage (a step starts), panel, table, plot (written)
    formats = parse_formats(formats)
    notify({"kind": "stage", "name": "reading the results CSVs"})
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    result = RenderResult(out_dir=out_dir)

    runs = inputs.load_runs(results_dir / results.RUNS_CSV, filters=filters, known_models=known_models)
    mixed_notes = inputs.check_mixed(runs, allow_mixed=allow_mixed)
    result.reference_note = check_reference(runs, reference, known_models)
    if result.reference_note:
        result.skipped.append(result.reference_note)
    per_class = inputs.load_per_class(results_dir / results.PER_CLASS_CSV, run_ids=runs["run_id"])
    table_notes = mixed_notes + tables.absent_class_note(per_class)
    profile = inputs.load_profile(results_dir / results.PROFILE_CSV)
    literature = inputs.load_literature(literature_path)
    if per_class is None:
        result.skipped.append(f"per-class table and heatmap: {results_dir / results.PER_CLASS_CSV} not found")
    if profile is None:
        result.skipped.append(f"GMACs columns: {results_dir / results.PROFILE_CSV} not found")
    if literature is None:
        result.skipped.append("comparison rows from the literature: literature.csv not found")

    # ---- tables
    notify({"kind": "stage", "name": "tables"})
    ifdd_models = inputs.ifdd_models_in(runs)
    for model in ifdd_models or [None]:
        table = tables.ablation_table(runs, model=model, profile=profile, literature=literature,
                                      extra_notes=table_notes)
        result.tables[table.key] = table
        result.ablation_keys.append(table.key)
    comparison = tables.comparison_table(runs, literature, reference=reference, profile=profile,
                                         extra_notes=table_notes)
    if comparison.n_rows():
        result.tables["comparison"] = comparison
    else:
        result.skipped.append(f"comparison table: no baseline, no run of the reference {reference!r} "
                              "and no literature.csv rows")
    if per_class is not None and not per_class.empty:
        for dataset in tables.ordered_datasets(per_class["dataset"].unique()):
            table = tables.per_class_table(per_class, runs, dataset, literature=literature)
            result.tables[table.key] = table
    if literature is not None or profile is not None:
        result.tables["complexity"] = tables.complexity_table(literature, profile)
    notify({"kind": "stage", "name": "reading predictions.csv of the runs"})
    predictions, problems = inputs.load_predictions(Path(runs_dir), runs)
    result.skipped += problems
    diffs = clip_diffs = pd.DataFrame()
    if not result.reference_note:  # without a reference run there is nothing to pair (said once, above)
        notify({"kind": "stage", "name": f"paired statistics ({n_resamples:,} resamples)"})
        diffs, clip_diffs = _paired_tables(runs, predictions, reference, ifdd_models, literature, runs_dir,
                                           n_resamples, seed, result)
    control_diffs = stats.control_differences(runs, ifdd_models=ifdd_models)
    if control_diffs.empty:
        result.skipped.append(f"controls table: no run of a control ({', '.join(stats.CONTROLS)}) shares a dataset "
                              "with another entry")
    else:
        result.tables["controls"] = tables.controls_table(control_diffs, literature=literature)
    probes = inputs.load_probes(results_dir / results.PROBES_CSV, runs)
    probe_summary = pd.DataFrame()
    if probes is None:
        result.skipped.append(f"temporal-reliance table and plot: {results_dir / results.PROBES_CSV} has no rows of "
                              "these runs (ifdd-bench eval RUN --perturb all, or run ablation with --probes)")
    else:
        probe_summary = stats.probe_summary(probes)
        result.tables["temporal_reliance"] = tables.temporal_table(probe_summary, literature=literature)

    out_dir.mkdir(parents=True, exist_ok=True)
    for key, table in result.tables.items():
        if "latex" in formats:
            result.files.append(write_text(out_dir / f"{key}.tex", markup.to_latex(table)))
        if "md" in formats:
            result.files.append(write_text(out_dir / f"{key}.md", markup.to_markdown(table)))
        notify({"kind": "table", "name": key})
    agg = stats.aggregate(runs)
    agg["entry"] = [inputs.entry_key(m, v) for m, v in zip(agg["model"], agg["variant"])]
    result.files.append(write_csv(out_dir / "summary.csv", agg))
    if not diffs.empty:
        result.files.append(write_csv(out_dir / "paired_differences.csv", diffs))
    if not clip_diffs.empty:
        result.files.append(write_csv(out_dir / "clip_paired_differences.csv", clip_diffs))
    if not control_diffs.empty:
        result.files.append(write_csv(out_dir / "control_differences.csv", control_diffs))
    if not probe_summary.empty:
        result.files.append(write_csv(out_dir / "temporal_reliance.csv", probe_summary))

    # ---- plots
    figures: list[tuple[str, Path]] = []
    if plots:
        figures = _render_plots(runs, agg, per_class, profile, literature, predictions, probes, probe_summary,
                                Path(runs_dir), out_dir / "plots", result, notify)
    if "md" in formats:
        result.files.append(write_text(out_dir / "report.md", _report_page(result, figures, out_dir, command)))
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class SweepReport:
    """What ``run ablation`` shows at its end: the sweep's summary rows (mean and std per variant) and
    the report rendered for it, or why it was not rendered."""

    summary: list[dict[str, Any]]
    result: RenderResult | None = None
    error: str = ""  # why rendering failed ("" when it was not tried or succeeded)


def render_sweep_report(plan: Any, summary: list[dict[str, Any]], *, command: str,
                        render: bool = True) -> SweepReport:
    """Render ``<plan.results_dir>/report`` for a finished sweep, restricted to its train hash.

    Only the rows of the sweep's own protocol (``train_hash`` of ``plan.train``) are read, so older
    rows of other protocols in the same runs.csv do not block it. Nothing is rendered without
    ``summary`` rows or with ``render=False``; a report that cannot be rendered leaves the reason in
    :attr:`SweepReport.error` (the summary is shown instead).
    """
    from ifdd_bench.config import train_hash

    report = SweepReport(summary)
    if not summary or not render:
        return report
    try:
        report.result = render_report(plan.results_dir, plan.runs_dir, Path(plan.results_dir) / "report",
                                      filters=[f"train_hash={train_hash(plan.train)}"], command=command)
    except BenchError as err:
        report.error = str(err)
    return report


def _paired_tables(runs: pd.DataFrame, predictions: pd.DataFrame | None, reference: str, ifdd_models: list[str],
                   literature: pd.DataFrame | None, runs_dir, n_resamples: int, seed: int,
                   result: RenderResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paired tables over runs and over test clips (into ``result``); returns their two frames."""
    diffs = stats.paired_differences(runs, reference=reference, ifdd_models=ifdd_models)
    if diffs.empty:
        result.skipped.append(f"paired statistics: no entry shares a dataset with the reference {reference!r}")
    else:
        result.tables["stats"] = tables.stats_table(diffs, literature=literature)
    clip_diffs = pd.DataFrame()
    if predictions is None:
        result.skipped.append(f"clip-level statistics: no predictions.csv under {runs_dir}/<run_id>/")
    elif "clip_id" not in predictions.columns:
        result.skipped.append("clip-level statistics: predictions.csv files have no 'clip_id' column")
    else:
        clip_diffs = stats.clip_paired_differences(predictions, reference=reference, n_resamples=n_resamples,
                                                   seed=seed, ifdd_models=ifdd_models)
        if clip_diffs.empty:
            result.skipped.append("clip-level statistics: no predictions share a cell with the reference "
                                  f"{reference!r}")
        else:
            result.tables["stats_clips"] = tables.clip_stats_table(clip_diffs, literature=literature)
    return diffs, clip_diffs


def _render_plots(runs, agg, per_class, profile, literature, predictions, probes, probe_summary, runs_dir: Path,
                  plot_dir: Path, result: RenderResult, notify) -> list[tuple[str, Path]]:
    from ifdd_bench.reports import plots  # matplotlib only when figures are asked for

    order, labels = _labels(runs, literature)
    labels = {e: plots.mathtext_label(text) for e, text in labels.items()}
    palette = plots.entry_palette(order)
    figures: list[tuple[str, Path]] = []

    def stage(title: str) -> str:
        notify({"kind": "stage", "name": f"plot: {title}"})
        return title

    def keep(title: str, paths: list[Path]) -> None:
        result.files.extend(paths)
        for path in paths:
            if path.suffix == ".png":
                figures.append((title, path))
        notify({"kind": "plot", "name": title})

    keep(stage("UAR and WAR per variant"), plots.metric_bars(runs, order, labels, palette, plot_dir))
    compute, axis_label, stem = _compute_by_entry(runs, profile)
    if compute:
        keep(stage("UAR vs compute"), plots.uar_vs_compute(agg, compute, order, labels, palette, plot_dir,
                                                   axis_label=axis_label, stem=stem))
        if stem == "uar_vs_params":
            result.skipped.append("UAR vs GMACs: no GMACs in profile.csv, plotted against params instead")
    else:
        result.skipped.append("UAR vs compute: neither profile.csv GMACs nor runs.csv params")
    if per_class is not None and not per_class.empty:
        keep(stage("Per-class recall"), plots.per_class_heatmap(per_class, order, labels, plot_dir))
    history, problems = inputs.load_histories(runs_dir, runs)
    result.skipped += problems
    if history is not None:
        keep(stage("Training curves"), plots.training_curves(history, order, labels, palette, plot_dir))
    else:
        result.skipped.append(f"training curves: no history.csv under {runs_dir}/<run_id>/")
    if not probe_summary.empty:
        keep(stage("Temporal reliance"), plots.temporal_reliance(probe_summary, probes, order, labels, palette, plot_dir))
    if predictions is not None:
        title = stage("Confusion matrices")
        keep(title, plots.confusion_matrices(
            predictions, _class_names(per_class, predictions), order, labels, plot_dir,
            on_panel=lambda done, total: notify({"kind": "panel", "name": title, "done": done, "total": total})))
    else:
        result.skipped.append(f"confusion matrices: no predictions.csv under {runs_dir}/<run_id>/")
    return figures


def _report_page(result: RenderResult, figures: list[tuple[str, Path]], out_dir: Path, command: str) -> str:
    """One Markdown page with every table and figure (paths relative to the page)."""
    lines = ["# ifdd-bench report", "", f"Rendered by `{command}` from CSVs only (no torch).", ""]
    for key, table in result.tables.items():
        lines += [f"## {table.caption}", "", markup.to_markdown(table, heading=""), ""]
    if figures:
        lines += ["## Figures", ""]
        for title, path in figures:
            rel = path.relative_to(out_dir).as_posix()
            lines += [f"**{title}**: [PDF]({rel[:-4]}.pdf)", "", f"![{title}]({rel})", ""]
    if result.skipped:
        lines += ["## Not rendered", ""] + [f"- {item}" for item in result.skipped] + [""]
    return "\n".join(lines)

