"""Paper figures from the results CSVs (matplotlib Agg + seaborn; never torch).

Every figure is written twice, ``<stem>.png`` (200 dpi) and ``<stem>.pdf`` (TrueType fonts
embedded, as publishers ask), atomically, with no date or machine-dependent metadata and one
font (matplotlib's own DejaVu Sans), so the same CSVs give the same bytes on any machine with the
same matplotlib. Variants keep one order and one colour in every figure: :func:`entry_palette`
maps the canonical entry order (IFDD variants in paper order, then baselines) to the
colour-blind-safe seaborn palette.

* :func:`metric_bars`        UAR and WAR per variant: mean bar, sample-std error bar, one dot per run
* :func:`uar_vs_compute`     UAR vs GMACs (or params) with the Pareto front (more UAR for less compute)
* :func:`confusion_matrices` row-normalised confusion matrix per variant, pooled over runs
* :func:`training_curves`    train loss and val/test UAR per epoch, mean and std band over runs
* :func:`per_class_heatmap`  per-class recall, variants x classes
* :func:`temporal_reliance`  ΔUAR per perturbation of the frame order, per variant: mean, interval, runs

Example::

    >>> paths = metric_bars(runs, labels, entry_palette(order), "results/report/plots")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ifdd_bench.atomic import atomic_path  # noqa: E402
from ifdd_bench.config import PERTURBATIONS  # noqa: E402
from ifdd_bench.reports.inputs import dataset_name  # noqa: E402

PNG_DPI = 200
#: the files carry no date, host, or library version, so re-rendering the same CSVs gives byte-identical
#: plots on any machine with the same matplotlib (committed figures only change when their content does)
PRODUCER = "ifdd-bench report with matplotlib"
REPRODUCIBLE_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": PRODUCER, "Creator": PRODUCER},
}
#: the one font of every figure: DejaVu Sans as shipped inside matplotlib (seaborn's styles ask for
#: Arial first, which would make the PDFs depend on the fonts installed on the machine)
FONT = "DejaVu Sans"
_RC = {
    "pdf.fonttype": 42, "ps.fonttype": 42,  # embed TrueType, not Type 3
    "font.family": "sans-serif", "font.sans-serif": [FONT], "mathtext.fontset": "dejavusans",
    "svg.hashsalt": "ifdd-bench", "svg.fonttype": "path",  # SVG ids from a fixed salt, glyphs as paths
    "savefig.bbox": "tight", "savefig.pad_inches": 0.05,
    "axes.titleweight": "bold", "axes.titlesize": 10, "axes.labelsize": 9,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "figure.titlesize": 11,
}


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Seaborn 'paper' + whitegrid look, scoped so the caller's rcParams are left alone."""
    rc = dict(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("paper"))
    rc.update(_RC)
    with plt.rc_context(rc):
        yield


def mathtext_label(label: str) -> str:
    """Plot label with the lifting loss written as in the paper (matplotlib mathtext)."""
    return label.replace("L_lift", r"$\mathcal{L}_{\mathrm{lift}}$")


