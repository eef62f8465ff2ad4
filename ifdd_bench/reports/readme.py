"""The README's headline results, generated from a rendered report (no torch, no hand-copied numbers).

``ifdd-bench report --readme README.md`` renders the report and then replaces the text between
:data:`HEADLINE_START` and :data:`HEADLINE_END` with :func:`headline_markdown`. Everything in it
comes from the report: the ablation table of the default model exactly as ``render_report``
wrote it, one figure, and sentences computed from ``paired_differences.csv``,
``clip_paired_differences.csv``, ``control_differences.csv``, ``temporal_reliance.csv`` and
``summary.csv`` (the CSVs the same render wrote, already rounded to
:data:`~ifdd_bench.reports.render.CSV_FLOAT_FORMAT`, so the text has the same bytes on any
machine). No timestamps, no absolute paths. The model table beside it (:data:`MODEL_TABLE_START`)
comes from the registry, which imports torch, so it is built in :mod:`ifdd_bench.readme_models`.

Example::

    >>> result = render_report("results", "runs", "/tmp/rep", plots=False)          # doctest: +SKIP
    >>> text = headline_markdown(result, model="ifdd_tiny_pretext", variants=("full", "gap"),
    ...                          dataset="synth", folds=(1,), seeds=(0,))          # doctest: +SKIP
    >>> readme = replace_block(readme, HEADLINE_START, HEADLINE_END, text, path="README.md")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ifdd_bench.errors import BenchError
from ifdd_bench.reports import markup, stats, tables
from ifdd_bench.reports.inputs import dataset_name, ifdd_models_in, load_literature
from ifdd_bench.reports.tables.cells import p_text, signed_text

HEADLINE_START = "<!-- ablation-results:start -->"
HEADLINE_END = "<!-- ablation-results:end -->"
MODEL_TABLE_START = "<!-- model-table -->"
MODEL_TABLE_END = "<!-- /model-table -->"
#: the command that regenerates both blocks of the README (quoted in the headline)
README_COMMAND = "ifdd-bench report --readme README.md"
#: the figure the headline shows, a stem under ``<report>/plots/``
HEADLINE_FIGURE = "bars_uar_war"
#: a difference "survives" when its Holm-adjusted p is below this
ALPHA = 0.05


def _num(value: object) -> float:
    """A CSV cell as float (NaN for empty)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _written_csv(result, name: str) -> pd.DataFrame | None:
    """The CSV ``name`` that this render wrote (``result.files``), or None when it wrote none."""
    for path in result.files:
        if Path(path).name == name:
            return pd.read_csv(path)
    return None


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the tables' entry order (IFDD variants in paper order, then baselines by name)."""
    keys = [tables.entry_sort_key(m, v) for m, v in zip(frame["model"], frame["variant"])]
    return frame.iloc[sorted(range(len(frame)), key=keys.__getitem__)]


def _seed_text(values: Sequence[int], what: str) -> str:
    """``seed 0`` / ``seeds 0, 1``."""
    values = list(values)
    return f"{what}{'s' if len(values) > 1 else ''} {', '.join(str(v) for v in values)}"


def _command_sentence(model: str, variants: Sequence[str], dataset: str, folds: Sequence[int],
                      seeds: Sequence[int], results_dir: str, runs_dir: str, link_dir: str,
                      baselines: Sequence[str] = ()) -> str:
    """(a) What ``run ablation`` with no arguments trains and where its files go."""
    beside = f" and {_listing([f'`{b}`' for b in baselines])}" if baselines else ""
    return (f"`ifdd-bench run ablation` with no arguments trains the {len(variants)} ablation variants of "
            f"`{model}` ([Models](#models)){beside} on {_seed_text(folds, 'fold')} of {dataset_name(dataset)} with "
            f"{_seed_text(seeds, 'seed')}, appends one row per run to `{results_dir}/runs.csv` and "
            f"`{results_dir}/per_class.csv`, keeps each run's records in `{runs_dir}/<run_id>/`, and renders the "
            f"tables and plots into `{link_dir}/`.")


def _baseline_sentence(table: markup.ReportTable, link_dir: str) -> str:
    """(c) Where the baselines are: the table's baseline block, and the literature comparison."""
    baseline_blocks = [b for b in table.blocks[1:] if b.rows]
    n = sum(len(b.rows) for b in baseline_blocks)
    text = ""
    if n:
        titles = _listing([f"*{b.title}*" for b in baseline_blocks if b.title])
        text = (f"The {n} baseline{'s' if n > 1 else ''} under {titles} {'were' if n > 1 else 'was'} trained from "
                "scratch by the same engine, recipe and test split. ")
    return text + (f"Published numbers on DFEW, FERV39k and MAFW are set beside ours in "
                   f"[comparison.md]({link_dir}/comparison.md).")


