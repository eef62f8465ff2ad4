"""Aggregation over folds and seeds, and paired statistics against a reference variant (numpy only).

* :func:`aggregate` - mean and sample standard deviation of UAR/WAR per (model, variant, dataset)
  over all (fold, seed) cells, with the number of runs, folds and seeds behind each number.
* :func:`paired_differences` - for each variant, the difference to the reference (``full`` by
  default) on the (dataset, fold, seed) cells both have, with a seeded percentile-bootstrap
  confidence interval of the mean difference and a two-sided sign-flip permutation test.
* :func:`clip_paired_differences` - the same comparison over the test clips of those cells, from the
  runs' ``predictions.csv``: how large a gap test-set sampling alone would produce between these
  two trained models (bootstrap over clips, stratified by class; clip-level swap test).

The sign-flip test asks: if a variant and the reference were exchangeable, each paired difference
would be as likely positive as negative; how often does a random sign pattern give a mean at
least as far from zero as the observed one? With ``n`` pairs it is exact (all ``2**n``
patterns) up to :data:`EXACT_LIMIT` pairs and Monte Carlo beyond. Its smallest attainable
p-value is ``2 / 2**n``: with four paired runs no gap can reach p < 0.125, and reports say so.

Example::

    >>> import pandas as pd
    >>> runs = pd.DataFrame({"model": "ifdd_tiny", "variant": ["full", "full", "x", "x"], "dataset": "d",
    ...                      "fold": [1, 2, 1, 2], "seed": 0, "uar": [.6, .7, .5, .6], "war": .5})
    >>> round(float(paired_differences(runs, metrics=("uar",)).loc[0, "mean_diff"]), 3)
    -0.1
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ifdd_bench.reports.inputs import is_ifdd_model

#: up to this many pairs the sign-flip test enumerates every sign pattern exactly
EXACT_LIMIT = 16
GROUP_KEYS = ("model", "variant", "dataset")
CELL_KEYS = ("fold", "seed")


def aggregate(runs: pd.DataFrame, *, keys: Sequence[str] = GROUP_KEYS,
              metrics: Sequence[str] = ("uar", "war")) -> pd.DataFrame:
    """Mean and sample std (ddof=1) of each metric per group over its (fold, seed) runs.

    Columns: ``keys``, ``n`` (runs), ``folds``, ``seeds``, and ``<metric>_mean`` /
    ``<metric>_std`` for each metric (std is NaN for a single run).
    """
    keys = list(keys)
    rows = []
    for values, part in runs.groupby(keys, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        row = dict(zip(keys, values))
        row["n"] = len(part)
        row["folds"] = part["fold"].nunique() if "fold" in part else np.nan
        row["seeds"] = part["seed"].nunique() if "seed" in part else np.nan
        for metric in metrics:
            vals = part[metric].to_numpy(dtype=float)
            vals = vals[~np.isnan(vals)]
            row[f"{metric}_mean"] = float(vals.mean()) if len(vals) else np.nan
            row[f"{metric}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else np.nan
        rows.append(row)
    columns = keys + ["n", "folds", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    return pd.DataFrame(rows, columns=columns)


def bootstrap_ci(diffs: np.ndarray, *, n_resamples: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``diffs`` (NaNs for fewer than 2)."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) < 2:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(n_resamples, len(diffs)))  # (R, n) resampled pair indices
    means = diffs[idx].mean(axis=1)  # (R,)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def sign_flip_pvalue(diffs: np.ndarray, *, n_resamples: int = 10_000, seed: int = 0) -> tuple[float, str]:
    """Two-sided sign-flip permutation p-value for a mean paired difference of zero.

    Returns ``(p, method)`` where method is ``"exact"`` (every sign pattern, n <= EXACT_LIMIT)
    or ``"monte-carlo"``. All-zero differences give p = 1; no pairs give NaN.
    """
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    if n == 0:
        return np.nan, "none"
    observed = abs(diffs.mean())
    tol = 1e-12 * max(1.0, float(np.abs(diffs).max()))
    if n <= EXACT_LIMIT:
        codes = np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]  # (2^n, n) bit patterns
        signs = 1.0 - 2.0 * (codes & 1)
        means = np.abs((signs * diffs).mean(axis=1))
        return float(np.mean(means >= observed - tol)), "exact"
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_resamples, n))
    means = np.abs((signs * diffs).mean(axis=1))
    return float((np.sum(means >= observed - tol) + 1) / (n_resamples + 1)), "monte-carlo"


def _ifdd_models(frame: pd.DataFrame) -> list[str]:
    """The IFDD-family models in ``frame`` (``ifdd``, ``ifdd_tiny``, ...); each has its own reference."""
    return sorted(m for m in frame["model"].unique() if is_ifdd_model(m))


def _reference_rows(runs: pd.DataFrame, reference: str, ifdd_models: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Reference rows per IFDD model (or per model named ``reference``): {model: rows}."""
    out = {}
    for model in ifdd_models:
        part = runs[(runs["model"] == model) & (runs["variant"] == reference)]
        if not part.empty:
            out[model] = part
    if not out:
        part = runs[runs["model"] == reference]
        if not part.empty:
            out[reference] = part
    return out