def entry_palette(entries: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per entry, stable for a given order (colour-blind palette, then husl)."""
    base = sns.color_palette("colorblind", 10)
    extra = sns.color_palette("husl", max(0, len(entries) - len(base)))
    colours = list(base) + list(extra)
    return {entry: colours[i] for i, entry in enumerate(entries)}


def save_figure(fig: plt.Figure, out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` into ``out_dir`` atomically; closes the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for fmt in ("png", "pdf"):
            target = out_dir / f"{stem}.{fmt}"
            with atomic_path(target, suffix=f".{fmt}.tmp") as tmp:
                fig.savefig(tmp, format=fmt, dpi=PNG_DPI if fmt == "png" else None,
                            metadata=REPRODUCIBLE_METADATA[fmt])
            written.append(target)
    finally:
        plt.close(fig)
    return written


def _datasets(frame: pd.DataFrame) -> list[str]:
    from ifdd_bench.reports.tables import ordered_datasets

    return ordered_datasets(frame["dataset"].unique())


def _present(order: Sequence[str], frame: pd.DataFrame) -> list[str]:
    have = set(frame["entry"])
    return [e for e in order if e in have]


# --------------------------------------------------------------------------------------------


def metric_bars(runs: pd.DataFrame, order: Sequence[str], labels: Mapping[str, str],
                palette: Mapping[str, tuple], out_dir: str | os.PathLike, stem: str = "bars_uar_war") -> list[Path]:
    """Horizontal bars of UAR and WAR (%) per variant and dataset: mean, ± sample std, runs as dots."""
    datasets = _datasets(runs)
    data = runs.assign(UAR=runs["uar"] * 100, WAR=runs["war"] * 100)
    entries = _present(order, data)
    height = 0.8 + 0.32 * len(entries)
    with _style():
        fig, axes = plt.subplots(len(datasets), 2, figsize=(7.2, height * len(datasets)), squeeze=False,
                                 sharey="row")
        for r, dataset in enumerate(datasets):
            part = data[data["dataset"] == dataset]
            ent = [e for e in entries if e in set(part["entry"])]
            ylabels = [labels.get(e, e) for e in ent]
            for c, metric in enumerate(("UAR", "WAR")):
                ax = axes[r][c]
                stats_ = part.groupby("entry")[metric].agg(["mean", "std", "size"]).reindex(ent)
                y = np.arange(len(ent))
                ax.barh(y, stats_["mean"], xerr=stats_["std"].fillna(0.0), color=[palette[e] for e in ent],
                        edgecolor="black", linewidth=0.4, height=0.7, error_kw={"elinewidth": 0.9, "capsize": 2.5},
                        zorder=2)
                for k, e in enumerate(ent):  # every run as a dot, jittered vertically
                    vals = part.loc[part["entry"] == e, metric].to_numpy()
                    jitter = np.linspace(-0.18, 0.18, len(vals)) if len(vals) > 1 else np.zeros(1)
                    ax.scatter(vals, k + jitter, s=9, color="black", alpha=0.65, linewidths=0, zorder=3)
                ax.set_yticks(y, ylabels)
                if c == 0:  # the y axis is shared by the row: invert it once
                    ax.invert_yaxis()
                ax.set_xlabel(f"{metric} (%)")
                ax.set_title(f"{dataset_name(dataset)}: {metric}")
                high = float(np.nanmax(stats_["mean"] + stats_["std"].fillna(0.0)).max())
                high = max(high, float(np.nanmax(part[metric])))
                ax.set_xlim(0, min(100.0, high * 1.08 + 1))
                ax.grid(axis="y", visible=False)
        n = runs.groupby("entry").size()
        fig.suptitle(f"Test UAR / WAR per variant (mean ± std over runs, dots = runs; up to {n.max()} runs)")
        fig.tight_layout()
        return save_figure(fig, out_dir, stem)


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of points no other point beats (lower or equal x with higher y), sorted by x."""
    pts = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], -math.inf
    for i in pts:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def uar_vs_compute(agg: pd.DataFrame, compute: Mapping[str, float], order: Sequence[str],
                   labels: Mapping[str, str], palette: Mapping[str, tuple], out_dir: str | os.PathLike, *,
                   axis_label: str = "GMACs per clip", stem: str = "uar_vs_gmacs") -> list[Path]:
    """Scatter of mean UAR (± std) against compute per entry and dataset, with the Pareto front.

    ``agg`` is :func:`ifdd_bench.reports.stats.aggregate` output with an ``entry`` column;
    ``compute`` maps entry -> GMACs (or params in M; say so with ``axis_label``). Entries without
    a compute value are left out.
    """
    data = agg[agg["entry"].isin([e for e, v in compute.items() if v is not None and not np.isnan(v)])]
    if data.empty:
        return []
    datasets = _datasets(data)
    with _style():
        fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets) + 1.8, 3.4), squeeze=False)
        for c, dataset in enumerate(datasets):
            ax = axes[0][c]
            part = data[data["dataset"] == dataset]
            ent = [e for e in order if e in set(part["entry"])]
            xs = [compute[e] for e in ent]
            ys = [float(part.loc[part["entry"] == e, "uar_mean"].iloc[0]) * 100 for e in ent]
            es = [float(part.loc[part["entry"] == e, "uar_std"].fillna(0.0).iloc[0]) * 100 for e in ent]
            front = pareto_front(xs, ys)
            fx = [xs[i] for i in front]
            fy = [ys[i] for i in front]
            ax.step(fx, fy, where="post", color="0.35", linestyle="--", linewidth=1.0, zorder=1,
                    label="Pareto front")
            for k, e in enumerate(ent):
                ax.errorbar(xs[k], ys[k], yerr=es[k], fmt="o", color=palette[e], markersize=6,
                            markeredgecolor="black" if k in front else palette[e], markeredgewidth=0.8,
                            elinewidth=0.9, capsize=2.5, zorder=3, label=labels.get(e, e))
            if max(xs) > 8 * max(min(xs), 1e-9):
                ax.set_xscale("log")
            else:
                span = max(xs) - min(xs)
                pad = span * 0.08 if span > 0 else max(abs(max(xs)) * 0.02, 1e-3)
                ax.set_xlim(min(xs) - pad, max(xs) + pad)
            ax.set_xlabel(axis_label)
            ax.set_ylabel("UAR (%)")
            ax.set_title(dataset_name(dataset))
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle("UAR vs compute (points with a black edge are on the Pareto front)")
        fig.tight_layout()
        return save_figure(fig, out_dir, stem)