def _figure_lines(summary: pd.DataFrame | None, model: str, reference: str, link_dir: str, figure: str,
                  names: dict[str, str]) -> list[str]:
    """(d) The figure and one sentence computed from ``summary.csv`` of what it shows."""
    path = f"{link_dir}/plots/{figure}.png"
    lines = [f"![Test UAR and WAR per entry: mean ± std over runs, one dot per run]({path})", ""]
    if summary is None or summary.empty:
        return lines
    best = summary.sort_values(["uar_mean", "model", "variant"], ascending=[False, True, True]).iloc[0]
    worst = summary.sort_values(["uar_mean", "model", "variant"], ascending=[True, True, True]).iloc[0]
    multi = len(ifdd_models_in(summary)) > 1

    def label(row: pd.Series) -> str:
        return tables.entry_label(row["model"], row["variant"], names=names, with_model=bool(multi))

    sentence = (f"It shows test UAR and WAR per entry (bar: mean over runs, whisker: sample std, dot: one run; "
                f"up to {int(summary['n'].max())} run{'s' if int(summary['n'].max()) > 1 else ''} per entry): "
                f"the highest mean UAR is "
                f"{label(best)}'s {100 * best['uar_mean']:.2f} %, the lowest {label(worst)}'s "
                f"{100 * worst['uar_mean']:.2f} %")
    ref = summary[(summary["model"] == model) & (summary["variant"] == reference)]
    if not ref.empty:
        row = ref.iloc[0]
        n = int(row["n"])
        spread = f" ± {100 * _num(row['uar_std']):.2f}" if n > 1 else ""
        sentence += (f", and {label(row)} reaches {100 * row['uar_mean']:.2f}{spread} % over its "
                     f"{n} run{'s' if n > 1 else ''}")
    return lines + [sentence + "."]


def _temporal_lines(result, names: dict[str, str]) -> list[str]:
    """(f) The temporal-reliance table and one computed sentence: which entries lose UAR when the
    frames are shuffled or one frame stands for the clip, with intervals that exclude 0."""
    table = result.tables.get("temporal_reliance")
    summary = _written_csv(result, "temporal_reliance.csv")
    if table is None or summary is None or summary.empty:
        return []
    lines = ["**Temporal reliance.** Every trained run of the grid is evaluated again on its test clips with "
             "the frames perturbed ([probes](docs/probes.md)); a drop (Δ = perturbed − clean UAR) means the "
             "entry used what the perturbation destroys.", "", markup.to_markdown(table).rstrip("\n"), ""]

    def label(row: pd.Series) -> str:
        return tables.entry_label(row["model"], row["variant"], names=names)

    sentences = []
    for perturbation, what in (("shuffle", "shuffled frames"), ("single", "one frame repeated")):
        part = _ordered(summary[summary["perturbation"] == perturbation])
        if part.empty:
            continue
        lost = part[part["delta_uar_high"].map(_num) < 0]
        kept = part[~(part["delta_uar_high"].map(_num) < 0)]
        text = (f"On {what}, {len(lost)} of {len(part)} entries {'loses' if len(lost) == 1 else 'lose'} UAR with an "
                "interval below 0"
                + (f" (largest drop: {label(lost.sort_values('delta_uar_mean').iloc[0])}, "
                   f"{signed_text(100 * lost['delta_uar_mean'].min())} pp)" if len(lost) else ""))
        if len(kept):
            text += f"; not so {_listing([label(r) for _, r in kept.iterrows()])}"
        sentences.append(text + ".")
    methods = sorted(set(summary["ci_method"].astype(str)))
    sentences.append(f"Intervals: {', '.join(methods)} ([how](docs/probes.md)).")
    return lines + [" ".join(sentences), ""]


