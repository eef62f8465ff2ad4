"""SynthDFER knobs: one frozen :class:`SynthConfig`, three presets, validation and the cache hash.

Every difficulty knob of the generator is a field here, so tuning needs no code change and every
dataset records exactly what made it (``synth.json``). Invalid values raise
:class:`~ifdd_bench.errors.ConfigError` naming the knob and its allowed range.

Example::

    >>> cfg = preset("smoke", seed=3)
    >>> (cfg.clips, cfg.frames, cfg.size, cfg.seed)
    (70, 8, 32, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

from ifdd_bench.config import apply_overrides, parse_overrides, to_dict
from ifdd_bench.errors import ConfigError, suggest, unknown
from ifdd_bench.hashing import json_hash

#: Bump when the same knobs would produce different pixels; it is part of the cache hash.
GENERATOR_VERSION = "1.0"

CLASS_WEIGHTS = ("uniform", "dfew")
#: DFEW single-labelled class totals (fold 1 train + test), DFEW order happy..fear.
DFEW_CLASS_TOTALS = (2445, 1894, 2669, 2173, 1469, 145, 902)

MIN_SIZE, MAX_SIZE = 32, 224
MIN_FRAMES, MAX_FRAMES = 4, 256
MIN_CLIPS, MAX_CLIP_FOLDERS = 10, 99_999  # folder names are 5-digit ids


@dataclass(frozen=True)
class SynthConfig:
    """All knobs of one SynthDFER dataset. Clip ``i`` is a pure function of (seed, i, these knobs).

    Ranges (inclusive) are checked on construction; see ``_RANGES``.
    """

    preset: str = "default"  # name of the preset the knobs started from (recorded, part of the hash)
    clips: int = 1500  # number of distinct clips (each is rendered twice when context_bias > 0)
    frames: int = 16  # T, frames per clip
    size: int = 112  # S, frames are S x S RGB (32..224; the folder name stays clip_224x224_16f)
    seed: int = 0
    identities: int = 0  # identity pool size; 0 -> every clip shows a new identity
    class_weights: str = "uniform"  # uniform | dfew (DFEW class frequencies, disgust ~1 %)
    # --- emotion dynamics (the label) -------------------------------------------------------
    expression_span: tuple[float, float] = (0.35, 0.70)  # temporal dilution: fraction of frames onset..offset
    peak_intensity: tuple[float, float] = (0.5, 1.0)  # apex intensity, multiplies the class prototype
    # --- identity / static context (emotion-irrelevant) -------------------------------------
    rest_strength: float = 0.8  # resting expression: up to this fraction of a random class prototype
    rest_noise: float = 0.15  # plus per-parameter Gaussian noise of this std
    expression_gain: float = 2.0  # how far the drawn face moves per unit of expression parameter (pixel visibility)
    occluder_prob: float = 0.25  # probability that the identity wears glasses
    context_bias: float = 0.0  # train copies' background hue equals the label's hue with this probability
    # --- emotion-irrelevant dynamics ---------------------------------------------------------
    distractor: float = 0.25  # global multiplier on talk_amp, micro_motion, head_motion, camera_shake
    talk_prob: float = 0.5  # probability that a clip contains a talking segment
    talk_amp: float = 0.6  # peak mouth opening added by talking (expression-parameter units)
    micro_motion: float = 0.08  # std of the slow emotion-irrelevant wander of every expression parameter
    blink_rate: float = 0.04  # probability per frame that a blink starts
    head_motion: float = 1.0  # head translation / rotation / zoom drift (x distractor 1: ~6 % shift, ~8 deg)
    camera_shake: float = 0.01  # std of per-frame whole-image translation, fraction of the frame size
    flicker: float = 0.04  # std of the per-frame illumination gain
    noise: float = 0.02  # sensor noise std (uniform per pixel and channel), pixel values in [0, 1]
    jpeg_quality: int = 90  # JPEG quality of the written frames

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def num_clip_folders(self) -> int:
        """Clip folders on disk: ``clips``, or ``2 * clips`` when the biased train copies exist."""
        return self.clips * (2 if self.context_bias > 0 else 1)


PRESETS: dict[str, dict[str, Any]] = {
    # tiny, for tests and CI: 10 clips per class, 8 frames of 32 x 32
    "smoke": dict(clips=70, frames=8, size=32),
    # the embedded benchmark that `ifdd-bench run ablation` uses out of the box
    "default": dict(),
    # stronger dilution and distractors, weaker apex, wider resting expressions, background shortcut on
    "hard": dict(expression_span=(0.15, 0.40), peak_intensity=(0.4, 0.9), rest_strength=1.0, expression_gain=1.0,
                 rest_noise=0.2, distractor=1.5, talk_prob=0.7, noise=0.04, flicker=0.06,
                 context_bias=0.8),
}


def preset(name: str, **overrides: Any) -> SynthConfig:
    """Return the :class:`SynthConfig` of preset ``smoke``, ``default`` or ``hard`` with overrides.

    Unknown preset or knob names raise :class:`ConfigError`.
    """
    if name not in PRESETS:
        raise unknown("SynthDFER preset", name, PRESETS)
    names = {f.name for f in fields(SynthConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ConfigError(f"unknown SynthDFER knob {bad[0]!r}{suggest(bad[0], names)}; "
                          f"valid knobs: {', '.join(sorted(names - {'preset'}))}")
    return replace(SynthConfig(preset=name, **PRESETS[name]), **overrides)


def synth_config(preset_name: str, sets: Sequence[str] = (), **fields: Any) -> SynthConfig:
    """SynthConfig of a preset with typed ``knob=value`` overrides (unknown knob -> ConfigError), then
    ``fields`` replaced as given (``clips=...``): what ``ifdd-bench data synth|preview|probe`` use.

    Example::

        >>> synth_config("smoke", ["size=48"]).size
        48
    """
    if any(key == "preset" for key, _ in parse_overrides(sets)):
        raise ConfigError("--set preset=... is not a knob; choose the preset with --preset")
    cfg = apply_overrides(preset(preset_name), list(sets), what="SynthDFER")
    return replace(cfg, **fields) if fields else cfg


def config_hash(cfg: SynthConfig) -> str:
    """8 hex digits identifying the pixels this config produces (all knobs + generator version)."""
    return json_hash({"version": GENERATOR_VERSION, **to_dict(cfg)})


# --------------------------------------------------------------------------------------------
# validation

# knob -> (kind, low, high); kind "int", "float", "prob" (float in [0, 1]) or "range" (lo <= hi pair)
_RANGES: dict[str, tuple[str, float, float]] = {
    "clips": ("int", MIN_CLIPS, MAX_CLIP_FOLDERS),
    "frames": ("int", MIN_FRAMES, MAX_FRAMES),
    "size": ("int", MIN_SIZE, MAX_SIZE),
    "seed": ("int", 0, 2**63 - 1),
    "identities": ("int", 0, MAX_CLIP_FOLDERS),
    "expression_span": ("range", 0.05, 1.0),
    "peak_intensity": ("range", 0.0, 2.0),
    "rest_strength": ("float", 0.0, 2.0),
    "rest_noise": ("float", 0.0, 1.0),
    "expression_gain": ("float", 0.0, 2.0),
    "occluder_prob": ("prob", 0.0, 1.0),
    "context_bias": ("prob", 0.0, 1.0),
    "distractor": ("float", 0.0, 5.0),
    "talk_prob": ("prob", 0.0, 1.0),
    "talk_amp": ("float", 0.0, 2.0),
    "micro_motion": ("float", 0.0, 1.0),
    "blink_rate": ("prob", 0.0, 1.0),
    "head_motion": ("float", 0.0, 3.0),
    "camera_shake": ("float", 0.0, 0.2),
    "flicker": ("float", 0.0, 0.5),
    "noise": ("float", 0.0, 0.5),
    "jpeg_quality": ("int", 1, 100),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate(cfg: SynthConfig) -> None:
    """Check types and ranges of every knob; normalise ints given for floats (stable hashes)."""
    if not isinstance(cfg.preset, str):
        raise ConfigError(f"SynthDFER knob 'preset' must be a string, got {cfg.preset!r}")
    if cfg.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(f"SynthDFER knob 'class_weights' must be one of {', '.join(CLASS_WEIGHTS)}, "
                          f"got {cfg.class_weights!r}")
    for name, (kind, low, high) in _RANGES.items():
        value = getattr(cfg, name)
        where = f"SynthDFER knob {name!r}"
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{where} must be an integer in [{low}, {high}], got {value!r}")
            if not low <= value <= high:
                raise ConfigError(f"{where} must be in [{low}, {high}], got {value}")
        elif kind == "range":
            if (not isinstance(value, (tuple, list)) or len(value) != 2
                    or not all(_is_number(v) for v in value)):
                raise ConfigError(f"{where} must be a pair lo,hi with {low} <= lo <= hi <= {high}, got {value!r}")
            lo, hi = float(value[0]), float(value[1])
            if not low <= lo <= hi <= high:
                raise ConfigError(f"{where} must be a pair lo,hi with {low} <= lo <= hi <= {high}, got {value!r}")
            object.__setattr__(cfg, name, (lo, hi))
        else:
            if not _is_number(value):
                raise ConfigError(f"{where} must be a number in [{low}, {high}], got {value!r}")
            if not low <= float(value) <= high:
                what = "a probability in" if kind == "prob" else "in"
                raise ConfigError(f"{where} must be {what} [{low}, {high}], got {value}")
            object.__setattr__(cfg, name, float(value))
    if cfg.num_clip_folders > MAX_CLIP_FOLDERS:
        raise ConfigError(f"SynthDFER knob 'clips' must be at most {MAX_CLIP_FOLDERS // 2} when context_bias > 0 "
                          f"(every clip is written twice, ids are 5 digits), got {cfg.clips}")
    if cfg.identities > cfg.clips:
        raise ConfigError(f"SynthDFER knob 'identities' must be in [0, clips={cfg.clips}], got {cfg.identities}")