def confusion_matrices(predictions: pd.DataFrame, class_names: Mapping[str, Sequence[str]], order: Sequence[str],
                       labels: Mapping[str, str], out_dir: str | os.PathLike, stem: str = "confusion",
                       on_panel: Callable[[int, int], None] | None = None) -> list[Path]:
    """Row-normalised confusion matrices (% of each true class), one panel per entry, one figure per dataset.

    ``predictions`` holds ``label``, ``pred``, ``entry``, ``dataset``, ``run_id`` columns (from the
    runs' ``predictions.csv``); counts are summed over runs before normalising.
    ``class_names[dataset]`` gives the class order; missing names fall back to indices.
    ``on_panel(done, total)`` is called after each panel (the slow part: seconds per panel).
    """
    written = []
    total = sum(len(_present(order, predictions[predictions["dataset"] == d])) for d in _datasets(predictions))
    done = 0
    for dataset in _datasets(predictions):
        part = predictions[predictions["dataset"] == dataset]
        ent = _present(order, part)
        k = int(max(part["label"].max(), part["pred"].max()) + 1)
        names = list(class_names.get(dataset, ()))
        names = names + [str(i) for i in range(len(names), k)] if len(names) < k else names[:k]
        ncols = min(4, len(ent))
        nrows = math.ceil(len(ent) / ncols)
        cell = 0.34 * k + 0.9
        annotate = k <= 11
        with _style():
            fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + 1.0, cell * nrows + 0.6), squeeze=False)
            for idx, e in enumerate(ent):
                ax = axes[idx // ncols][idx % ncols]
                sub = part[part["entry"] == e]
                counts = np.zeros((k, k))
                np.add.at(counts, (sub["label"].to_numpy(), sub["pred"].to_numpy()), 1)  # (K true, K pred)
                rows = counts.sum(axis=1, keepdims=True)
                percent = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) * 100
                sns.heatmap(percent, ax=ax, vmin=0, vmax=100, cmap="Blues", cbar=False, square=True,
                            annot=annotate, fmt=".0f", annot_kws={"fontsize": 6 if k > 7 else 7},
                            xticklabels=names, yticklabels=names, linewidths=0.3, linecolor="white")
                ax.set_title(f"{labels.get(e, e)} ({sub['run_id'].nunique()} runs)", fontsize=8)
                ax.set_xlabel("predicted", fontsize=8)
                ax.set_ylabel("true" if idx % ncols == 0 else "", fontsize=8)
                ax.tick_params(axis="x", labelrotation=60, labelsize=7)
                ax.tick_params(axis="y", labelrotation=0, labelsize=7)
                done += 1
                if on_panel is not None:
                    on_panel(done, total)
            for idx in range(len(ent), nrows * ncols):
                axes[idx // ncols][idx % ncols].set_visible(False)
            fig.suptitle(f"{dataset_name(dataset)}: confusion matrices, % of each true class (pooled over runs)")
            fig.tight_layout()
            written += save_figure(fig, out_dir, f"{stem}_{dataset}")
    return written


def _first_column(frame: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    for col in candidates:
        if col in frame.columns and frame[col].notna().any():
            return col
    return None


def training_curves(history: pd.DataFrame, order: Sequence[str], labels: Mapping[str, str],
                    palette: Mapping[str, tuple], out_dir: str | os.PathLike, stem: str = "curves") -> list[Path]:
    """Per dataset: train loss and val/test UAR per epoch (counted from 1), mean and sample std over runs."""
    panels = [(col, title) for col, title in (
        (_first_column(history, ("train_loss", "loss")), "train loss"),
        (_first_column(history, ("val_uar",)), "validation UAR (%)"),
        (_first_column(history, ("test_uar", "uar")), "test UAR (%)"),
    ) if col is not None]
    if not panels:
        return []
    written = []
    for dataset in _datasets(history):
        part = history[history["dataset"] == dataset].copy()
        part["epoch"] = part["epoch"] + 1  # history.csv counts from 0; plots count epochs from 1
        ent = _present(order, part)
        epochs = part["epoch"].nunique()
        style = {"marker": "o", "markersize": 3.5} if epochs <= 30 else {}
        with _style():
            fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels) + 1.8, 3.0), squeeze=False)
            for c, (col, title) in enumerate(panels):
                ax = axes[0][c]
                values = part[col] * (100 if "UAR" in title else 1)
                plot = part.assign(_y=values, _label=part["entry"].map(lambda e: labels.get(e, e)))
                sns.lineplot(data=plot, x="epoch", y="_y", hue="_label", ax=ax, errorbar="sd",
                             err_style="band" if epochs > 3 else "bars", hue_order=[labels.get(e, e) for e in ent],
                             palette={labels.get(e, e): palette[e] for e in ent}, linewidth=1.2, legend=c == 0,
                             **style)
                ax.set_title(title)
                ax.set_ylabel("")
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if epochs <= 3:
                    ax.set_xticks(sorted(part["epoch"].unique()))
                    ax.set_xlim(part["epoch"].min() - 0.5, part["epoch"].max() + 0.5)
            legend = axes[0][0].get_legend()
            if legend is not None:
                handles, names = axes[0][0].get_legend_handles_labels()
                legend.remove()
                fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
            fig.suptitle(f"{dataset_name(dataset)}: training curves (mean ± std over runs)")
            fig.tight_layout()
            written += save_figure(fig, out_dir, f"{stem}_{dataset}")
    return written


