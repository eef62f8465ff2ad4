"""Per-clip parameters of SynthDFER, without any rendering.

A clip is described by three independent groups of factors (design/synthetic.md 1):

* identity and static context (:class:`Identity`, :class:`Context`), including a per-identity
  **resting expression** drawn from the same range as the class displacements;
* the emotion: a class prototype displacement of the 7 expression parameters, scaled by an
  onset -> apex -> offset intensity curve that covers only part of the clip (temporal dilution);
* emotion-irrelevant dynamics: talking, blinks, slow expression wander, head pose drift, camera
  shake and illumination flicker.

Clip ``i`` is a pure function of ``(cfg.seed, i, cfg)``: its random streams come from
``numpy.random.SeedSequence([seed, i])`` (one child stream per factor group, so changing e.g. the
dilution knob leaves identity and distractors of every clip unchanged); identities come from
``SeedSequence([seed, identity], spawn_key=(1,))`` and the label list from
``SeedSequence([seed], spawn_key=(2,))``. Nothing depends on generation order or worker count.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ifdd_bench.data.labels import DFEW_CLASSES, NUM_FOLDS
from ifdd_bench.data.synth.config import DFEW_CLASS_TOTALS, SynthConfig

#: The 7 expression parameters, each in [-1, 1] (0 = relaxed).
EXPRESSION_PARAMS = ("brow_raise", "brow_furrow", "eye_open", "mouth_corner", "mouth_open",
                     "lip_stretch", "nose_wrinkle")

#: Class prototype displacements (rows: DFEW_CLASSES order; columns: EXPRESSION_PARAMS), loosely
#: following action units: happy AU6+12, sad AU1+4+15, angry AU4+5+23, surprise AU1+2+5+26,
#: disgust AU9+10+15, fear AU1+2+4+5+20+25; neutral has no displacement.
PROTOTYPES = np.array([
    #  raise furrow  eye  corner  open stretch wrinkle
    [0.00, 0.00, -0.30, 0.90, 0.20, 0.35, 0.00],  # happy
    [0.45, 0.55, -0.35, -0.85, 0.00, 0.00, 0.00],  # sad
    [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # neutral
    [-0.50, 0.90, 0.30, -0.20, -0.60, 0.00, 0.20],  # angry
    [0.90, 0.00, 0.80, 0.00, 0.90, -0.25, 0.00],  # surprise
    [-0.20, 0.40, -0.35, -0.45, 0.10, 0.00, 0.95],  # disgust
    [0.60, 0.60, 0.70, -0.20, 0.35, 0.85, 0.00],  # fear
], dtype=np.float32)
NEUTRAL = DFEW_CLASSES.index("neutral")


@dataclass(frozen=True)
class Identity:
    """Static appearance of one person (face units: the face half-width is 1)."""

    identity: int
    face_w: float  # face half-width in image units (the image spans [-1, 1])
    face_ratio: float  # face half-height / half-width
    skin: np.ndarray  # (3,) RGB in [0, 1]
    hair: np.ndarray  # (3,)
    hair_style: int  # 0 bald, 1 short, 2 long
    hairline: float  # fringe bottom, face units (negative = above centre)
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    iris: np.ndarray  # (3,)
    brow_thick: float
    brow_len: float
    nose_len: float
    mouth_y: float
    mouth_w: float
    lips: np.ndarray  # (3,)
    ear: float
    glasses: bool
    glasses_col: np.ndarray  # (3,)
    shirt: np.ndarray  # (3,)
    rest: np.ndarray  # (7,) resting expression


@dataclass(frozen=True)
class Context:
    """Background of one clip. ``hue`` is the unbiased background hue in [0, 1)."""

    hue: float
    biased_hue: float  # hue of the context-biased train copy (== hue when the coin said no)
    biased: bool  # True when the biased copy's hue was set from the label
    sat: float
    val: float
    gradient: np.ndarray  # (2,) brightness slope along x, y
    texture: np.ndarray  # (3, 4) gratings: freq_x, freq_y, phase, amplitude
    objects: np.ndarray  # (K, 8) kind, cx, cy, rx, ry, r, g, b
    head_xy: np.ndarray  # (2,) head centre in image units
    head_scale: float


@dataclass(frozen=True)
class ClipParams:
    """Everything needed to render clip ``index``; arrays are float32 with T rows."""

    index: int
    label: int  # 0-based, DFEW_CLASSES order
    identity: Identity
    context: Context
    expression: np.ndarray  # (T, 7) rendered expression parameters, clipped to [-1, 1]
    displacement: np.ndarray  # (T, 7) emotion part only: intensity[t] * prototype[label]
    intensity: np.ndarray  # (T,) emotion intensity curve (zeros for neutral)
    onset: int  # first frame of the expression window
    apex: int  # frame of maximal intensity
    offset: int  # last frame of the expression window
    peak: float
    talking: np.ndarray  # (T,) mouth opening added by talking
    blink: np.ndarray  # (T,) eye closure in [0, 1]
    pose: np.ndarray  # (T, 4) head dx, dy (image units), angle (rad), log-scale
    shake: np.ndarray  # (T, 2) camera translation, image units
    gain: np.ndarray  # (T,) illumination gain
    noise_seed: int  # seed of the sensor-noise stream
    noise_std: float  # sensor noise std, pixel values in [0, 1]
    expression_gain: float  # geometric displacement per unit of expression parameter


# --------------------------------------------------------------------------------------------
# dataset-level assignments


def class_counts(cfg: SynthConfig) -> list[int]:
    """Clips per class: as equal as possible (uniform) or proportional to DFEW (largest remainder).

    Every class gets at least one clip.
    """
    return _class_counts(cfg.clips, cfg.class_weights)


def _class_counts(clips: int, class_weights: str) -> list[int]:
    k = len(DFEW_CLASSES)
    weights = np.ones(k) if class_weights == "uniform" else np.asarray(DFEW_CLASS_TOTALS, float)
    share = weights / weights.sum() * clips
    counts = np.floor(share).astype(int)
    for idx in np.argsort(-(share - counts), kind="stable")[: clips - counts.sum()]:
        counts[idx] += 1
    while (counts == 0).any():  # tiny datasets: take from the largest class
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return counts.tolist()


@lru_cache(maxsize=16)
def _labels(seed: int, clips: int, class_weights: str) -> np.ndarray:
    counts = _class_counts(clips, class_weights)
    labels = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(np.random.SeedSequence([seed], spawn_key=(2,)))
    return rng.permutation(labels)


def clip_labels(cfg: SynthConfig) -> np.ndarray:
    """0-based label of every clip (length ``cfg.clips``), a seeded shuffle of exact class quotas."""
    return _labels(cfg.seed, cfg.clips, cfg.class_weights).copy()


def clip_folds(cfg: SynthConfig) -> np.ndarray:
    """Fold 1..5 of every clip, stratified by class: each class is dealt round-robin over the folds.

    One running counter across classes keeps fold sizes within one clip of each other too.
    """
    return _folds(cfg.seed, cfg.clips, cfg.class_weights).copy()


@lru_cache(maxsize=16)
def _folds(seed: int, clips: int, class_weights: str) -> np.ndarray:
    labels = _labels(seed, clips, class_weights)
    folds = np.zeros(clips, dtype=int)
    order = np.argsort(labels, kind="stable")  # class by class, clip index order inside a class
    folds[order] = np.arange(clips) % NUM_FOLDS["synth"] + 1
    return folds


def clip_identity(cfg: SynthConfig, index: int) -> int:
    """Identity id of clip ``index`` (the clip index itself when there is no identity pool)."""
    return index % cfg.identities if cfg.identities else index


# --------------------------------------------------------------------------------------------
# samplers


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) to RGB."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32)


_SKIN_LIGHT = np.array([0.96, 0.82, 0.70], dtype=np.float32)
_SKIN_DARK = np.array([0.36, 0.24, 0.16], dtype=np.float32)


def sample_identity(cfg: SynthConfig, identity: int) -> Identity:
    """Face geometry, colours, accessories and resting expression of one identity."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, identity], spawn_key=(1,)))
    u = rng.uniform
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * u(0, 1) ** 1.3
    skin = np.clip(skin * u(0.92, 1.06, 3), 0, 1).astype(np.float32)
    hair = hsv_to_rgb(u(0.02, 0.12), u(0.3, 0.8), u(0.08, 0.55)) if u() < 0.85 else hsv_to_rgb(u(), 0.2, u(0.6, 0.9))
    # resting expression: a random class prototype at a random fraction of rest_strength, plus noise
    rest_class = rng.integers(len(DFEW_CLASSES))
    rest = (PROTOTYPES[rest_class] * u(0, cfg.rest_strength)
            + rng.normal(0, cfg.rest_noise, len(EXPRESSION_PARAMS))).astype(np.float32)
    return Identity(
        identity=identity, face_w=u(0.52, 0.62), face_ratio=u(1.12, 1.38), skin=skin, hair=hair,
        hair_style=int(rng.choice(3, p=[0.15, 0.5, 0.35])), hairline=u(-0.78, -0.58),
        eye_y=u(-0.22, -0.08), eye_dx=u(0.36, 0.46), eye_w=u(0.19, 0.24), eye_h=u(0.5, 0.7),
        iris=hsv_to_rgb(u(0.0, 0.6), u(0.3, 0.8), u(0.15, 0.55)), brow_thick=u(0.035, 0.06),
        brow_len=u(0.2, 0.28), nose_len=u(0.22, 0.32), mouth_y=u(0.42, 0.55), mouth_w=u(0.3, 0.42),
        lips=np.clip(skin * np.array([0.85, 0.55, 0.55]) + np.array([0.1, 0, 0]), 0, 1).astype(np.float32),
        ear=u(0.12, 0.18), glasses=bool(u() < cfg.occluder_prob),
        glasses_col=hsv_to_rgb(u(), u(0, 0.6), u(0.05, 0.4)), shirt=hsv_to_rgb(u(), u(0.2, 0.8), u(0.25, 0.85)),
        rest=rest,
    )


