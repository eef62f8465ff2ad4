"""Aggregation over folds and seeds, and paired statistics against a reference variant (numpy only).

* :func:`aggregate` - mean and sample standard deviation of UAR/WAR per (model, variant, dataset)
  over all (fold, seed) cells, with the number of runs, folds and seeds behind each number.
* :func:`paired_differences` - for each variant, the difference to the reference (``full`` by
  default) on the (dataset, fold, seed) cells both have: paired t-test and, from
  :data:`MIN_PAIRS_FOR_INTERVAL` pairs on, the paired t-interval of the mean difference; the
  p-values of one table's comparisons are Holm-adjusted together (:func:`holm`).
* :func:`control_differences` - the same comparison with each control of :data:`CONTROLS` (the
  static control, the GAP head) as the reference, for every entry that is not a control.
* :func:`clip_paired_differences` - the same comparison over the test clips of those cells, from the
  runs' ``predictions.csv``, with the trained models held fixed: how large a gap test-set sampling
  alone would produce between these two trained models (bootstrap over clips, stratified by
  class; clip-level swap test). It says nothing about the variation between training runs.
* :func:`probe_summary` - the temporal-reliance probes (``probes.csv``) per entry and
  perturbation: mean Δ = perturbed − clean over runs with the t-interval of :func:`paired_t`
  (each run's Δ is already paired: the same model on the same clips), and for an entry with a
  single run that run's clip bootstrap interval.

Why a t-interval and not a bootstrap across runs: a percentile bootstrap of the mean of 2-3
values can only return values between the smallest and the largest difference and so claims far
more certainty than the data give (two runs 1.3 and 4.4 pp apart give "CI [+1.3, +4.4]"). The
t-interval widens with few pairs as it should (t = 12.7 for 2 pairs, 2.78 for 5), and agrees
with the paired t-test: the 95% interval excludes 0 exactly when the unadjusted p < 0.05. Below
:data:`MIN_PAIRS_FOR_INTERVAL` pairs no interval is given: its width would rest on a standard
deviation estimated from 2-4 values and on a normality assumption they cannot check.

The t distribution is computed in closed form for integer degrees of freedom
(:func:`t_central_mass`), so the reports need no statistics package.

Example::

    >>> import pandas as pd
    >>> runs = pd.DataFrame({"model": "ifdd_tiny", "variant": ["full", "full", "x", "x"], "dataset": "d",
    ...                      "fold": [1, 2, 1, 2], "seed": 0, "uar": [.6, .7, .5, .6], "war": .5})
    >>> round(float(paired_differences(runs, metrics=("uar",)).loc[0, "mean_diff"]), 3)
    -0.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ifdd_bench.config import PERTURBATIONS
from ifdd_bench.clipstats import CLIP_CI_METHOD, DRAW_BLOCK, clip_terms, stratified_counts
from ifdd_bench.reports.inputs import ifdd_models_in, is_ifdd_model

#: fewest paired runs for which a t-interval is given (below it: no interval, and the table says why)
MIN_PAIRS_FOR_INTERVAL = 5
#: the comparisons whose p-values are Holm-adjusted together: one table's, per metric and reference
HOLM_FAMILY = ("reference_model", "reference", "metric")
#: how the across-run p-value is computed (``p_method`` column)
RUN_P_METHOD = "paired t-test, two-sided"
#: how the clip-level interval and p are computed (``ci_method`` / ``p_method`` columns)
CLIP_P_METHOD = "clip swap test, two-sided, Monte Carlo"
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


# --------------------------------------------------------------------------------------------
# Student's t distribution (integer degrees of freedom) without scipy


def t_central_mass(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` (a positive integer) degrees of freedom.

    Uses the closed form that exists for integer ``df`` (Abramowitz & Stegun 26.7.3 and 26.7.4):
    with ``theta = atan(t / sqrt(df))`` and ``c = cos(theta) ** 2``,

    * odd ``df``: ``(2 / pi) * (theta + sin(theta) cos(theta) * (1 + 2/3 c + (2*4)/(3*5) c**2 + ...))``,
      the series having ``(df - 1) / 2`` terms (none for ``df = 1``: the Cauchy case ``2 theta / pi``);
    * even ``df``: ``sin(theta) * (1 + 1/2 c + (1*3)/(2*4) c**2 + ...)`` with ``df / 2`` terms.

    Exact up to floating-point rounding, so no statistics package is needed.

    >>> round(t_central_mass(2.7764451, 4), 6)   # the tabulated 97.5% point of t with 4 df
    0.95
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    df = int(df)
    t = abs(float(t))
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    c = cos * cos
    term, total = 1.0, 1.0
    if df % 2:
        for k in range(1, (df - 1) // 2):  # terms 2/3 c, (2*4)/(3*5) c^2, ...
            term *= c * (2 * k) / (2 * k + 1)
            total += term
        series = sin * cos * total if df > 1 else 0.0
        return min(1.0, 2.0 / math.pi * (theta + series))
    for k in range(1, df // 2):  # terms 1/2 c, (1*3)/(2*4) c^2, ...
        term *= c * (2 * k - 1) / (2 * k)
        total += term
    return min(1.0, sin * total)


def t_two_sided_pvalue(t: float, df: int) -> float:
    """Two-sided p-value ``P(|T| >= |t|)`` of a t statistic with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    return max(0.0, 1.0 - t_central_mass(t, df))


