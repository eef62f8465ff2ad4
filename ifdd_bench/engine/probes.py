"""Temporal-reliance probes: a trained model scored on its test clips with the frame order perturbed.

``ifdd-bench eval RUN --perturb shuffle,reverse,single,freeze-apex,half-rate`` (and the default
ablation, for every cell) scores the clean clips and each perturbation of them in one pass over
the split, and reports per perturbation UAR / WAR and ΔUAR / ΔWAR = perturbed − clean on the same
clips, with a percentile bootstrap interval over clips (:func:`ifdd_bench.clipstats.paired_clip_intervals`).

A perturbation acts on the *sampled* clip, on its frame axis (dim -3 of ``(..., C, T, H, W)``), after
the dataset has sampled and transformed it, and in the same way for every temporal view of a
multi-view clip (the same permutation, the same repeated position; the apex is located per view):

* ``shuffle``: the T frames in a random order, one seeded permutation per clip, never the identity;
* ``reverse``: the frames in reverse order;
* ``single``: one randomly chosen (seeded) frame repeated T times: no motion at all;
* ``freeze-apex``: the sampled frame nearest to the clip's apex (peak expression) repeated T times:
  the most informative single frame (SynthDFER only: its ``clips.csv`` knows the apex);
* ``half-rate``: every second frame dropped and each kept frame shown twice (0, 0, 2, 2, ...): the
  same motion at half the frame rate.

Random draws come from a generator seeded with (probe seed, perturbation, clip index), so a probe
is reproducible and the same clip gets the same draw whatever else is asked. What a drop does and
does not show is in docs/probes.md.

Example::

    >>> clip = torch.arange(4.0).view(1, 4, 1, 1)          # (C=1, T=4, H=1, W=1)
    >>> half_rate(clip).flatten().tolist(), reverse(clip).flatten().tolist()
    ([0.0, 0.0, 2.0, 2.0], [3.0, 2.0, 1.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ifdd_bench.clipstats import CLIP_CI_METHOD, paired_clip_intervals
from ifdd_bench.config import APEX_PERTURBATIONS, PERTURBATIONS, PROBE_MIN_FRAMES, DataConfig
from ifdd_bench.data.dataset import item_seed
from ifdd_bench.engine.metrics import classification_metrics
from ifdd_bench.errors import ConfigError, DataError
from ifdd_bench.events import Progress

#: the unperturbed input, scored in the same pass
CLEAN = "clean"
#: fewest frames per clip a perturbation needs (one frame has no order to perturb)
MIN_FRAMES = PROBE_MIN_FRAMES
#: resamples and confidence of the clip bootstrap behind each Δ's interval
N_RESAMPLES = 10_000
CONFIDENCE = 0.95

FRAME_AXIS = -3  # (..., C, T, H, W)


# --------------------------------------------------------------------------------------------
# the perturbations: pure functions of a clip tensor (C, T, H, W) or views (V, C, T, H, W)


def take_frames(clip: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Frames of ``clip`` at ``index`` along the frame axis: ``index`` ``(T',)`` for every view, or
    ``(V, T')`` one row per view of a ``(V, C, T, H, W)`` clip. Returns ``(..., C, T', H, W)``."""
    if index.dim() == 1:
        return clip.index_select(FRAME_AXIS, index.to(clip.device))
    if clip.dim() != 5 or index.shape[0] != clip.shape[0]:
        raise ValueError(f"per-view index {tuple(index.shape)} needs a (V, C, T, H, W) clip, got {tuple(clip.shape)}")
    return torch.stack([view.index_select(FRAME_AXIS, row.to(clip.device))
                        for view, row in zip(clip, index)])  # (V, C, T', H, W)


def _frames(clip: torch.Tensor) -> int:
    frames = clip.shape[FRAME_AXIS]
    if frames < MIN_FRAMES:
        raise ConfigError(f"a clip of {frames} frame(s) has no frame order to perturb; the probes need at least "
                          f"{MIN_FRAMES} frames per clip", hint="evaluate a model that takes 2 or more frames")
    return frames


