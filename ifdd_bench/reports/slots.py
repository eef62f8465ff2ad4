"""The ISSM slot visualiser and slot statistics, rendered from a capture archive (no torch).

Named after ISSM's approximation / detail *slots* so that "split" keeps one meaning in the code:
the train / val / test split of a dataset. The command (``ifdd-bench viz splits``), the output
folder (``results/splits/``) and the file names it writes (``split_<clip>.png``,
``split_positions.png``, ``split_stats.csv/.md``) keep their published names, since users and
committed files depend on them.

:mod:`ifdd_bench.engine.capture` runs a trained IFDD checkpoint over clips and saves what the
inter-frame static-dynamic splitting module (ISSM) did to ``capture.npz``. This module turns that
archive into

* one figure per chosen clip (:func:`plot_clip`): the frame strip with the true expression
  intensity and apex (SynthDFER), the fractional token positions ISSM chose for the approximation
  and detail groups against the lazy even/odd lattice, the inter-frame similarity matrix, and where
  the detail stream attends (per token and per detail slot in space);
* the slot statistics over a whole split (:func:`slot_statistics`): how much of the detail
  group's sampling weight lands on expression tokens, against the lazy odd split it replaces and
  against chance, with bootstrap confidence intervals and a paired sign-flip test - a quantitative
  check of IFDD's claim that ISSM routes emotion-related dynamics into the detail group.

Archive keys (arrays over ``N`` clips, ``S = 4`` slots per group, ``T'`` temporal tokens)::

    clip_ids (N,) str          labels, preds (N,) int       pos_a, pos_d (N, S) float
    similarity (N, T', T')     detail_token_mass (N, T')    detail_spatial (N, S, h, w)
    frame_index (N, T) int     lazy_a, lazy_d (S,) float    meta: JSON string
    grid_a, grid_d (S,) float  (optional) ISSM's positions at zero offsets under its grid convention
    intensity (N, F) float, onset/apex/offset (N,) int      (ground truth; SynthDFER only)
    strip_ids (M,) str, strip (M, T, H, W, 3) uint8          (frames of the clips to draw)

Positions are continuous sampling coordinates on the token axis (``0 .. T'-1``): slot ``k`` mixes
tokens ``floor(p)`` and ``floor(p) + 1`` with weights ``1 - frac(p)`` and ``frac(p)``. Token ``t``
covers input frames ``t * r .. t * r + r - 1`` with ``r = T / T'`` (2 for IFDD's tubelets), and
input frame ``j`` shows source frame ``frame_index[j]`` of the clip.

Example::

    >>> cap = load_capture("viz/capture.npz")                     # doctest: +SKIP
    >>> slot_statistics(cap)[["quantity", "estimate", "ci_low", "ci_high"]]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ifdd_bench.atomic import atomic_path, write_text_atomic
from ifdd_bench.errors import ConfigError, DataError, suggest
from ifdd_bench.reports.stats import bootstrap_ci, sign_flip_pvalue

#: a token is an "expression token" when its mean intensity reaches this fraction of the clip's peak
EXPRESSION_THRESHOLD = 0.5
REQUIRED_KEYS = ("clip_ids", "labels", "pos_a", "pos_d", "similarity", "frame_index", "lazy_a", "lazy_d", "meta")
CONFIDENCE = 0.95
N_BOOT = 4000


@dataclass
class Capture:
    """The arrays of a capture archive (see the module docstring) plus its metadata."""

    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def has(self, key: str) -> bool:
        return key in self.arrays

    @property
    def n(self) -> int:
        return len(self.arrays["clip_ids"])

    @property
    def tokens(self) -> int:
        """T', the number of temporal tokens the split works on."""
        return int(self.arrays["similarity"].shape[-1])

    @property
    def frames(self) -> int:
        """T, input frames per clip."""
        return int(self.arrays["frame_index"].shape[-1])

    @property
    def splitter_name(self) -> str:
        """How the groups are named in tables: ``ISSM`` or ``lazy-split model``."""
        return "ISSM" if self.meta.get("split_module", "issm") == "issm" else "lazy-split model"

    @property
    def has_truth(self) -> bool:
        return all(k in self.arrays for k in ("intensity", "onset", "apex", "offset"))

    def index_of(self, clip_id: str) -> int:
        ids = [str(c) for c in self.arrays["clip_ids"]]
        if clip_id not in ids:
            raise ConfigError(f"clip {clip_id!r} is not in {self.path}{suggest(clip_id, ids)}")
        return ids.index(clip_id)