def _controls_lines(result, model: str, names: dict[str, str]) -> list[str]:
    """(g) ``model``'s entries against the controls without a temporal module: which are clearly
    above each (the paired t-interval over runs lies above 0), then the controls table."""
    table = result.tables.get("controls")
    diffs = _written_csv(result, "control_differences.csv")
    if table is None or diffs is None or diffs.empty:
        return []
    part = diffs[(diffs["model"] == model) & (diffs["metric"] == "uar")]
    # a model control (static_control) is its own reference model; a variant control (gap) is this model's
    part = part[(part["reference_model"] == part["reference"]) | (part["reference_model"] == model)]
    if part.empty:
        return []
    part = _ordered(part.assign(ci_low=part["ci_low"].map(_num), ci_high=part["ci_high"].map(_num),
                                p_holm=part["p_holm"].map(_num)))

    def label(row: pd.Series) -> str:
        return tables.entry_label(row["model"], row["variant"], names=names)

    def interval(row: pd.Series) -> str:
        return (f"{signed_text(100 * row['mean_diff'])} [{signed_text(100 * row['ci_low'])}, "
                f"{signed_text(100 * row['ci_high'])}] pp")

    sentences = ["An entry is *clearly above* a control when the paired 95 % t-interval of its UAR difference "
                 f"over runs (given from {stats.MIN_PAIRS_FOR_INTERVAL} paired runs on) lies above 0 (bold in the "
                 "table)."]
    for control in [c for c in stats.CONTROLS if c in set(part["reference"])]:
        rows = part[part["reference"] == control]
        with_ci = rows[rows["ci_low"].notna()]
        name = tables.control_label(control, names)
        if with_ci.empty:
            sentences.append(f"Against {name} no entry has {stats.MIN_PAIRS_FOR_INTERVAL} paired runs, so none "
                             "is called above it.")
            continue
        above = with_ci[with_ci["ci_low"] > 0]
        if above.empty:
            best = with_ci.sort_values("mean_diff", ascending=False, kind="stable").iloc[0]
            sentences.append(f"Clearly above {name}: none of {len(with_ci)} (largest difference {label(best)}, "
                             f"{interval(best)}).")
            continue
        holm = above[above["p_holm"] < ALPHA]
        if len(holm):
            verb = "has" if len(holm) == 1 else "have"
            holm_text = f"{len(holm)} of them also {verb} a Holm-adjusted p below {ALPHA}"
        else:
            holm_text = f"none has a Holm-adjusted p below {ALPHA}"
        sentences.append(f"Clearly above {name}: {len(above)} of {len(with_ci)}, "
                         f"{_listing([f'{label(r)} ({interval(r)})' for _, r in above.iterrows()])}; {holm_text}.")
    return ["**Against the controls.** " + " ".join(sentences), "",
            markup.to_markdown(table).rstrip("\n"), ""]


def _survives_runs(diffs: pd.DataFrame | None, summary: pd.DataFrame | None, model: str, reference: str,
                   names: dict[str, str]) -> str:
    """(e) Which differences to ``model``'s ``reference`` survive Holm correction over runs, and intervals."""
    ref_text = f"`{reference}`"
    if diffs is None or diffs.empty:
        return f"No paired statistics over runs: no run shares a cell with `{model}` {ref_text}."
    part = diffs[(diffs["reference_model"] == model) & (diffs["reference"] == reference) & (diffs["metric"] == "uar")]
    if part.empty:
        return f"No paired statistics over runs: no run shares a cell with `{model}` {ref_text}."
    part = part.assign(p_holm=part["p_holm"].map(_num), n=part["n"].astype(int),
                       ci_low=part["ci_low"].map(_num), ci_high=part["ci_high"].map(_num))
    part = _ordered(part)

    def label(row: pd.Series) -> str:
        return tables.entry_label(row["model"], row["variant"], names=names)

    tested = part[part["p_holm"].notna()]
    runs_text = f"{int(tested['n'].max())} paired runs" if not tested.empty else "one run"
    ref_row = None if summary is None else summary[(summary["model"] == model) & (summary["variant"] == reference)]
    if ref_row is not None and not ref_row.empty:
        folds, seeds = int(ref_row.iloc[0]["folds"]), int(ref_row.iloc[0]["seeds"])
        runs_text += f" ({folds} fold{'s' if folds > 1 else ''} × {seeds} seed{'s' if seeds > 1 else ''})"
    sentences = []
    if tested.empty:
        sentences.append(f"Over training runs nothing can be tested against {ref_text}: every compared entry has "
                         "a single run in common with it.")
    else:
        survive = tested[tested["p_holm"] < ALPHA]
        if survive.empty:
            smallest = tested.sort_values("p_holm", kind="stable").iloc[0]
            sentences.append(f"Over training runs, with {runs_text}, no difference to {ref_text} survives Holm "
                             f"correction (smallest adjusted p {p_text(smallest['p_holm'])}, {label(smallest)}).")
        else:
            items = [f"{label(r)} ({signed_text(100 * r['mean_diff'])} pp, adjusted p {p_text(r['p_holm'])})"
                     for _, r in survive.iterrows()]
            rest = tested[tested["p_holm"] >= ALPHA]
            tail = (f"; the other {len(rest)} do not (smallest adjusted p {p_text(rest['p_holm'].min())})"
                    if not rest.empty else "")
            verb = "survives" if len(survive) == 1 else "survive"
            sentences.append(f"Over training runs, with {runs_text}, {len(survive)} of {len(tested)} differences "
                             f"to {ref_text} {verb} Holm correction: {_listing(items)}{tail}.")
    with_ci = part[part["ci_low"].notna()]
    need = stats.MIN_PAIRS_FOR_INTERVAL
    if with_ci.empty:
        sentences.append(f"No comparison has a t-interval: intervals need {need} pairs, and the most any entry "
                         f"has is {int(part['n'].max())}.")
    else:
        excl = with_ci[(with_ci["ci_low"] > 0) | (with_ci["ci_high"] < 0)]
        sentences.append(f"{len(with_ci)} comparison{'s have' if len(with_ci) > 1 else ' has'} a 95 % t-interval "
                         f"(n ≥ {need}); {len(excl)} of them exclude{'s' if len(excl) == 1 else ''} 0"
                         + (f": {_listing([label(r) for _, r in excl.iterrows()])}." if len(excl) else "."))
    single = part[part["n"] <= 1]
    if not single.empty:
        sentences.append(f"The {len(single)} entr{'ies' if len(single) > 1 else 'y'} with one run in common with "
                         f"{ref_text} ({_listing([label(r) for _, r in single.iterrows()])}) get neither p nor "
                         "interval.")
    return " ".join(sentences)


