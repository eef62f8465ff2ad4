"""Paired differences over test clips with the trained models held fixed (numpy only, no torch).

The one home of the clip-level pieces that the report's clip table
(:func:`ifdd_bench.reports.stats.clip_paired_differences`: variant vs reference) and the
temporal-reliance probes (:mod:`ifdd_bench.engine.probes`: perturbed vs clean input) share:

* :func:`clip_terms` - per-clip contributions whose sums are the UAR and WAR differences;
* :func:`stratified_counts` - bootstrap draw counts that resample clips within their class, so
  class supports (and hence UAR's weights) stay fixed;
* :func:`paired_clip_intervals` - Δ and its percentile bootstrap interval for several
  comparisons against one reference on the same clips, from one set of draws.

Example::

    >>> labels = np.array([0, 0, 1, 1])
    >>> ref = np.array([True, True, True, False])
    >>> other = np.array([[True], [False], [False], [False]])        # (n, P): one comparison
    >>> out = paired_clip_intervals(labels, ref, other, n_resamples=200)
    >>> round(float(out["delta_uar"][0]), 3), round(float(out["delta_war"][0]), 3)
    (-0.5, -0.5)
"""

from __future__ import annotations

import numpy as np

#: bootstrap draws are made in blocks of this many resamples (memory: block x clips floats)
DRAW_BLOCK = 1000
#: how the interval of :func:`paired_clip_intervals` is computed (the ``ci_method`` of its rows)
CLIP_CI_METHOD = "percentile bootstrap over test clips within class, models fixed"


def clip_terms(labels: np.ndarray, ref_correct: np.ndarray, other_correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(d_uar, d_war)``, each ``(n,)`` or ``(n, P)`` like ``other_correct``: per-clip terms whose
    sums are UAR(other) - UAR(ref) and WAR(other) - WAR(ref).

    UAR is the mean recall over the classes present in ``labels`` (the engine's rule), so a clip of
    a class with ``c`` clips among ``k`` present classes weighs ``1 / (k c)``; WAR weighs every clip
    ``1 / n``. ``ref_correct`` is ``(n,)``; ``other_correct`` is ``(n,)`` or ``(n, P)``.
    """
    labels = np.asarray(labels)
    other = np.asarray(other_correct, dtype=float)
    ref = np.asarray(ref_correct, dtype=float)
    diff = other - (ref[:, None] if other.ndim == 2 else ref)  # (n,) or (n, P) in {-1, 0, 1}
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    uar_weight = 1.0 / (len(classes) * counts[inverse])  # (n,): UAR = sum_i weight_i * correct_i
    if diff.ndim == 2:
        uar_weight = uar_weight[:, None]
    return diff * uar_weight, diff / len(labels)


def stratified_counts(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, n)`` bootstrap counts: how often each clip is drawn when every class is resampled
    within itself (class supports, hence UAR's weights, stay fixed)."""
    n = len(labels)
    drawn = np.empty((size, n), dtype=np.int64)  # (size, n) clip index of every draw
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        drawn[:, members] = members[rng.integers(0, len(members), size=(size, len(members)))]
    flat = (drawn + np.arange(size)[:, None] * n).ravel()  # row-offset so one bincount counts every row
    return np.bincount(flat, minlength=size * n).reshape(size, n).astype(float)


def paired_clip_intervals(labels: np.ndarray, ref_correct: np.ndarray, other_correct: np.ndarray, *,
                          n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> dict[str, np.ndarray]:
    """Δ = other - ref of UAR and WAR for each of P comparisons on the same n clips, with the
    percentile bootstrap interval over clips resampled within class.

    ``labels`` ``(n,)``, ``ref_correct`` ``(n,)`` and ``other_correct`` ``(n, P)`` (booleans: was
    the clip predicted right). All P comparisons use the same draws, which depend only on
    ``labels``, ``n_resamples`` and ``seed``: a comparison's interval does not change with the
    others asked for. Returns ``delta_uar``, ``delta_war``, ``uar_low``, ``uar_high``,
    ``war_low``, ``war_high``, each ``(P,)`` (fractions). Fewer than 2 clips give NaN intervals.
    """
    labels = np.asarray(labels, dtype=int)
    other = np.asarray(other_correct, dtype=bool)
    if other.ndim != 2 or other.shape[0] != len(labels) or len(ref_correct) != len(labels):
        raise ValueError(f"expected labels (n,), ref (n,), other (n, P); got {labels.shape}, "
                         f"{np.shape(ref_correct)}, {other.shape}")
    d_uar, d_war = clip_terms(labels, ref_correct, other)  # (n, P) each
    stacked = np.concatenate([d_uar, d_war], axis=1)  # (n, 2P)
    p = other.shape[1]
    out = {"delta_uar": d_uar.sum(axis=0), "delta_war": d_war.sum(axis=0)}
    if len(labels) < 2:
        nan = np.full(p, np.nan)
        return {**out, "uar_low": nan, "uar_high": nan.copy(), "war_low": nan.copy(), "war_high": nan.copy()}
    rng = np.random.default_rng(seed)
    boot = np.empty((n_resamples, 2 * p))  # (R, 2P) resampled differences
    for start in range(0, n_resamples, DRAW_BLOCK):
        size = min(DRAW_BLOCK, n_resamples - start)
        boot[start:start + size] = stratified_counts(labels, size, rng) @ stacked  # (size, 2P)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)  # (2P,) each
    return {**out, "uar_low": low[:p], "uar_high": high[:p], "war_low": low[p:], "war_high": high[p:]}
