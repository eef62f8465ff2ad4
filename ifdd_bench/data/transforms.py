"""Clip-consistent augmentation: one random draw per clip, applied to all of its frames at once.

A :class:`ClipTransform` maps a uint8 clip ``(T, 3, H, W)`` and a ``torch.Generator`` to a float32
clip ``(T, 3, size, size)`` in [0, 1]. Parameters (flip, crop box, jitter factors and order) are
drawn from the generator and applied with torchvision's v2 functional ops to the whole clip tensor,
so every frame shares them and the result depends only on the generator's seed.

Presets (``DataConfig.train_aug``):

* ``reference`` (``ifdd-reference.md`` 11.4), per dataset:
  DFEW / MAFW / synth: uint8 -> h-flip p=0.5 -> random resized crop (scale 0.5-1, ratio 3/4-4/3,
  bilinear, antialias) -> ColorJitter(0.4, 0.4, 0.4, 0.4), the four ops in random order -> /255 ->
  clamp [0, 1]; eval: /255 -> resize (bicubic) -> clamp.
  FERV39k: /255 -> h-flip -> random resized crop (scale 0.8-1, bicubic, antialias), no jitter and
  no clamp (bicubic may overshoot [0, 1] slightly, as in the reference); eval: /255 -> resize
  (bicubic), no clamp.
* ``unified`` (``baselines.md`` 7): h-flip 0.5 -> random resized crop scale 0.5-1 (the milder of the
  two scales the proposal names; recorded in the run info), ratio 3/4-4/3, bilinear, antialias ->
  /255; eval: resize only. ``unified_bright`` adds a brightness jitter of 0.4.
* ``none``: training uses the evaluation transform.

Frames are decoded at the configured size, so the evaluation resize is usually a no-op; the
reference's bicubic 224 resize of 224 frames is one too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ifdd_bench.errors import ConfigError, suggest

AUG_PRESETS = ("reference", "unified", "unified_bright", "none")
_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class AugmentSpec:
    """One augmentation recipe (train and eval halves)."""

    name: str
    flip_p: float = 0.5
    crop_scale: tuple[float, float] | None = (0.5, 1.0)  # None: no random resized crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"  # of the random resized crop
    jitter: tuple[float, float, float, float] | None = None  # brightness, contrast, saturation, hue
    float_first: bool = False  # True: /255 before the spatial ops (FERV39k reference)
    clamp: bool = True  # clamp the training output to [0, 1]
    eval_interpolation: str = "bilinear"
    eval_clamp: bool = True

    def describe(self) -> dict:
        """JSON-ready description for the run info."""
        return asdict(self)


def augment_spec(preset: str, dataset: str) -> AugmentSpec:
    """The :class:`AugmentSpec` of ``preset`` for ``dataset`` (reference presets differ per dataset)."""
    if preset not in AUG_PRESETS:
        raise ConfigError(f"unknown data.train_aug {preset!r}{suggest(preset, AUG_PRESETS)}; "
                          f"valid: {', '.join(AUG_PRESETS)}")
    if preset == "reference":
        if dataset == "ferv39k":
            return AugmentSpec("reference-ferv39k", crop_scale=(0.8, 1.0), interpolation="bicubic",
                               float_first=True, clamp=False, eval_interpolation="bicubic", eval_clamp=False)
        return AugmentSpec("reference-dfew-mafw", crop_scale=(0.5, 1.0), interpolation="bilinear",
                           jitter=(0.4, 0.4, 0.4, 0.4), eval_interpolation="bicubic")
    if preset == "unified":
        return AugmentSpec("unified", crop_scale=(0.5, 1.0))
    if preset == "unified_bright":
        return AugmentSpec("unified_bright", crop_scale=(0.5, 1.0), jitter=(0.4, 0.0, 0.0, 0.0))
    return AugmentSpec("none", flip_p=0.0, crop_scale=None)


def _uniform(low: float, high: float, gen: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             gen: torch.Generator) -> tuple[int, int, int, int]:
    """A random crop ``(top, left, h, w)`` covering a ``scale`` fraction of the area with aspect in ``ratio``.

    Up to ten draws of (area, log-aspect); if none fits, the largest centred crop whose aspect is
    clamped into ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], gen)
        aspect = math.exp(_uniform(log_lo, log_hi, gen))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _jitter(clip: torch.Tensor, strength: tuple[float, float, float, float], gen: torch.Generator) -> torch.Tensor:
    """Colour jitter with one set of factors for the whole clip, the ops in a random order."""
    b, c, s, h = strength
    ops = []
    if b > 0:
        ops.append((F.adjust_brightness, _uniform(max(0.0, 1 - b), 1 + b, gen)))
    if c > 0:
        ops.append((F.adjust_contrast, _uniform(max(0.0, 1 - c), 1 + c, gen)))
    if s > 0:
        ops.append((F.adjust_saturation, _uniform(max(0.0, 1 - s), 1 + s, gen)))
    if h > 0:
        ops.append((F.adjust_hue, _uniform(-h, h, gen)))
    for k in torch.randperm(len(ops), generator=gen).tolist():
        fn, factor = ops[k]
        clip = fn(clip, factor)
    return clip


class ClipTransform:
    """``(uint8 clip (T, 3, H, W), generator) -> float32 clip (T, 3, size, size)``; see module docstring."""

    def __init__(self, spec: AugmentSpec, size: int, *, train: bool):
        self.spec = spec
        self.size = size
        self.train = train and spec.name != "none"

    def __call__(self, clip: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if not self.train:
            return self._eval(clip)
        spec = self.spec
        if gen is None:
            raise ValueError("a training transform needs a torch.Generator")
        # channels-last: torch's uint8 antialiased resize is several times faster in this layout
        clip = clip.contiguous(memory_format=torch.channels_last)
        if spec.float_first:
            clip = clip.to(torch.float32).div_(255.0)
        if spec.flip_p > 0 and float(torch.rand((), generator=gen)) < spec.flip_p:
            clip = F.hflip(clip)
        if spec.crop_scale is not None:
            top, left, h, w = crop_box(clip.shape[-2], clip.shape[-1], spec.crop_scale, spec.crop_ratio, gen)
            clip = F.resized_crop(clip, top, left, h, w, [self.size, self.size],
                                  interpolation=_INTERP[spec.interpolation], antialias=True)  # (T, 3, S, S)
        elif clip.shape[-2:] != (self.size, self.size):
            clip = F.resize(clip, [self.size, self.size], interpolation=_INTERP[spec.interpolation], antialias=True)
        if spec.jitter is not None:
            clip = _jitter(clip, spec.jitter, gen)
        if not spec.float_first:
            clip = clip.to(torch.float32).div_(255.0)  # in place: one allocation instead of two
        return clip.clamp_(0.0, 1.0) if spec.clamp else clip

    def _eval(self, clip: torch.Tensor) -> torch.Tensor:
        clip = clip.to(torch.float32).div_(255.0)
        if clip.shape[-2:] != (self.size, self.size):
            clip = F.resize(clip, [self.size, self.size], interpolation=_INTERP[self.spec.eval_interpolation],
                            antialias=True)  # (T, 3, S, S)
        return clip.clamp_(0.0, 1.0) if self.spec.eval_clamp else clip