def _survives_clips(clip_diffs: pd.DataFrame | None, model: str, reference: str, names: dict[str, str]) -> str:
    """(e, clips) Which differences to the reference have Holm-adjusted p < 0.05 over test clips."""
    if clip_diffs is None or clip_diffs.empty:
        return ""
    part = clip_diffs[(clip_diffs["reference_model"] == model) & (clip_diffs["reference"] == reference)
                      & (clip_diffs["metric"] == "uar")]
    if part.empty:
        return ""
    part = part.assign(p_holm=part["p_holm"].map(_num))
    part = _ordered(part)
    own = part[part["model"] == model]
    others = part[part["model"] != model]

    def label(row: pd.Series) -> str:
        return tables.entry_label(row["model"], row["variant"], names=names)

    own_sig = own[own["p_holm"] < ALPHA]
    other_sig = others[others["p_holm"] < ALPHA]
    items = [f"{label(r)} ({signed_text(100 * r['mean_diff'])} pp, adjusted p {p_text(r['p_holm'])})" for _, r in own_sig.iterrows()]
    if len(others):
        if len(other_sig) == len(others):
            items.append(f"all {len(others)} baselines" if len(others) > 1 else f"the baseline {label(others.iloc[0])}")
        elif len(other_sig):
            items.append(f"{len(other_sig)} of {len(others)} baselines "
                         f"({_listing([label(r) for _, r in other_sig.iterrows()])})")
    clips = int(part["clips"].max())
    cells = int(part["cells"].max())
    head = (f"Holding the trained models fixed (test clips: {clips:,} over {cells} cell{'s' if cells > 1 else ''}; "
            "this leaves out the variation between training runs), ")
    if not items:
        return head + f"no difference to `{reference}` has a Holm-adjusted p below {ALPHA}."
    rest = len(own) - len(own_sig)
    tail = f"; {rest} other variant{'s do' if rest != 1 else ' does'} not" if len(own) and rest else ""
    return head + f"these differences to `{reference}` have a Holm-adjusted p below {ALPHA}: {_listing(items)}{tail}."