def shuffle_permutation(frames: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation of ``range(frames)`` that is not the identity (``frames`` >= 2), drawn from ``gen``."""
    identity = torch.arange(frames)
    while True:
        perm = torch.randperm(frames, generator=gen)  # (T,)
        if not torch.equal(perm, identity):
            return perm


def shuffle(clip: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Frames in a random order (one permutation for all views, never the identity); same shape."""
    return take_frames(clip, shuffle_permutation(_frames(clip), gen))


def reverse(clip: torch.Tensor) -> torch.Tensor:
    """Frames in reverse order; same shape."""
    _frames(clip)
    return clip.flip(FRAME_AXIS)


def freeze(clip: torch.Tensor, position: int | torch.Tensor) -> torch.Tensor:
    """Frame ``position`` repeated over the whole clip; ``position`` an int (every view) or a
    ``(V,)`` tensor (one frame per view of a ``(V, C, T, H, W)`` clip; ``(1,)`` for a single-view
    ``(C, T, H, W)`` clip). Same shape."""
    frames = _frames(clip)
    position = torch.as_tensor(position, dtype=torch.long)
    if clip.dim() == 4 and position.numel() == 1:  # one view: its one position
        position = position.reshape(())
    if position.dim() == 0:
        return take_frames(clip, position.repeat(frames))  # (T,) all equal
    return take_frames(clip, position[:, None].expand(-1, frames))  # (V, T): each row one frame


def single(clip: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random frame (the same position for all views) repeated over the clip; same shape."""
    return freeze(clip, int(torch.randint(_frames(clip), (1,), generator=gen)))


def half_rate(clip: torch.Tensor) -> torch.Tensor:
    """Every second frame dropped and each kept one shown twice (frames 0, 0, 2, 2, ...); same shape."""
    frames = _frames(clip)
    return take_frames(clip, torch.arange(frames) // 2 * 2)  # (T,)


def perturb(name: str, clip: torch.Tensor, *, gen: torch.Generator | None = None,
            apex: int | torch.Tensor | None = None) -> torch.Tensor:
    """Apply perturbation ``name`` (one of :data:`~ifdd_bench.config.PERTURBATIONS`) to ``clip``.

    ``gen`` feeds ``shuffle`` / ``single``; ``apex`` (the frame position, per view or for all) feeds
    ``freeze-apex``. The clip keeps its shape.
    """
    if name == "shuffle":
        return shuffle(clip, gen)
    if name == "reverse":
        return reverse(clip)
    if name == "single":
        return single(clip, gen)
    if name == "freeze-apex":
        if apex is None:
            raise ConfigError("freeze-apex needs the clip's apex frame position")
        return freeze(clip, apex)
    if name == "half-rate":
        return half_rate(clip)
    raise ConfigError(f"unknown perturbation {name!r}; valid: {', '.join(PERTURBATIONS)}")


#: random stream of each perturbation, fixed per name so that reordering or adding names in
#: PERTURBATIONS (the table order) never changes the committed probes' draws
PERTURBATION_STREAM = {"shuffle": 1, "reverse": 2, "single": 3, "freeze-apex": 4, "half-rate": 5}


def clip_generator(seed: int, name: str, index: int) -> torch.Generator:
    """The generator of clip ``index`` under perturbation ``name``: seeded by (seed, name, index)."""
    gen = torch.Generator()
    gen.manual_seed(item_seed(seed, PERTURBATION_STREAM[name], index))
    return gen


# --------------------------------------------------------------------------------------------
# what a split must offer, checked before anything runs or is written


def check_frames(names: Sequence[str], data: DataConfig) -> None:
    """Refuse perturbations of clips with fewer than :data:`MIN_FRAMES` frames (``data.frames``)."""
    if names and data.frames < MIN_FRAMES:
        raise ConfigError(f"--perturb {','.join(names)}: the model reads {data.frames} frame(s) per clip; "
                          f"a perturbation of the frame order needs at least {MIN_FRAMES}",
                          hint="probe a model that takes 2 or more frames")


def apex_positions(names: Sequence[str], data: DataConfig, split: Any, truth_of: Callable[[], Any]) -> list | None:
    """Each clip's apex positions when ``names`` holds ``freeze-apex``, else ``None``; refuses a
    split without apex knowledge.

    ``truth_of()`` returns SynthDFER's truth table (``None`` on a dataset without one); it must
    list every clip of ``split``. The positions are ``[(V,) LongTensor per clip]``: in each view,
    the position of the sampled frame nearest to the apex (the first of two equally near). Raises
    :class:`ConfigError` / :class:`DataError` saying what to do.
    """
    from ifdd_bench.engine.capture import source_frames

    if not any(n in APEX_PERTURBATIONS for n in names):
        return None
    truth = truth_of()
    if truth is None:
        others = [n for n in names if n not in APEX_PERTURBATIONS]
        raise ConfigError(f"--perturb freeze-apex needs the apex frame of every clip, which only SynthDFER records "
                          f"(its clips.csv); {data.dataset} at {data.data_root or 'the embedded root'} has none",
                          hint=f"leave freeze-apex out (--perturb {','.join(others) or 'shuffle'})")
    positions = []
    for index, record in enumerate(split.records):
        try:
            apex = truth[record.clip_id].apex
        except KeyError:
            raise DataError(f"clip {record.clip_id} of {data.dataset} fold {data.fold} is not in the dataset's "
                            "clips.csv, so its apex is unknown", hint="regenerate the SynthDFER folder") from None
        views = split.frame_indices(index, source_frames(record))  # V lists of T source frame indices
        positions.append(torch.tensor([int(np.argmin(np.abs(np.asarray(v) - apex))) for v in views]))  # (V,)
    return positions


# --------------------------------------------------------------------------------------------
# the probe pass


@dataclass
class ProbePass:
    """Predictions of one pass over a split: ``labels`` ``(n,)`` and, per input (``clean`` and each
    perturbation), ``preds`` ``(n,)`` and ``probs`` ``(n, K)``; ``index`` ``(n,)`` dataset indices."""

    index: np.ndarray
    labels: np.ndarray
    preds: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)


@torch.inference_mode()
def probe_pass(model: nn.Module, loader: DataLoader, names: Sequence[str], *, device: torch.device,
               seed: int = 0, apex: Sequence[torch.Tensor] | None = None,
               progress: Progress | None = None) -> ProbePass:
    """Score every batch of ``loader`` clean and under each perturbation in ``names``.

    The loader must iterate its dataset in order (a plain sequential sampler): clip ``j`` of the
    pass is dataset index ``j``, which seeds its random draws (:func:`clip_generator`) and picks its
    apex positions (``apex[j]``, from :func:`apex_positions`). Clips are decoded once per pass.
    """
    from ifdd_bench.engine.loop import clip_logits

    model.eval()
    inputs = [CLEAN, *names]
    preds: dict[str, list[torch.Tensor]] = {name: [] for name in inputs}
    probs: dict[str, list[torch.Tensor]] = {name: [] for name in inputs}
    labels: list[torch.Tensor] = []
    seen, total = 0, len(loader.dataset)
    for x, y in loader:  # x: (B, C, T, H, W) or (B, V, C, T, H, W)
        batch = range(seen, seen + y.shape[0])
        for name in inputs:
            if name == CLEAN:
                xp = x
            else:
                xp = torch.stack([perturb(name, clip, gen=clip_generator(seed, name, i),
                                          apex=None if apex is None else apex[i])
                                  for clip, i in zip(x, batch)])  # same shape as x
            logits = clip_logits(model, xp.to(device, non_blocking=True))  # (B, K)
            preds[name].append(logits.argmax(dim=-1).cpu())
            probs[name].append(torch.softmax(logits, dim=-1).cpu())
        labels.append(y.cpu())
        seen += y.shape[0]
        if progress:
            progress({"kind": "probe", "done": seen, "total": total})
    out = ProbePass(index=np.arange(seen), labels=torch.cat(labels).numpy())
    for name in inputs:
        out.preds[name] = torch.cat(preds[name]).numpy()
        out.probs[name] = torch.cat(probs[name]).numpy()
    return out


def probe_rows(result: ProbePass, names: Sequence[str], num_classes: int, base: dict[str, Any], *,
               seed: int = 0, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """One ``probes.csv`` row per perturbation: ``base`` (the evaluation's identity columns), then
    the clean and perturbed UAR / WAR, Δ = perturbed − clean and its clip bootstrap interval."""
    clean = classification_metrics(result.preds[CLEAN], result.labels, num_classes)
    ref_correct = result.preds[CLEAN] == result.labels  # (n,)
    other = np.stack([result.preds[n] == result.labels for n in names], axis=1)  # (n, P)
    ci = paired_clip_intervals(result.labels, ref_correct, other, n_resamples=n_resamples,
                               confidence=confidence, seed=seed)
    rows = []
    for k, name in enumerate(names):
        metrics = classification_metrics(result.preds[name], result.labels, num_classes)
        rows.append({
            **base, "perturbation": name, "probe_seed": seed, "clips": len(result.labels),
            "clean_uar": clean["uar"], "clean_war": clean["war"], "uar": metrics["uar"], "war": metrics["war"],
            "delta_uar": float(ci["delta_uar"][k]), "delta_uar_low": float(ci["uar_low"][k]),
            "delta_uar_high": float(ci["uar_high"][k]), "delta_war": float(ci["delta_war"][k]),
            "delta_war_low": float(ci["war_low"][k]), "delta_war_high": float(ci["war_high"][k]),
            "ci_method": CLIP_CI_METHOD, "confidence": confidence, "n_resamples": n_resamples,
        })
    return rows


def prediction_rows(result: ProbePass, names: Sequence[str], clip_ids: Sequence[str] | None,
                    classes: Sequence[str]) -> list[dict[str, Any]]:
    """``probe_predictions.csv`` rows: one per clip, its label and the prediction under each input."""
    rows = []
    for j, index in enumerate(result.index):
        row = {"index": int(index), "clip_id": clip_ids[index] if clip_ids else int(index),
               "label": int(result.labels[j]), "label_name": classes[int(result.labels[j])]}
        for name in (CLEAN, *names):
            row[f"pred_{name}"] = int(result.preds[name][j])
        rows.append(row)
    return rows