def t_quantile(confidence: float, df: int) -> float:
    """The ``t`` with ``P(|T| <= t) = confidence``: the half-width factor of a two-sided interval.

    ``t_quantile(0.95, df)`` is the familiar 97.5% point (12.706 for 1 df, 2.571 for 5 df);
    found by bisection on :func:`t_central_mass`, which increases with ``t``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    low, high = 0.0, 1.0
    while t_central_mass(high, df) < confidence:
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if t_central_mass(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * high:
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class PairedT:
    """Summary of ``n`` paired differences: mean, sample std, paired t-test and (maybe) t-interval.

    ``ci_low`` / ``ci_high`` are NaN when ``n < min_pairs`` (see :data:`MIN_PAIRS_FOR_INTERVAL`);
    ``t_stat`` / ``p_value`` are NaN for fewer than 2 pairs.
    """

    n: int
    mean: float
    std: float
    t_stat: float
    df: int
    p_value: float
    ci_low: float
    ci_high: float


def paired_t(diffs: Sequence[float], *, confidence: float = 0.95,
             min_pairs: int = MIN_PAIRS_FOR_INTERVAL) -> PairedT:
    """Paired t-test of mean difference zero and the t-interval ``mean ± t * s / sqrt(n)``.

    The p-value is two-sided from Student's t with ``n - 1`` degrees of freedom: exact when the
    differences are independent draws from one normal distribution. The interval is returned only
    from ``min_pairs`` pairs on. All differences equal give ``s = 0``: ``p = 0`` for a non-zero
    mean (``t`` infinite), 1 for a zero mean, and a zero-width interval.

    >>> r = paired_t([0.01, 0.02, 0.03, 0.02, 0.02])
    >>> round(r.mean, 3), round(r.ci_low, 4), round(r.ci_high, 4), round(r.p_value, 4)
    (0.02, 0.0112, 0.0288, 0.0032)
    """
    d = np.asarray(diffs, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n == 0:
        return PairedT(0, math.nan, math.nan, math.nan, 0, math.nan, math.nan, math.nan)
    mean = float(d.mean())
    if n == 1:
        return PairedT(1, mean, math.nan, math.nan, 0, math.nan, math.nan, math.nan)
    std = float(d.std(ddof=1))
    se = std / math.sqrt(n)
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if se <= tol:  # every difference the same
        t_stat = 0.0 if abs(mean) <= tol else math.copysign(math.inf, mean)
    else:
        t_stat = mean / se
    p = 1.0 if t_stat == 0.0 else t_two_sided_pvalue(t_stat, n - 1)
    low = high = math.nan
    if n >= min_pairs:
        half = t_quantile(confidence, n - 1) * se
        low, high = mean - half, mean + half
    return PairedT(n, mean, std, t_stat, n - 1, p, low, high)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaNs are left out of the family).

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i + 1`` (``i`` from 1), capped at
    1, and made non-decreasing in that order. Rejecting where the adjusted p is below ``alpha``
    keeps the chance of any false rejection in the family at most ``alpha``, whatever the
    dependence between the tests.

    >>> holm([0.01, 0.04, 0.03, float("nan")]).round(3).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    running = 0.0
    for rank, idx in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def add_holm(frame: pd.DataFrame, family: Sequence[str]) -> pd.DataFrame:
    """Add ``p_holm`` (Holm-adjusted ``p_value``) and ``holm_family_size`` per ``family`` group."""
    frame = frame.copy()
    frame["p_holm"] = np.nan
    frame["holm_family_size"] = 0
    if frame.empty:
        return frame
    for _, part in frame.groupby(list(family), sort=False):
        frame.loc[part.index, "p_holm"] = holm(part["p_value"].to_numpy(dtype=float))
        frame.loc[part.index, "holm_family_size"] = int(part["p_value"].notna().sum())
    return frame


# --------------------------------------------------------------------------------------------
# resampling helpers for samples of many values (used by reports.slots over test clips)

#: up to this many values the sign-flip test enumerates every sign pattern exactly
EXACT_LIMIT = 16


def bootstrap_ci(diffs: np.ndarray, *, n_resamples: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``diffs`` (NaNs for fewer than 2).

    For samples of many values (the per-clip quantities of :mod:`ifdd_bench.reports.slots`); not
    used across runs, where 2-5 values make a percentile bootstrap far too narrow (:func:`paired_t`).
    """
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