def headline_markdown(result, *, model: str, variants: Sequence[str], dataset: str, folds: Sequence[int],
                      seeds: Sequence[int], reference: str = "full", link_dir: str = "results/report",
                      results_dir: str = "results", runs_dir: str = "runs", figure: str = HEADLINE_FIGURE,
                      command: str = README_COMMAND, literature_path: str | None = None,
                      baselines: Sequence[str] = ()) -> str:
    """The README's headline block (Markdown) from a :class:`~ifdd_bench.reports.render.RenderResult`.

    ``model``, ``variants``, ``baselines``, ``dataset``, ``folds`` and ``seeds`` describe what
    ``ifdd-bench run ablation`` trains with no arguments (``ifdd_bench.sweep.DEFAULT_*``); ``model``'s ablation
    table must be in ``result``. The statistics are read back from the CSVs the render wrote
    (``result.files``), never recomputed. ``link_dir`` is the report folder as the README links it
    (relative to the README), ``figure`` a stem under its ``plots/``. Deterministic: the same
    inputs give the same bytes. Raises :class:`BenchError` when the model's table is missing.

    Example::

        >>> text = headline_markdown(result, model="ifdd_tiny_pretext", variants=DEFAULT_VARIANTS,
        ...                          dataset="synth", folds=(1,), seeds=(0,))      # doctest: +SKIP
    """
    key = f"ablation_{model}"
    if key not in result.tables:
        have = ", ".join(k[len("ablation_"):] for k in result.ablation_keys) or "none"
        raise BenchError(f"the README headline needs the ablation table of {model!r}, and the report has none "
                         f"(ablation tables rendered: {have}); train it with `ifdd-bench run ablation`")
    names = tables.method_names(load_literature(literature_path))
    summary = _written_csv(result, "summary.csv")
    diffs = _written_csv(result, "paired_differences.csv")
    clip_diffs = _written_csv(result, "clip_paired_differences.csv")
    table = result.tables[key]
    lines = [
        f"<!-- Generated by `{command}` from the committed results; edits here are overwritten. -->",
        "",
        _command_sentence(model, variants, dataset, folds, seeds, results_dir, runs_dir, link_dir, baselines),
        "",
        markup.to_markdown(table).rstrip("\n"),
        "",
        _baseline_sentence(table, link_dir),
        "",
        *_figure_lines(summary, model, reference, link_dir, figure, names),
        "",
    ]
    survive = _survives_runs(diffs, summary, model, reference, names)
    clips = _survives_clips(clip_diffs, model, reference, names)
    if result.reference_note:
        survive = f"No paired statistics: {result.reference_note}."
    lines += [f"**What survives.** {survive}" + (f" {clips}" if clips else ""), ""]
    lines += _temporal_lines(result, names)
    lines += _controls_lines(result, model, names)
    lines.append(f"Every table, figure and statistic: [report.md]({link_dir}/report.md). After retraining, "
                 f"`{command}` regenerates this block and the model table from the results.")
    return "\n".join(lines) + "\n"


def find_block(text: str, start_marker: str, end_marker: str, *, path: str = "README.md") -> tuple[int, int]:
    """``(begin, end)`` offsets of the text between the two marker lines (the body, markers excluded).

    Each marker must occur exactly once, the start before the end; otherwise :class:`BenchError`
    names ``path`` and the marker.
    """
    for marker in (start_marker, end_marker):
        count = text.count(marker)
        if count != 1:
            what = "is missing" if count == 0 else f"occurs {count} times"
            raise BenchError(f"{path}: the marker {marker!r} {what}; the generated block needs exactly one "
                             f"{start_marker!r} line followed by one {end_marker!r} line")
    start = text.index(start_marker)
    end = text.index(end_marker)
    if end < start:
        raise BenchError(f"{path}: the marker {end_marker!r} comes before {start_marker!r}; put the start "
                         "marker first")
    begin = start + len(start_marker)
    if text.startswith("\n", begin):
        begin += 1
    return begin, end


def replace_block(text: str, start_marker: str, end_marker: str, body: str, *, path: str = "README.md") -> str:
    """``text`` with everything between ``start_marker`` and ``end_marker`` replaced by ``body``.

    The markers stay on lines of their own; nothing outside them changes. A missing, repeated or
    misordered marker raises :class:`BenchError` naming ``path`` and the marker (``text`` is a
    string, so nothing is written either way).

    Example::

        >>> replace_block("a\\n<!-- s -->\\nold\\n<!-- e -->\\nb\\n", "<!-- s -->", "<!-- e -->", "new\\n")
        'a\\n<!-- s -->\\nnew\\n<!-- e -->\\nb\\n'
    """
    begin, end = find_block(text, start_marker, end_marker, path=path)
    if body and not body.endswith("\n"):
        body += "\n"
    return text[:begin] + body + text[end:]


def block_text(text: str, start_marker: str, end_marker: str, *, path: str = "README.md") -> str:
    """The body between two markers (what :func:`replace_block` would replace)."""
    begin, end = find_block(text, start_marker, end_marker, path=path)
    return text[begin:end]


def check_readme(path: str | os.PathLike, *, plots: bool = True) -> None:
    """Refuse a ``--readme`` target before anything is rendered: a missing file, a missing or
    misordered marker pair, or a render without plots (the headline links a figure)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: no such file; --readme names an existing README with the generated-block markers")
    if not plots:
        raise BenchError("--readme needs the plots (its headline links a figure); leave out --no-plots")
    text = path.read_text(encoding="utf-8")
    for start, end in ((HEADLINE_START, HEADLINE_END), (MODEL_TABLE_START, MODEL_TABLE_END)):
        find_block(text, start, end, path=str(path))