def _class_hue(label: int, jitter: float) -> float:
    """A hue inside the label's bin (``jitter`` in (0, 1)): the 7 classes split the hue circle into equal bins."""
    return float((label + jitter) / len(DFEW_CLASSES))


def hue_bin(hue: float | np.ndarray) -> int | np.ndarray:
    """Class bin (0..6) of a hue in [0, 1); a context-biased clip's hue bin equals its label."""
    return np.floor(np.asarray(hue) * len(DFEW_CLASSES)).astype(int) % len(DFEW_CLASSES)


def sample_context(cfg: SynthConfig, label: int, rng: np.random.Generator) -> Context:
    """Background hue (unbiased and biased copy), texture, objects and head placement."""
    u = rng.uniform
    hue = float(u())
    biased = bool(u() < cfg.context_bias)
    jitter = u(0.15, 0.85)  # drawn even when unused, so context_bias changes nothing else
    biased_hue = _class_hue(label, jitter) if biased else hue
    texture = np.stack([u(-9, 9, 3), u(-9, 9, 3), u(0, 2 * np.pi, 3), u(0, 0.08, 3)], 1)
    n_obj = int(rng.integers(1, 5))
    objects = np.stack([rng.integers(0, 2, n_obj), u(-1, 1, n_obj), u(-1, 1, n_obj), u(0.08, 0.3, n_obj),
                        u(0.08, 0.3, n_obj), u(0.1, 0.95, n_obj), u(0.1, 0.95, n_obj), u(0.1, 0.95, n_obj)], 1)
    return Context(hue=hue, biased_hue=biased_hue, biased=biased, sat=u(0.3, 0.75), val=u(0.45, 0.9),
                   gradient=u(-0.15, 0.15, 2), texture=texture.astype(np.float32),
                   objects=objects.astype(np.float32), head_xy=u(-0.08, 0.08, 2), head_scale=u(0.88, 1.08))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def sample_emotion(cfg: SynthConfig, label: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int, int, float]:
    """Intensity curve (T,) of the expression: rise, hold, fall inside a window of the clip.

    Returns ``(intensity, onset, apex, offset, peak)``; the window covers a random fraction
    ``expression_span`` of the frames, at a random position; the apex position inside it and the
    peak intensity are random. Neutral clips get a window but zero intensity.
    """
    t_len = cfg.frames
    span = rng.uniform(*cfg.expression_span)
    length = int(np.clip(round(span * t_len), 3, t_len))
    start = int(rng.integers(0, t_len - length + 1))
    rise = rng.uniform(0.25, 0.55)
    hold = rng.uniform(0.05, 0.25)
    peak = float(rng.uniform(*cfg.peak_intensity))
    pos = (np.arange(t_len) - start + 0.5) / length  # (T,) position inside the window, 0..1
    up = _smoothstep(pos / rise)
    down = _smoothstep((1.0 - pos) / max(1.0 - rise - hold, 1e-3))
    curve = np.where((pos > 0) & (pos < 1), np.minimum(up, down), 0.0)
    apex = int(np.argmax(curve))
    curve = curve / max(curve[apex], 1e-6)
    intensity = (curve * peak if label != NEUTRAL else np.zeros(t_len)).astype(np.float32)
    return intensity, start, apex, start + length - 1, peak