def per_class_heatmap(per_class: pd.DataFrame, order: Sequence[str], labels: Mapping[str, str],
                      out_dir: str | os.PathLike, stem: str = "per_class_recall") -> list[Path]:
    """Heatmap of mean per-class recall (%), variants x classes, one figure per dataset.

    A class absent from every run's test split of a variant (recall NaN) is left blank and the
    title says so; otherwise the mean is over the runs that have the class.
    """
    written = []
    for dataset in _datasets(per_class):
        part = per_class[per_class["dataset"] == dataset]
        ent = _present(order, part)
        classes = part.drop_duplicates("class_index").sort_values("class_index")
        table = (part.groupby(["entry", "class_index"])["recall"].mean().unstack("class_index")
                 .reindex(index=ent, columns=classes["class_index"]) * 100)
        table.index = [labels.get(e, e) for e in ent]
        table.columns = list(classes["class_name"].astype(str))
        with _style():
            fig, ax = plt.subplots(figsize=(0.62 * table.shape[1] + 3.2, 0.34 * table.shape[0] + 1.3))
            sns.heatmap(table, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".0f",
                        annot_kws={"fontsize": 7}, cbar_kws={"label": "recall (%)", "shrink": 0.8},
                        linewidths=0.4, linecolor="white")
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(axis="x", labelrotation=40)
            plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
            absent = " (blank: class absent, recall undefined)" if table.isna().any().any() else ""
            ax.set_title(f"{dataset_name(dataset)}: per-class test recall (mean over runs){absent}")
            fig.tight_layout()
            written += save_figure(fig, out_dir, f"{stem}_{dataset}")
    return written