def _reference_rows(runs: pd.DataFrame, reference: str, ifdd_models: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Reference rows per IFDD model (or, when ``reference`` names a model, that model's ``full``
    variant, which the tables label as the reference): {model: rows}."""
    out = {}
    for model in ifdd_models:
        part = runs[(runs["model"] == model) & (runs["variant"] == reference)]
        if not part.empty:
            out[model] = part
    if not out:
        part = runs[(runs["model"] == reference) & (runs["variant"] == "full")]
        if not part.empty:
            out[reference] = part
    return out


RUN_COLUMNS = ["reference_model", "reference", "model", "variant", "dataset", "metric", "n", "unpaired",
               "mean_diff", "std_diff", "ci_low", "ci_high", "ci_method", "confidence", "t_stat", "df",
               "p_value", "p_method", "p_holm", "holm_family_size"]


def paired_differences(runs: pd.DataFrame, *, reference: str = "full", metrics: Sequence[str] = ("uar", "war"),
                       confidence: float = 0.95, min_pairs: int = MIN_PAIRS_FOR_INTERVAL,
                       ifdd_models: Sequence[str] | None = None) -> pd.DataFrame:
    """Paired differences ``variant - reference`` per dataset over matching (fold, seed) cells.

    ``reference`` is a variant name of the IFDD model(s) in ``runs`` (``full``) or a model name
    (``former_dfer``). Every other (model, variant) of the same dataset is compared with it. One
    output row per (reference model, model, variant, dataset, metric) with the columns of
    :data:`RUN_COLUMNS`:

    * ``n`` pairs, ``unpaired`` runs without a partner, ``mean_diff`` and ``std_diff`` (sample std
      of the differences);
    * ``ci_low`` / ``ci_high``: paired t-interval at ``confidence``, NaN below ``min_pairs`` pairs
      (``ci_method`` then says ``none: n < 5``);
    * ``t_stat``, ``df`` (n - 1), ``p_value``: two-sided paired t-test (:func:`paired_t`);
    * ``p_holm``: Holm-adjusted over the comparisons of one table, i.e. per (reference model,
      reference, metric) across datasets and entries (:data:`HOLM_FAMILY`), and
      ``holm_family_size`` (the number of p-values adjusted together).

    Differences are fractions (multiply by 100 for percentage points).
    """
    if ifdd_models is None:
        ifdd_models = ifdd_models_in(runs)
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
                for metric in metrics:
                    diffs = (cells.loc[common, metric] - ref_cells.loc[common, metric]).dropna().to_numpy()
                    r = paired_t(diffs, confidence=confidence, min_pairs=min_pairs)
                    rows.append(dict(
                        reference_model=ref_model, reference=reference, model=model, variant=variant,
                        dataset=dataset, metric=metric, n=r.n, unpaired=unpaired, mean_diff=r.mean,
                        std_diff=r.std, ci_low=r.ci_low, ci_high=r.ci_high,
                        ci_method="paired t" if r.n >= min_pairs else f"none: n < {min_pairs}",
                        confidence=confidence, t_stat=r.t_stat, df=r.df, p_value=r.p_value,
                        p_method=RUN_P_METHOD if r.n >= 2 else "none: n < 2",
                    ))
    frame = pd.DataFrame(rows, columns=[c for c in RUN_COLUMNS if c not in ("p_holm", "holm_family_size")])
    return add_holm(frame, HOLM_FAMILY)[RUN_COLUMNS]


#: the entries without a temporal module that :func:`control_differences` compares every other
#: entry with: the per-frame static control (a model) and IFDD's GAP head (a variant: the same
#: backbone's tokens averaged over time and space before the classifier)
CONTROLS = ("static_control", "gap")


def is_control(model: str, variant: str, controls: Sequence[str] = CONTROLS) -> bool:
    """True for an entry that is one of ``controls``: any variant of a control model, or an IFDD
    variant named in ``controls``."""
    return model in controls or (is_ifdd_model(model) and variant in controls)


def control_differences(runs: pd.DataFrame, *, controls: Sequence[str] = CONTROLS,
                        metrics: Sequence[str] = ("uar", "war"), confidence: float = 0.95,
                        min_pairs: int = MIN_PAIRS_FOR_INTERVAL,
                        ifdd_models: Sequence[str] | None = None) -> pd.DataFrame:
    """Paired differences ``entry - control`` of every entry that is not itself a control.

    For each name in ``controls`` that has runs (a model, compared through its ``full`` variant, or
    an IFDD variant, compared within each IFDD model), the rows of :func:`paired_differences` with
    that name as reference, minus the comparisons between two controls. Columns
    :data:`RUN_COLUMNS`; ``reference`` names the control. ``p_holm`` is adjusted per control and
    metric over the entries left (:data:`HOLM_FAMILY`). Empty when no control has runs.
    """
    if ifdd_models is None:
        ifdd_models = ifdd_models_in(runs)
    frames = []
    for control in controls:
        diffs = paired_differences(runs, reference=control, metrics=metrics, confidence=confidence,
                                   min_pairs=min_pairs, ifdd_models=ifdd_models)
        keep = [not is_control(m, v, controls) for m, v in zip(diffs["model"], diffs["variant"])]
        frames.append(diffs[keep])
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=RUN_COLUMNS)
    frame = pd.concat(frames, ignore_index=True).drop(columns=["p_holm", "holm_family_size"])
    return add_holm(frame, HOLM_FAMILY)[RUN_COLUMNS]


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
    d_uar, d_war = clip_terms(labels, (merged["pred_r"] == merged["label_r"]).to_numpy(),
                              (merged["pred_o"] == merged["label_o"]).to_numpy())
    return d_uar, d_war, labels


CLIP_COLUMNS = ["reference_model", "reference", "model", "variant", "dataset", "metric", "cells", "clips",
                "skipped_cells", "mean_diff", "ci_low", "ci_high", "ci_method", "confidence", "n_resamples",
                "p_value", "p_method", "p_holm", "holm_family_size"]

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
    :func:`paired_differences`). Columns: :data:`CLIP_COLUMNS`, i.e. the keys as there, ``cells``,
    ``clips`` (paired clips), ``skipped_cells`` (cells whose two runs predicted different clips),
    the interval and p with their ``ci_method`` / ``p_method``, and ``p_holm`` Holm-adjusted per
    (reference model, reference, metric) like :func:`paired_differences`.
    """
    if ifdd_models is None:
        ifdd_models = ifdd_models_in(predictions)
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
                    counts = stratified_counts(labels, size, rng)  # (size, n)
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
                               mean_diff=np.nan, ci_low=np.nan, ci_high=np.nan, ci_method=CLIP_CI_METHOD,
                               confidence=confidence, n_resamples=n_resamples, p_value=np.nan,
                               p_method=CLIP_P_METHOD)
                    if n_cells:
                        low, high = np.quantile(boot[(model, variant)][:, k] / n_cells, [alpha, 1.0 - alpha])
                        extreme = np.abs(swap[(model, variant)][:, k] / n_cells) >= abs(observed[k]) - 1e-9
                        row.update(mean_diff=float(observed[k]), ci_low=float(low), ci_high=float(high),
                                   p_value=float((extreme.sum() + 1) / (n_resamples + 1)))
                    rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in CLIP_COLUMNS if c not in ("p_holm", "holm_family_size")])
    return add_holm(frame, HOLM_FAMILY)[CLIP_COLUMNS]