def paired_differences(runs: pd.DataFrame, *, reference: str = "full", metrics: Sequence[str] = ("uar", "war"),
                       n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0,
                       ifdd_models: Sequence[str] | None = None) -> pd.DataFrame:
    """Paired differences ``variant - reference`` per dataset over matching (fold, seed) cells.

    ``reference`` is a variant name of the IFDD model(s) in ``runs`` (``full``) or a model name
    (``former_dfer``). Every other (model, variant) of the same dataset is compared with it. One
    output row per (reference model, model, variant, dataset, metric): ``n`` pairs, ``unpaired``
    runs without a partner, ``mean_diff``, ``ci_low``/``ci_high`` (percentile bootstrap, seeded),
    ``p_value`` and ``p_method`` (sign-flip permutation), ``p_min`` (smallest attainable p for n).
    Differences are fractions (multiply by 100 for percentage points).
    """
    if ifdd_models is None:
        ifdd_models = _ifdd_models(runs)
    refs = _reference_rows(runs, reference, ifdd_models)
    rows = []
    for ref_model, ref_rows in refs.items():
        for dataset, ref_part in ref_rows.groupby("dataset", sort=False):
            ref_cells = ref_part.groupby(list(CELL_KEYS))[list(metrics)].mean()
            others = runs[(runs["dataset"] == dataset) & ~runs.index.isin(ref_part.index)]
            if ref_model in ifdd_models:  # other IFDD models have their own reference
                others = others[~others["model"].isin([m for m in ifdd_models if m != ref_model])]
            for (model, variant), part in others.groupby(["model", "variant"], sort=False):
                cells = part.groupby(list(CELL_KEYS))[list(metrics)].mean()
                common = cells.index.intersection(ref_cells.index)
                unpaired = len(cells.index.difference(ref_cells.index)) + len(ref_cells.index.difference(cells.index))
                for k, metric in enumerate(metrics):
                    diffs = (cells.loc[common, metric] - ref_cells.loc[common, metric]).dropna().to_numpy()
                    low, high = bootstrap_ci(diffs, n_resamples=n_resamples, confidence=confidence, seed=seed + k)
                    p, method = sign_flip_pvalue(diffs, n_resamples=n_resamples, seed=seed + k)
                    rows.append(dict(
                        reference_model=ref_model, reference=reference, model=model, variant=variant,
                        dataset=dataset, metric=metric, n=len(diffs), unpaired=unpaired,
                        mean_diff=float(diffs.mean()) if len(diffs) else np.nan,
                        ci_low=low, ci_high=high, confidence=confidence, n_resamples=n_resamples,
                        p_value=p, p_method=method,
                        p_min=(2.0 / 2 ** len(diffs) if 0 < len(diffs) <= EXACT_LIMIT else np.nan),
                    ))
    columns = ["reference_model", "reference", "model", "variant", "dataset", "metric", "n", "unpaired",
               "mean_diff", "ci_low", "ci_high", "confidence", "n_resamples", "p_value", "p_method", "p_min"]
    return pd.DataFrame(rows, columns=columns)