def load_capture(path: str | os.PathLike) -> Capture:
    """Open a ``capture.npz`` written by :mod:`ifdd_bench.engine.capture`; bad files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"capture archive {path} does not exist", hint="create it with `ifdd-bench viz splits --checkpoint ...`")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile / numpy format errors
        raise DataError(f"capture archive {path} cannot be read ({type(err).__name__}: {err})") from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} is not an ifdd-bench split capture: it lacks {', '.join(missing)}")
    meta = json.loads(str(arrays.pop("meta")))
    cap = Capture(path, arrays, meta)
    n, tokens = cap.n, cap.tokens
    for key in ("pos_a", "pos_d"):
        if arrays[key].ndim != 2 or arrays[key].shape[0] != n:
            raise DataError(f"{path}: {key} has shape {arrays[key].shape}, expected ({n}, slots)")
    if arrays["similarity"].shape != (n, tokens, tokens):
        raise DataError(f"{path}: similarity has shape {arrays['similarity'].shape}, expected ({n}, {tokens}, {tokens})")
    if cap.frames % tokens:
        raise DataError(f"{path}: {cap.frames} input frames do not divide into {tokens} temporal tokens")
    if "detail_token_mass" not in arrays and "detail_spatial" in arrays:
        slot_mass = arrays["detail_spatial"].reshape(n, arrays["detail_spatial"].shape[1], -1).sum(axis=2)  # (N, S)
        weights = token_weights(arrays["pos_d"], tokens)  # (N, S, T')
        arrays["detail_token_mass"] = (slot_mass[:, :, None] * weights).sum(axis=1)  # (N, T')
    return cap


# --------------------------------------------------------------------------------------------
# geometry on the token axis


def token_weights(positions: np.ndarray, tokens: int) -> np.ndarray:
    """Linear-interpolation weights of fractional positions on the token axis.

    ``positions`` (..., S) in [0, tokens-1] -> weights (..., S, tokens), each slot's row sums to 1.
    """
    pos = np.clip(np.asarray(positions, dtype=float), 0.0, tokens - 1.0)
    low = np.floor(pos).astype(int)
    frac = pos - low
    high = np.minimum(low + 1, tokens - 1)
    out = np.zeros(pos.shape + (tokens,))
    np.put_along_axis(out, low[..., None], (1.0 - frac)[..., None], axis=-1)
    extra = np.take_along_axis(out, high[..., None], axis=-1) + frac[..., None]
    np.put_along_axis(out, high[..., None], extra, axis=-1)  # high == low at the last token
    return out


def token_intensity(cap: Capture) -> np.ndarray:
    """True expression intensity per temporal token (N, T'): mean over the token's input frames."""
    if not cap.has_truth:
        raise DataError(f"{cap.path} has no ground truth (only SynthDFER clips carry expression frames)")
    intensity = cap["intensity"]  # (N, F) per source frame
    frame_index = np.clip(cap["frame_index"], 0, intensity.shape[1] - 1)  # (N, T)
    per_frame = np.take_along_axis(intensity, frame_index, axis=1)  # (N, T) per input frame
    ratio = cap.frames // cap.tokens
    return per_frame.reshape(cap.n, cap.tokens, ratio).mean(axis=2)  # (N, T')


def expression_tokens(cap: Capture, threshold: float = EXPRESSION_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, valid)``: tokens at >= ``threshold`` x the clip's peak token intensity (N, T'),
    and which clips show an expression at all (N,) (neutral clips have none)."""
    inten = token_intensity(cap)
    peak = inten.max(axis=1, keepdims=True)  # (N, 1)
    valid = peak[:, 0] > 1e-6
    mask = (inten >= threshold * np.maximum(peak, 1e-12)) & valid[:, None]
    return mask, valid


def apex_token(cap: Capture) -> np.ndarray:
    """Token holding each clip's apex frame (N,), via the input frame nearest to the apex."""
    frame_index = cap["frame_index"]  # (N, T)
    nearest = np.abs(frame_index - cap["apex"][:, None]).argmin(axis=1)  # (N,) input frame
    return nearest // (cap.frames // cap.tokens)


# --------------------------------------------------------------------------------------------
# statistics over a split


def wilson_ci(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial rate (NaNs for n = 0)."""
    if n == 0:
        return (math.nan, math.nan)
    z = {0.9: 1.6448536, 0.95: 1.959964, 0.99: 2.5758293}.get(round(confidence, 2), 1.959964)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _mean_row(quantity: str, group: str, values: np.ndarray, seed: int, n_boot: int) -> dict[str, Any]:
    low, high = bootstrap_ci(values, n_resamples=n_boot, seed=seed)
    return {"quantity": quantity, "group": group, "estimate": float(values.mean()) if len(values) else math.nan,
            "ci_low": low, "ci_high": high, "n": len(values), "p_value": math.nan,
            "method": f"mean over clips, {int(CONFIDENCE * 100)}% percentile bootstrap"}


def _rate_row(quantity: str, group: str, hits: np.ndarray) -> dict[str, Any]:
    low, high = wilson_ci(int(hits.sum()), len(hits))
    return {"quantity": quantity, "group": group, "estimate": float(hits.mean()) if len(hits) else math.nan,
            "ci_low": low, "ci_high": high, "n": len(hits), "p_value": math.nan,
            "method": f"rate over clips, {int(CONFIDENCE * 100)}% Wilson interval"}


def slot_statistics(cap: Capture, *, threshold: float = EXPRESSION_THRESHOLD, n_boot: int = N_BOOT,
                     seed: int = 0) -> pd.DataFrame:
    """How often ISSM's groups land on expression tokens, against the lazy split and chance.

    Only clips with an expression count (neutral clips have no expression frames). For each clip
    and group, *expression share* = the fraction of the group's interpolation weight that falls
    on expression tokens (intensity >= ``threshold`` x peak). Rows:

    * expression share of the ISSM detail / approximation groups, of the lazy odd (detail) /
      even (approximation) lattice, and of a uniformly placed slot (chance);
    * the paired difference ISSM detail - lazy odd per clip (bootstrap CI, sign-flip p-value), and
      ISSM detail - its zero-offset grid (``grid_d``, when the grid convention moves the lattice:
      the part that training learned, net of the reference grid's half-token shift);
    * the share of clips where the ISSM detail group beats the lazy odd split (Wilson CI);
    * apex hit rate: a detail slot's nearest token is the apex token, ISSM vs lazy odd.

    Columns: ``quantity, group, estimate, ci_low, ci_high, n, p_value, method``.
    """
    mask, valid = expression_tokens(cap, threshold)
    if not valid.any():
        raise DataError(f"{cap.path}: no clip with an expression (all neutral?); nothing to measure")
    tokens = cap.tokens
    m = mask[valid].astype(float)  # (V, T')
    n_clips = int(valid.sum())

    def share(pos: np.ndarray) -> np.ndarray:
        w = token_weights(pos, tokens)  # (V, S, T')
        return (w * m[:, None, :]).sum(axis=2).mean(axis=1)  # (V,)

    lazy_a = np.broadcast_to(cap["lazy_a"], (n_clips, len(cap["lazy_a"])))
    lazy_d = np.broadcast_to(cap["lazy_d"], (n_clips, len(cap["lazy_d"])))
    issm_d, issm_a = share(cap["pos_d"][valid]), share(cap["pos_a"][valid])
    odd, even = share(lazy_d), share(lazy_a)
    chance = m.mean(axis=1)
    name = cap.splitter_name
    rows = [
        _mean_row("expression share", f"{name} detail group", issm_d, seed, n_boot),
        _mean_row("expression share", "lazy odd split (detail)", odd, seed, n_boot),
        _mean_row("expression share", f"{name} approximation group", issm_a, seed, n_boot),
        _mean_row("expression share", "lazy even split (approximation)", even, seed, n_boot),
        _mean_row("expression share", "uniform slot (chance)", chance, seed, n_boot),
    ]
    if cap.has("grid_d") and not np.allclose(cap["grid_d"], cap["lazy_d"]):
        grid_d = share(np.broadcast_to(cap["grid_d"], (n_clips, len(cap["grid_d"]))))
        rows.insert(2, _mean_row("expression share", "zero-offset grid (detail)", grid_d, seed, n_boot))
    else:
        grid_d = None
    diff = issm_d - odd
    row = _mean_row("expression share difference", f"{name} detail - lazy odd (paired)", diff, seed, n_boot)
    row["p_value"], method = sign_flip_pvalue(diff, seed=seed)
    row["method"] += f"; two-sided sign-flip test ({method})"
    rows.append(row)
    if grid_d is not None:  # what training learned, net of the grid convention
        learned = issm_d - grid_d
        row = _mean_row("expression share difference", f"{name} detail - zero-offset grid (paired)", learned,
                        seed, n_boot)
        row["p_value"], method = sign_flip_pvalue(learned, seed=seed)
        row["method"] += f"; two-sided sign-flip test ({method})"
        rows.append(row)
    rows.append(_mean_row("expression share difference", f"{name} detail - {name} approximation (paired)",
                          issm_d - issm_a, seed, n_boot))
    rows.append(_rate_row("clips where detail share > lazy odd", f"{name} detail group", diff > 1e-9))
    apex = apex_token(cap)[valid]  # (V,)
    near_d = np.rint(np.clip(cap["pos_d"][valid], 0, tokens - 1)).astype(int)  # (V, S)
    near_odd = np.rint(lazy_d).astype(int)
    rows.append(_rate_row("apex token hit (a detail slot's nearest token)", f"{name} detail group",
                          (near_d == apex[:, None]).any(axis=1)))
    rows.append(_rate_row("apex token hit (a detail slot's nearest token)", "lazy odd split (detail)",
                          (near_odd == apex[:, None]).any(axis=1)))
    if cap.has("detail_token_mass") and np.isfinite(cap["detail_token_mass"]).all():
        att = cap["detail_token_mass"][valid]  # (V, T'), rows sum to 1
        rows.append(_mean_row("detail attention on expression tokens", "detail stream", (att * m).sum(axis=1),
                              seed, n_boot))
    frame = pd.DataFrame(rows)
    frame.attrs.update({"clips": n_clips, "neutral_clips": int((~valid).sum()), "threshold": threshold,
                        "tokens": tokens})
    return frame


def statistics_markdown(stats: pd.DataFrame, meta: dict[str, Any] | None = None) -> str:
    """The slot-statistics table as Markdown (percentages, CI, p-value) with a protocol note."""
    lines = ["| quantity | group | estimate | 95% CI | n | p |", "|---|---|---:|---|---:|---:|"]
    for r in stats.itertuples():
        ci = "-" if math.isnan(r.ci_low) else f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
        p = "" if math.isnan(r.p_value) else f"{r.p_value:.3g}"
        sign = "+" if r.quantity.endswith("difference") and r.estimate > 0 else ""
        lines.append(f"| {r.quantity} | {r.group} | {sign}{100 * r.estimate:.1f}% | {ci} | {r.n} | {p} |")
    meta = meta or {}
    attrs = stats.attrs
    note = (f"\nClips with an expression: {attrs.get('clips')} (neutral clips left out: {attrs.get('neutral_clips')}). "
            f"Expression tokens: token intensity >= {attrs.get('threshold')} x the clip's peak; "
            f"{attrs.get('tokens')} temporal tokens. Shares are interpolation weight of the 4 slots of a group. ")
    if meta:
        note += (f"Checkpoint {meta.get('checkpoint', '?')} ({meta.get('model', '?')}/{meta.get('variant', '?')}), "
                 f"{meta.get('dataset', '?')} {meta.get('split', '?')} split, grid convention "
                 f"{meta.get('grid', '?')}.")
    return "\n".join(lines) + "\n" + note + "\n"


# --------------------------------------------------------------------------------------------
# figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_clip(cap: Capture, clip_id: str, path: str | os.PathLike) -> list[Path]:
    """Draw the slot figure of one clip to ``path`` (PNG) and the same name ``.pdf``.

    Rows: (1) frame strip, token boundaries, apex frame outlined, intensity bar; (2) token axis with
    ISSM approximation/detail positions, the lazy lattice, the true intensity per token and the
    detail stream's attention per token; (3) the similarity matrix and, per detail slot, the frame
    nearest its position with the detail attention map over it.
    """
    plt = _pyplot()

    i = cap.index_of(clip_id)
    tokens, frames = cap.tokens, cap.frames
    ratio = frames // tokens
    classes = cap.meta.get("classes") or []
    label = int(cap["labels"][i])
    pred = int(cap["preds"][i]) if cap.has("preds") else -1
    name = classes[label] if 0 <= label < len(classes) else str(label)
    pname = classes[pred] if 0 <= pred < len(classes) else str(pred)
    strip = None
    if cap.has("strip_ids"):
        sids = [str(s) for s in cap["strip_ids"]]
        if clip_id in sids:
            strip = cap["strip"][sids.index(clip_id)]  # (T, H, W, 3) uint8
    slots = cap["pos_d"].shape[1]
    truth_tok = token_intensity(cap)[i] if cap.has_truth else None
    frame_index = cap["frame_index"][i]
    apex_input = int(np.abs(frame_index - cap["apex"][i]).argmin()) if cap.has_truth else -1

    # axes are placed by hand so that token t of row 2 sits under frames t*r .. t*r+r-1 of row 1
    left, right = 0.05, 0.97
    span = right - left
    fig = plt.figure(figsize=(14, 10.5))
    fig.suptitle(f"clip {clip_id}: true {name}, predicted {pname}   |   {cap.meta.get('model', '')} / "
                 f"{cap.meta.get('variant', '')}   |   {cap.meta.get('dataset', '')} {cap.meta.get('split', '')}",
                 fontsize=11, y=0.985)

    # (1) frame strip
    cell = span / frames
    height = min(0.13, (cell - 0.004) * 14 / 10.5)  # square frames
    for j in range(frames):
        ax = fig.add_axes((left + j * cell + 0.002, 0.80, cell - 0.004, height))
        if strip is not None:
            ax.imshow(strip[j], aspect="auto")
        else:
            ax.text(0.5, 0.5, "no\nframes", ha="center", va="center", fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
        title = f"f{j}"
        if cap.has_truth:
            src = min(int(frame_index[j]), cap["intensity"].shape[1] - 1)
            f_int = float(cap["intensity"][i][src])
            title += f"  {f_int:.2f}"
            for spine in ax.spines.values():
                spine.set_linewidth(3.5 if j == apex_input else 1.5 if f_int > 0 else 0.6)
                spine.set_edgecolor("crimson" if j == apex_input else ("orange" if f_int > 0 else "grey"))
        ax.set_title(title, fontsize=7, pad=2)
    fig.text(left, 0.775, "input frames (outline: orange = expression, red = apex; number = true intensity)",
             fontsize=8)

    # (2) token axis
    ax = fig.add_axes((left, 0.45, span, 0.28))
    xs = np.arange(tokens)
    if truth_tok is not None:
        mask, _ = expression_tokens(cap)
        for t in np.flatnonzero(mask[i]):
            ax.axvspan(t - 0.5, t + 0.5, color="orange", alpha=0.12, lw=0)
        ax.bar(xs, truth_tok, width=0.9, color="orange", alpha=0.45, label="true intensity per token")
        ax.axvline(apex_token(cap)[i], color="crimson", ls="--", lw=1.2, label="apex token")
    if cap.has("detail_token_mass") and np.isfinite(cap["detail_token_mass"][i]).all():
        mass = cap["detail_token_mass"][i]
        ax.plot(xs, mass / max(mass.max(), 1e-12), color="purple", marker=".", lw=1.2,
                label="detail attention per token (max = 1)")
    y_a, y_d = 1.2, 1.45
    ax.scatter(cap["lazy_a"], np.full(slots, y_a), marker="o", s=90, facecolors="none", edgecolors="tab:blue",
               label="lazy even lattice (approx.)")
    ax.scatter(cap["lazy_d"], np.full(slots, y_d), marker="D", s=90, facecolors="none", edgecolors="tab:red",
               label="lazy odd lattice (detail)")
    if cap.has("grid_d") and not np.allclose(cap["grid_d"], cap["lazy_d"]):
        ax.scatter(np.concatenate([cap["grid_a"], cap["grid_d"]]), np.repeat([y_a, y_d], slots), marker="x",
                   s=30, color="0.45", zorder=2, label="ISSM at zero offsets (grid convention)")
    for k in range(slots):
        for lazy, pos, y, colour in ((cap["lazy_a"][k], cap["pos_a"][i][k], y_a, "tab:blue"),
                                     (cap["lazy_d"][k], cap["pos_d"][i][k], y_d, "tab:red")):
            if abs(pos - lazy) > 0.05:
                ax.annotate("", xy=(pos, y), xytext=(lazy, y),
                            arrowprops=dict(arrowstyle="->", color=colour, lw=0.9, shrinkA=5, shrinkB=5))
    ax.scatter(cap["pos_a"][i], np.full(slots, y_a), marker="o", s=45, color="tab:blue", zorder=3,
               label=f"{cap.splitter_name} approximation slots")
    ax.scatter(cap["pos_d"][i], np.full(slots, y_d), marker="D", s=45, color="tab:red", zorder=3,
               label=f"{cap.splitter_name} detail slots")
    ax.set_xlim(-0.5, tokens - 0.5), ax.set_ylim(0, 1.65)
    ax.set_xticks(xs, [f"token {t}\n(f{t * ratio}-{t * ratio + ratio - 1})" for t in xs], fontsize=7)
    ax.set_yticks([0, 0.5, 1.0, y_a, y_d], ["0", "0.5", "1", "approx.", "detail"], fontsize=7)
    ax.grid(axis="x", color="0.9")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
    ax.set_title("fractional positions chosen by ISSM (filled) vs the lazy even/odd split (hollow); "
                 "positions are sampling coordinates on the token axis", fontsize=8)

    # (3) similarity matrix and spatial detail attention
    ax = fig.add_axes((left, 0.04, 0.19, 0.25))
    if np.isfinite(cap["similarity"][i]).all():
        im = ax.imshow(cap["similarity"][i], cmap="viridis")
        fig.colorbar(im, ax=ax, fraction=0.046)
    else:
        ax.text(0.5, 0.5, "lazy split:\nno similarity", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("inter-frame similarity S", fontsize=8)
    ax.set_xticks(xs), ax.set_yticks(xs)
    ax.set_xlabel("key token", fontsize=7), ax.set_ylabel("query token", fontsize=7)
    ax.tick_params(labelsize=6)
    spatial = None
    if cap.has("detail_spatial") and np.isfinite(cap["detail_spatial"][i]).all():
        spatial = cap["detail_spatial"][i]  # (S, h, w)
    width = (right - 0.33) / slots
    for k in range(slots):
        ax = fig.add_axes((0.33 + k * width + 0.005, 0.04, width - 0.01, 0.25))
        pos = float(cap["pos_d"][i][k])
        tok = int(np.clip(np.rint(pos), 0, tokens - 1))
        extent = None
        if strip is not None:
            ax.imshow(strip[tok * ratio])
            extent = (-0.5, strip.shape[2] - 0.5, strip.shape[1] - 0.5, -0.5)
        if spatial is not None:
            ax.imshow(spatial[k], cmap="magma", alpha=0.55 if strip is not None else 1.0, extent=extent,
                      interpolation="bilinear")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"detail slot {k}: p = {pos:.2f} (frame {tok * ratio})", fontsize=7)
    if spatial is not None:
        fig.text(0.33, 0.305, "where the detail stream attends: attention received by each detail slot's "
                 "spatial tokens, over the frame nearest the slot", fontsize=8)
    return _save(fig, Path(path))


def plot_positions(cap: Capture, path: str | os.PathLike) -> list[Path]:
    """Split-level figure: where detail/approximation slots land relative to the apex token, and
    the mean similarity matrix, over every clip of the capture."""
    plt = _pyplot()
    tokens = cap.tokens
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    bins = np.arange(-tokens + 0.5, tokens, 0.25)
    if cap.has_truth:
        _, valid = expression_tokens(cap)
        apex = apex_token(cap)[valid][:, None]
        axes[0].hist((cap["pos_d"][valid] - apex).ravel(), bins=bins, alpha=0.6, color="tab:red",
                     label=f"{cap.splitter_name} detail")
        axes[0].hist((cap["pos_a"][valid] - apex).ravel(), bins=bins, alpha=0.5, color="tab:blue",
                     label=f"{cap.splitter_name} approximation")
        axes[0].hist((np.broadcast_to(cap["lazy_d"], cap["pos_d"][valid].shape) - apex).ravel(), bins=bins,
                     histtype="step", color="black", label="lazy odd")
        axes[0].axvline(0, color="crimson", ls="--")
        axes[0].set_xlabel("slot position - apex token")
        axes[0].set_title(f"slots relative to the apex ({int(valid.sum())} clips with an expression)", fontsize=9)
        axes[0].legend(fontsize=7)
    else:
        axes[0].text(0.5, 0.5, "no ground truth (real clips)", ha="center", va="center")
    for slot in range(cap["pos_d"].shape[1]):
        axes[1].hist(cap["pos_d"][:, slot], bins=np.arange(-0.125, tokens, 0.25), alpha=0.5, label=f"detail {slot}")
    axes[1].set_xlabel("detail slot position (token axis)")
    axes[1].set_title(f"{cap.splitter_name} detail positions over the split", fontsize=9)
    axes[1].legend(fontsize=7)
    if np.isfinite(cap["similarity"]).all():
        im = axes[2].imshow(cap["similarity"].mean(axis=0), cmap="viridis")
        fig.colorbar(im, ax=axes[2], fraction=0.046)
    else:
        axes[2].text(0.5, 0.5, "lazy split: no similarity", ha="center", va="center", transform=axes[2].transAxes)
    axes[2].set_title("mean similarity matrix", fontsize=9)
    return _save(fig, Path(path))


def _save(fig: Any, path: Path) -> list[Path]:
    plt = _pyplot()
    from ifdd_bench.reports.plots import REPRODUCIBLE_METADATA  # matplotlib/seaborn only when drawing

    out = []
    for suffix in (".png", ".pdf"):
        target = path.with_suffix(suffix)
        with atomic_path(target, suffix=suffix) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=110, metadata=REPRODUCIBLE_METADATA[suffix[1:]])
        out.append(target)
    plt.close(fig)
    return out


def render_slots(capture: str | os.PathLike | Capture, out_dir: str | os.PathLike, *,
                  clips: Sequence[str] | None = None, threshold: float = EXPRESSION_THRESHOLD) -> dict[str, Any]:
    """Render every slot figure and the slot statistics of a capture into ``out_dir``.

    Writes ``split_<clip>.png/.pdf`` for each clip in ``clips`` (default: the clips whose frames
    the capture holds), ``split_positions.png/.pdf`` and, when the capture has ground truth,
    ``split_stats.csv`` and ``split_stats.md``. Returns ``{"files": [...], "stats": DataFrame|None}``.
    """
    cap = capture if isinstance(capture, Capture) else load_capture(capture)
    out = Path(out_dir)
    files: list[Path] = []
    chosen = list(clips) if clips else [str(s) for s in cap["strip_ids"]] if cap.has("strip_ids") else []
    for clip_id in chosen:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in clip_id)
        files += plot_clip(cap, clip_id, out / f"split_{safe}.png")
    files += plot_positions(cap, out / "split_positions.png")
    stats = None
    if cap.has_truth:
        stats = slot_statistics(cap, threshold=threshold)
        csv_path = out / "split_stats.csv"
        write_text_atomic(csv_path, stats.to_csv(index=False))
        md_path = out / "split_stats.md"
        write_text_atomic(md_path, statistics_markdown(stats, cap.meta))
        files += [csv_path, md_path]
    return {"files": files, "stats": stats}


def check_split_options(checkpoint: str | None, capture: str | None, clips: str | None,
                        threshold: float, batch_size: int = 16) -> list[str] | None:
    """Refuse ``viz splits`` options that cannot work together; return the clip ids of ``clips``
    (a comma list; ``None`` when none are named)."""
    if (checkpoint is None) == (capture is None):
        raise ConfigError("give either --checkpoint RUN_DIR_OR_FILE or --capture capture.npz")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--threshold must be in (0, 1], got {threshold}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    return [c.strip() for c in clips.split(",") if c.strip()] if clips else None


def render_split_figures(capture: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                         clips: Sequence[str] | None = None,
                         threshold: float = EXPRESSION_THRESHOLD) -> dict[str, Any]:
    """:func:`render_slots` of the capture file ``capture`` into ``out_dir`` (default: the capture's
    folder). Returns ``{"files", "out", "capture", "markdown"}``: the files written, the folder, the
    capture's path and the slot statistics as Markdown (``None`` without ground truth: real clips).
    """
    path = Path(capture)
    out = Path(out_dir) if out_dir else path.parent
    cap = load_capture(path)
    rendered = render_slots(cap, out, clips=clips, threshold=threshold)
    markdown = None if rendered["stats"] is None else statistics_markdown(rendered["stats"], cap.meta)
    return {"files": rendered["files"], "out": out, "capture": path, "markdown": markdown}