def _smooth_noise(rng: np.random.Generator, t_len: int, n: int, cycles: tuple[float, float]) -> np.ndarray:
    """(T, n) smooth random signals, unit-ish amplitude: two random sinusoids each."""
    t = np.arange(t_len)[:, None]
    out = np.zeros((t_len, n))
    for _ in range(2):
        freq = rng.uniform(*cycles, n) / t_len
        out += rng.uniform(0.3, 1.0, n) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, n))
    return out / 1.3


def sample_distractors(cfg: SynthConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Emotion-irrelevant dynamics: talking, expression wander, blinks, pose, shake, flicker."""
    t_len, k = cfg.frames, cfg.distractor
    t = np.arange(t_len)
    talking = np.zeros(t_len)
    if rng.uniform() < cfg.talk_prob:
        seg = max(3, int(round(rng.uniform(0.4, 1.0) * t_len)))
        start = int(rng.integers(0, t_len - seg + 1))
        inside = (t - start + 0.5) / seg
        envelope = np.sin(np.pi * np.clip(inside, 0, 1))  # fades in and out
        freq = rng.uniform(0.12, 0.32)  # syllables per frame
        wave = 0.5 - 0.5 * np.cos(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        talking = cfg.talk_amp * k * rng.uniform(0.5, 1.0) * envelope * wave
    wander = cfg.micro_motion * k * _smooth_noise(rng, t_len, len(EXPRESSION_PARAMS), (0.3, 1.5))
    blink = np.zeros(t_len)
    shape = np.array([0.6, 1.0, 0.45])
    frame = 0
    while frame < t_len:
        if rng.uniform() < cfg.blink_rate:
            end = min(t_len, frame + 3)
            blink[frame:end] = np.maximum(blink[frame:end], shape[: end - frame])
            frame += 4
        else:
            frame += 1
    amp = cfg.head_motion * k
    drift = _smooth_noise(rng, t_len, 4, (0.2, 1.2))
    pose = drift * amp * np.array([0.06, 0.05, np.deg2rad(8.0), 0.05])
    shake = rng.normal(0, 2.0 * cfg.camera_shake * k, (t_len, 2))
    gain = 1.0 + cfg.flicker * (0.6 * _smooth_noise(rng, t_len, 1, (0.5, 3.0))[:, 0]
                                + 0.8 * rng.normal(0, 1, t_len))
    return dict(talking=talking, wander=wander, blink=blink, pose=pose, shake=shake, gain=gain)


def sample_clip_params(cfg: SynthConfig, index: int) -> ClipParams:
    """All parameters of clip ``index`` (no pixels). Pure function of ``(cfg.seed, index, cfg)``."""
    if not 0 <= index < cfg.clips:
        raise IndexError(f"clip index {index} outside [0, {cfg.clips})")
    label = int(clip_labels(cfg)[index])
    emo_ss, ctx_ss, dis_ss, noise_ss = np.random.SeedSequence([cfg.seed, index]).spawn(4)
    identity = sample_identity(cfg, clip_identity(cfg, index))
    context = sample_context(cfg, label, np.random.default_rng(ctx_ss))
    intensity, onset, apex, offset, peak = sample_emotion(cfg, label, np.random.default_rng(emo_ss))
    dis = sample_distractors(cfg, np.random.default_rng(dis_ss))
    displacement = intensity[:, None] * PROTOTYPES[label][None, :]  # (T, 7)
    expression = identity.rest[None, :] + displacement + dis["wander"]
    expression[:, EXPRESSION_PARAMS.index("mouth_open")] += dis["talking"]
    expression[:, EXPRESSION_PARAMS.index("lip_stretch")] += 0.25 * dis["talking"]
    f32 = np.float32
    return ClipParams(
        index=index, label=label, identity=identity, context=context,
        expression=np.clip(expression, -1, 1).astype(f32), displacement=displacement.astype(f32),
        intensity=intensity, onset=onset, apex=apex, offset=offset, peak=peak,
        talking=dis["talking"].astype(f32), blink=dis["blink"].astype(f32), pose=dis["pose"].astype(f32),
        shake=dis["shake"].astype(f32), gain=dis["gain"].astype(f32),
        noise_seed=int(noise_ss.generate_state(1)[0]), noise_std=cfg.noise,
        expression_gain=cfg.expression_gain,
    )
