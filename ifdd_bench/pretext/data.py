"""Clips of the emotion-free pretext (SynthDFER generator, disjoint seed) and the regression objectives' targets.

The pretext stands in for the Kinetics-400 initialisation of the paper's IFDD, which a CPU default
cannot use (nothing is downloaded). It is built so that it never shows an emotion:

* the clips come from the SynthDFER generator with ``peak_intensity = (0, 0)``: no onset-apex-offset
  curve, no class prototype motion; labels exist in the generator but are never read;
* the faces move anyway: every one of the 7 expression parameters wanders on its own smooth random
  path (``micro_motion``), people talk and blink, heads drift, as in the benchmark;
* the seed differs from every benchmark seed, so no identity, background or distractor path of the
  benchmark appears in it (identities are drawn from ``SeedSequence([seed, identity])``).

``source="unlabeled"`` (masked-video only) keeps the seed but drops those knobs: the benchmark's own
distribution, emotions shown, labels never read (:data:`PRETEXT_SOURCES`).

The default objective (masked-video, :mod:`ifdd_bench.pretext.masked`) reads only these clips'
pixels. The two regression objectives read per-token-frame targets made here (the embedding pairs
input frames, T = 16 -> T' = 8), each relative to its clip mean:

* ``nuisance-motion``: head pose, camera shake, illumination, blink closure and the mouth opening of
  talking, all emotion-irrelevant by construction (:data:`NUISANCE_TARGET_NAMES`);
* ``expression-motion`` (the earlier default, kept to reproduce its weight file): the 7 expression
  parameters plus the blink closure. Those parameters are the variables whose change defines a
  SynthDFER label, which is why that objective is no longer the default (docs/pretext.md).
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ifdd_bench.data.decode import resize_frames
from ifdd_bench.data.synth.config import SynthConfig, preset
from ifdd_bench.data.synth.dynamics import ClipParams, sample_clip_params
from ifdd_bench.data.synth.face import render_clip
from ifdd_bench.data.synth.writer import numpy_pool_context
from ifdd_bench.errors import ConfigError

#: seed of the pretext clips; the benchmark uses seed 0 (and users small seeds), so their identities,
#: backgrounds and motion paths never coincide with these
PRETEXT_SEED = 7_000_003
#: knobs over the SynthDFER ``default`` preset. distractor 1 with head_motion / camera_shake scaled
#: by 1/4 keeps head drift and shake at the benchmark's level (default distractor 0.25) while the
#: face parts move 4x more: wander amplitude ~0.6 per parameter, talking up to 0.6
PRETEXT_KNOBS: dict[str, object] = {
    "peak_intensity": (0.0, 0.0),
    "distractor": 1.0,
    "micro_motion": 0.6,
    "head_motion": 0.25,
    "camera_shake": 0.0025,
    "talk_prob": 0.6,
    "blink_rate": 0.06,
}
#: per-token-frame regression targets, in this column order
TARGET_NAMES = ("brow_raise", "brow_furrow", "eye_open", "mouth_corner", "mouth_open", "lip_stretch",
                "nose_wrinkle", "blink")
#: per-token-frame targets of the nuisance-motion objective: only the generator's emotion-irrelevant
#: dynamics (head pose, camera shake, illumination, blinks, talking), never an expression parameter
NUISANCE_TARGET_NAMES = ("head_dx", "head_dy", "head_roll", "head_log_scale", "shake_x", "shake_y",
                         "illumination", "blink", "talking")


#: where the pretext clips come from: ``emotion-free`` (default preset + :data:`PRETEXT_KNOBS`: faces
#: move, no expression is ever shown) or ``unlabeled`` (the benchmark's own distribution, expressions
#: included, under a disjoint seed, labels never read: what VideoMAE / MAE-DFER pre-training on
#: unlabeled face video amounts to)
PRETEXT_SOURCES = ("emotion-free", "unlabeled")


def pretext_synth_config(clips: int, *, size: int = 112, frames: int = 16, seed: int = PRETEXT_SEED,
                         source: str = "emotion-free") -> SynthConfig:
    """The SynthDFER config of the pretext clips from ``source`` (:data:`PRETEXT_SOURCES`)."""
    if seed < 1000:
        raise ConfigError(f"pretext seed must be >= 1000 so it stays disjoint from benchmark seeds, got {seed}")
    if source not in PRETEXT_SOURCES:
        raise ConfigError(f"pretext source must be one of {', '.join(PRETEXT_SOURCES)}, got {source!r}")
    knobs = PRETEXT_KNOBS if source == "emotion-free" else {}
    return preset("default", clips=clips, size=size, frames=frames, seed=seed, **knobs)


def clip_targets(params: ClipParams, token_frames: int) -> np.ndarray:
    """``(token_frames, 8)`` targets of one clip: motion relative to the clip mean, frame groups averaged.

    Columns follow :data:`TARGET_NAMES`. The T input frames are averaged in ``T // token_frames``
    consecutive groups, matching the embedding's temporal stride.
    """
    expression = params.expression - params.expression.mean(0, keepdims=True)  # (T, 7)
    per_frame = np.concatenate([expression, params.blink[:, None]], axis=1)  # (T, 8)
    return _per_token_frame(per_frame, token_frames)


def _per_token_frame(per_frame: np.ndarray, token_frames: int) -> np.ndarray:
    """``(T, k)`` -> ``(token_frames, k)`` float32: consecutive groups of ``T // token_frames`` frames averaged."""
    t_len = per_frame.shape[0]
    if t_len % token_frames:
        raise ConfigError(f"pretext: {t_len} frames do not split into {token_frames} token frames")
    return per_frame.reshape(token_frames, t_len // token_frames, -1).mean(1).astype(np.float32)


def nuisance_targets(params: ClipParams, token_frames: int) -> np.ndarray:
    """``(token_frames, 9)`` nuisance-motion targets of one clip, relative to the clip mean.

    Columns follow :data:`NUISANCE_TARGET_NAMES`: head pose (dx, dy, roll, log-scale), camera shake
    (x, y), illumination gain, blink closure and the mouth opening that talking adds. Each is
    emotion-irrelevant by construction of SynthDFER; the frames are grouped like :func:`clip_targets`.
    """
    per_frame = np.concatenate([params.pose, params.shake, params.gain[:, None], params.blink[:, None],
                                params.talking[:, None]], axis=1)  # (T, 9)
    return _per_token_frame(per_frame - per_frame.mean(0, keepdims=True), token_frames)


#: target function of each regression objective
TARGET_FUNCTIONS: dict[str, Callable[[ClipParams, int], np.ndarray]] = {
    "expression-motion": clip_targets, "nuisance-motion": nuisance_targets}


def _jpeg_round_trip(frame: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode one uint8 frame, so pretext pixels carry the benchmark's JPEG artefacts."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB"))


def _render_chunk(cfg: SynthConfig, indices: list[int], token_frames: int,
                  objective: str = "expression-motion") -> tuple[np.ndarray, np.ndarray]:
    """Render clips ``indices`` (numpy and Pillow only): uint8 ``(n, T, S, S, 3)``, targets ``(n, T', k)``."""
    target_fn = TARGET_FUNCTIONS.get(objective)  # None: masked-video, which reads no generator variable
    clips, targets = [], []
    for index in indices:
        params = sample_clip_params(cfg, index)
        frames = render_clip(params, cfg.size)[0]  # (T, S, S, 3) uint8, one copy (no context bias)
        clips.append(np.stack([_jpeg_round_trip(f, cfg.jpeg_quality) for f in frames]))
        targets.append(target_fn(params, token_frames) if target_fn else np.zeros((token_frames, 0), np.float32))
    return np.stack(clips), np.stack(targets)


def _resized(clips: np.ndarray, out_size: int) -> np.ndarray:
    """``(n, T, S, S, 3)`` -> ``(n, T, out, out, 3)`` with the loader's resize (bilinear, antialiased)."""
    n, t, s, _, c = clips.shape
    if s == out_size:
        return clips
    video = torch.from_numpy(clips).reshape(n * t, s, s, c).permute(0, 3, 1, 2)  # (n*T, 3, S, S)
    video = resize_frames(video, out_size)  # (n*T, 3, out, out)
    return video.permute(0, 2, 3, 1).reshape(n, t, out_size, out_size, c).contiguous().numpy()


def render_pretext_clips(cfg: SynthConfig, out_size: int, token_frames: int = 8, *, workers: int | None = None,
                         on_chunk: Callable[[int], None] | None = None,
                         objective: str = "expression-motion") -> tuple[torch.Tensor, torch.Tensor]:
    """Render every pretext clip in parallel; uint8 ``(N, T, out, out, 3)`` and the float targets
    ``(N, T', k)`` of a regression ``objective`` (``k = 0`` for masked-video, which has none).

    Workers render and JPEG-encode (numpy/Pillow); this process resizes each chunk as it arrives, so
    torch never runs in a forked worker. Clip i is a pure function of ``(cfg, i)``, so the result
    does not depend on ``workers``. ``on_chunk(n)`` is called as chunks of ``n`` clips finish.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, cfg.clips))
    chunk = max(1, min(64, cfg.clips // (4 * workers) or 1))
    spans = [list(range(s, min(s + chunk, cfg.clips))) for s in range(0, cfg.clips, chunk)]
    parts: list[tuple[np.ndarray, np.ndarray]] = []

    def keep(part: tuple[np.ndarray, np.ndarray]) -> None:
        parts.append((_resized(part[0], out_size), part[1]))
        if on_chunk:
            on_chunk(len(part[0]))

    if workers == 1:
        for span in spans:
            keep(_render_chunk(cfg, span, token_frames, objective))
    else:
        with ProcessPoolExecutor(workers, mp_context=numpy_pool_context()) as pool:
            futures = [pool.submit(_render_chunk, cfg, span, token_frames, objective) for span in spans]
            for future in futures:  # in order: the result is the same for any worker count
                keep(future.result())
    clips = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    targets = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return clips, targets