def _cell_clip_terms(ref: pd.DataFrame, other: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Align one cell's test predictions by ``clip_id``: per-clip UAR and WAR terms and labels.

    Returns ``(d_uar, d_war, labels)`` where summing ``d_uar`` gives UAR(other) - UAR(ref) and
    summing ``d_war`` gives WAR(other) - WAR(ref), or ``None`` when the two runs did not predict the
    same clips with the same labels (then the cell cannot be paired clip by clip).
    """
    if len(ref) != len(other) or ref["clip_id"].duplicated().any():
        return None
    merged = ref.merge(other, on="clip_id", suffixes=("_r", "_o"))
    if len(merged) != len(ref) or not (merged["label_r"] == merged["label_o"]).all():
        return None
    labels = merged["label_r"].to_numpy(dtype=int)
    diff = ((merged["pred_o"] == merged["label_o"]).to_numpy(dtype=float)
            - (merged["pred_r"] == merged["label_r"]).to_numpy(dtype=float))  # (n,) in {-1, 0, 1}
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    uar_weight = 1.0 / (len(classes) * counts[inverse])  # UAR = sum_i weight_i * correct_i
    return diff * uar_weight, diff / len(labels), labels


#: bootstrap / swap draws are made in blocks of this many resamples (memory: block x clips floats)
DRAW_BLOCK = 1000


def _stratified_counts(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, n)`` bootstrap counts: how often each clip is drawn when every class is resampled
    within itself (class supports, hence UAR's weights, stay fixed)."""
    n = len(labels)
    drawn = np.empty((size, n), dtype=np.int64)  # (size, n) clip index of every draw
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        drawn[:, members] = members[rng.integers(0, len(members), size=(size, len(members)))]
    flat = (drawn + np.arange(size)[:, None] * n).ravel()  # row-offset so one bincount counts every row
    return np.bincount(flat, minlength=size * n).reshape(size, n).astype(float)


def clip_paired_differences(predictions: pd.DataFrame, *, reference: str = "full", n_resamples: int = 10_000,
                            confidence: float = 0.95, seed: int = 0,
                            ifdd_models: Sequence[str] | None = None) -> pd.DataFrame:
    """Paired ``variant - reference`` differences over the test clips both runs predicted.

    ``predictions`` holds the test predictions of every run (``run_id, model, variant, dataset,
    fold, seed, clip_id, label, pred``; :func:`ifdd_bench.reports.inputs.load_predictions`). Pairs
    are made as in :func:`paired_differences`, per (dataset, fold, seed) cell, then clip by clip.
    With several cells, the difference is the mean of the per-cell differences.

    * CI: percentile bootstrap that resamples each cell's test clips within each class (so class
      supports and hence UAR's weights stay fixed), the same clips for both runs.
    * p: two-sided swap test: each clip's two predictions are exchanged with probability 1/2
      (flipping the sign of that clip's contribution), ``n_resamples`` times, seeded; ``(1 + k) /
      (1 + R)`` with ``k`` swaps at least as extreme as the observed difference.

    The draws of a cell are shared by every entry compared with the reference there. The trained
    models are held fixed: this measures test-set sampling, not training-seed variance (that is
    :func:`paired_differences`). Columns as there, plus ``cells``, ``clips`` (paired clips) and
    ``skipped_cells`` (cells whose two runs predicted different clips).
    """
    if ifdd_models is None:
        ifdd_models = _ifdd_models(predictions)
    alpha = (1.0 - confidence) / 2.0
    rows = []
    for ref_model, ref_rows in _reference_rows(predictions, reference, ifdd_models).items():
        for dataset, ref_part in ref_rows.groupby("dataset", sort=False):
            ref_cells = dict(iter(ref_part.groupby(list(CELL_KEYS))))
            others = predictions[(predictions["dataset"] == dataset) & ~predictions.index.isin(ref_part.index)]
            if ref_model in ifdd_models:
                others = others[~others["model"].isin([m for m in ifdd_models if m != ref_model])]
            # per entry: {cell: (n, 2) per-clip UAR / WAR terms}, and the cells that could not be paired
            terms: dict[tuple[str, str], dict] = {}
            skipped: dict[tuple[str, str], int] = {}
            for entry, part in others.groupby(["model", "variant"], sort=False):
                terms[entry], skipped[entry] = {}, 0
                for cell, cell_part in part.groupby(list(CELL_KEYS)):
                    if cell in ref_cells:
                        aligned = _cell_clip_terms(ref_cells[cell], cell_part)
                        if aligned is None:
                            skipped[entry] += 1
                        else:
                            terms[entry][cell] = np.stack(aligned[:2], axis=1)
            boot = {e: np.zeros((n_resamples, 2)) for e in terms}  # summed over cells; columns uar, war
            swap = {e: np.zeros((n_resamples, 2)) for e in terms}
            rng = np.random.default_rng(seed)
            for cell in sorted(ref_cells):  # every reference cell draws, used or not: seeded, order-free
                labels = ref_cells[cell]["label"].to_numpy(dtype=int)
                users = [e for e in terms if cell in terms[e]]
                # every user's two columns side by side: one matrix product per block for all of them
                stacked = np.concatenate([terms[e][cell] for e in users], axis=1) if users else None  # (n, 2U)
                for start in range(0, n_resamples, DRAW_BLOCK):
                    size = min(DRAW_BLOCK, n_resamples - start)
                    counts = _stratified_counts(labels, size, rng)  # (size, n)
                    signs = rng.integers(0, 2, size=(size, len(labels))) * 2.0 - 1.0  # (size, n) in {-1, 1}
                    if stacked is None:
                        continue
                    boot_block, swap_block = counts @ stacked, signs @ stacked  # (size, 2U) each
                    for j, e in enumerate(users):
                        boot[e][start:start + size] += boot_block[:, 2 * j:2 * j + 2]
                        swap[e][start:start + size] += swap_block[:, 2 * j:2 * j + 2]
            for (model, variant), cells in terms.items():
                n_cells = len(cells)
                observed = sum(t.sum(axis=0) for t in cells.values()) / max(n_cells, 1)  # (2,)
                for k, metric in enumerate(("uar", "war")):
                    row = dict(reference_model=ref_model, reference=reference, model=model, variant=variant,
                               dataset=dataset, metric=metric, cells=n_cells,
                               clips=sum(len(t) for t in cells.values()), skipped_cells=skipped[(model, variant)],
                               mean_diff=np.nan, ci_low=np.nan, ci_high=np.nan, confidence=confidence,
                               n_resamples=n_resamples, p_value=np.nan)
                    if n_cells:
                        low, high = np.quantile(boot[(model, variant)][:, k] / n_cells, [alpha, 1.0 - alpha])
                        extreme = np.abs(swap[(model, variant)][:, k] / n_cells) >= abs(observed[k]) - 1e-9
                        row.update(mean_diff=float(observed[k]), ci_low=float(low), ci_high=float(high),
                                   p_value=float((extreme.sum() + 1) / (n_resamples + 1)))
                    rows.append(row)
    columns = ["reference_model", "reference", "model", "variant", "dataset", "metric", "cells", "clips",
               "skipped_cells", "mean_diff", "ci_low", "ci_high", "confidence", "n_resamples", "p_value"]
    return pd.DataFrame(rows, columns=columns)


def format_pm(mean: float, std: float, *, scale: float = 100.0, digits: int = 2, sep: str = " ± ") -> str:
    """``"63.41 ± 0.52"`` from fractions (``scale`` 100 prints percent); NaN std prints the mean alone."""
    if mean is None or np.isnan(mean):
        return ""
    text = f"{mean * scale:.{digits}f}"
    if std is not None and not np.isnan(std):
        text += f"{sep}{std * scale:.{digits}f}"
    return text