def temporal_reliance(summary: pd.DataFrame, probes: pd.DataFrame, order: Sequence[str], labels: Mapping[str, str],
                      palette: Mapping[str, tuple], out_dir: str | os.PathLike,
                      stem: str = "temporal_reliance") -> list[Path]:
    """ΔUAR (pp, perturbed − clean) per perturbation, one marker per variant with its interval
    (:func:`ifdd_bench.reports.stats.probe_summary`; none where the table gives none) and each
    run's Δ as a dot; one panel per dataset."""
    datasets = _datasets(summary)
    entries = _present(order, summary)
    perturbations = [p for p in PERTURBATIONS if p in set(summary["perturbation"])]
    width = 0.8 / max(1, len(entries))
    with _style():
        fig, axes = plt.subplots(len(datasets), 1, figsize=(max(5.0, 1.3 * len(perturbations) + 2.5),
                                                             2.8 * len(datasets)), squeeze=False)
        for r, dataset in enumerate(datasets):
            ax = axes[r][0]
            part = summary[summary["dataset"] == dataset]
            runs = probes[probes["dataset"] == dataset]
            ax.axhline(0.0, color="black", linewidth=0.8, zorder=1)
            for k, entry in enumerate(entries):
                mine = part[part["entry"] == entry].set_index("perturbation")
                if mine.empty:
                    continue
                xs, means, low, high = [], [], [], []
                for i, name in enumerate(perturbations):
                    if name not in mine.index:
                        continue
                    row = mine.loc[name]
                    x = i - 0.4 + width * (k + 0.5)
                    xs.append(x)
                    means.append(100 * row["delta_uar_mean"])
                    has = not np.isnan(row["delta_uar_low"])
                    low.append(100 * (row["delta_uar_mean"] - row["delta_uar_low"]) if has else 0.0)
                    high.append(100 * (row["delta_uar_high"] - row["delta_uar_mean"]) if has else 0.0)
                    dots = 100 * runs.loc[(runs["entry"] == entry) & (runs["perturbation"] == name),
                                          "delta_uar"].to_numpy(dtype=float)
                    if len(dots) > 1:
                        ax.scatter(np.full(len(dots), x), dots, s=6, color="black", alpha=0.5, zorder=3,
                                   linewidths=0)
                ax.errorbar(xs, means, yerr=[low, high], fmt="o", markersize=4.5, color=palette[entry],
                            markeredgecolor="black", markeredgewidth=0.4, elinewidth=0.9, capsize=2.5,
                            label=labels.get(entry, entry), zorder=2)
            ax.set_xticks(range(len(perturbations)))
            ax.set_xticklabels(perturbations)
            ax.set_xlim(-0.5, len(perturbations) - 0.5)
            ax.set_ylabel("ΔUAR (pp), perturbed − clean")
            ax.set_title(f"Temporal reliance on {dataset_name(dataset)}")
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.tight_layout()
        return save_figure(fig, out_dir, stem)