#: the ``ci_method`` of :func:`probe_summary` rows with a single run: that run's interval from probes.csv
PROBE_CLIP_CI = "one run: clip bootstrap, model fixed"
PROBE_COLUMNS = ["model", "variant", "entry", "dataset", "perturbation", "n", "clean_uar_mean", "uar_mean",
                 "delta_uar_mean", "delta_uar_std", "delta_uar_low", "delta_uar_high", "clean_war_mean", "war_mean",
                 "delta_war_mean", "delta_war_std", "delta_war_low", "delta_war_high", "ci_method", "confidence"]


def probe_summary(probes: pd.DataFrame, *, confidence: float = 0.95,
                  min_pairs: int = MIN_PAIRS_FOR_INTERVAL) -> pd.DataFrame:
    """Temporal-reliance probes per (model, variant, dataset, perturbation), over the entry's runs.

    ``probes`` holds one row per (run, perturbation) (:func:`ifdd_bench.reports.inputs.load_probes`).
    Columns (:data:`PROBE_COLUMNS`): ``n`` runs; means of the clean and perturbed UAR / WAR; for
    ΔUAR and ΔWAR (perturbed − clean, fractions) the mean, sample std and interval:

    * from ``min_pairs`` runs on, the t-interval of the mean over runs (``ci_method`` ``paired t``);
    * with one run, that run's clip bootstrap interval from probes.csv (:data:`PROBE_CLIP_CI`):
      test-set sampling with the model fixed, not training variation;
    * otherwise none (``none: n < 5``).
    """
    rows = []
    keys = ["model", "variant", "entry", "dataset", "perturbation"]
    for values, part in probes.groupby(keys, sort=False):
        row = dict(zip(keys, values))
        n = len(part)
        row["n"] = n
        for metric in ("uar", "war"):
            row[f"clean_{metric}_mean"] = float(part[f"clean_{metric}"].mean())
            row[f"{metric}_mean"] = float(part[metric].mean())
            r = paired_t(part[f"delta_{metric}"].to_numpy(dtype=float), confidence=confidence, min_pairs=min_pairs)
            low, high = r.ci_low, r.ci_high
            if n == 1:
                low = float(part[f"delta_{metric}_low"].iloc[0])
                high = float(part[f"delta_{metric}_high"].iloc[0])
            row.update({f"delta_{metric}_mean": r.mean, f"delta_{metric}_std": r.std,
                        f"delta_{metric}_low": low, f"delta_{metric}_high": high})
        row["ci_method"] = ("paired t" if n >= min_pairs else PROBE_CLIP_CI if n == 1 else f"none: n < {min_pairs}")
        row["confidence"] = confidence
        rows.append(row)
    frame = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    order = {p: i for i, p in enumerate(PERTURBATIONS)}
    return frame.sort_values("perturbation", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def format_pm(mean: float, std: float, *, scale: float = 100.0, digits: int = 2, sep: str = " ± ") -> str:
    """``"63.41 ± 0.52"`` from fractions (``scale`` 100 prints percent); NaN std prints the mean alone."""
    if mean is None or np.isnan(mean):
        return ""
    text = f"{mean * scale:.{digits}f}"
    if std is not None and not np.isnan(std):
        text += f"{sep}{std * scale:.{digits}f}"
    return text
