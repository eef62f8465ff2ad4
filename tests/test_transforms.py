"""Clip-consistent augmentation: one draw per clip, seeded, presets as specified."""

from __future__ import annotations

import pytest
import torch

from ifdd_bench.data.transforms import AUG_PRESETS, ClipTransform, augment_spec, crop_box
from ifdd_bench.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def textured_clip(frames: int = 4, size: int = 32, same: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    one = torch.randint(0, 256, (1, 3, size, size), generator=g, dtype=torch.uint8)
    if same:
        return one.repeat(frames, 1, 1, 1)  # (T, 3, S, S), identical frames
    return torch.randint(0, 256, (frames, 3, size, size), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("preset", ["reference", "unified", "unified_bright"])
@pytest.mark.parametrize("dataset", ["dfew", "ferv39k"])
def test_every_frame_of_a_clip_gets_the_same_draw(preset, dataset):
    tf = ClipTransform(augment_spec(preset, dataset), 24, train=True)
    for seed in range(4):
        out = tf(textured_clip(), gen(seed))
        assert out.shape == (4, 3, 24, 24) and out.dtype == torch.float32
        for t in range(1, 4):
            assert torch.equal(out[0], out[t])


def test_same_seed_same_clip_other_seed_other_clip():
    tf = ClipTransform(augment_spec("reference", "dfew"), 32, train=True)
    clip = textured_clip(same=False)
    a, b, c = tf(clip, gen(5)), tf(clip, gen(5)), tf(clip, gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_ferv39k_reference_preset_is_milder_and_unclamped():
    spec = augment_spec("reference", "ferv39k")
    assert spec.crop_scale == (0.8, 1.0) and spec.jitter is None and not spec.clamp
    assert spec.interpolation == "bicubic" and spec.float_first
    dfew = augment_spec("reference", "mafw")
    assert dfew.crop_scale == (0.5, 1.0) and dfew.jitter == (0.4, 0.4, 0.4, 0.4) and dfew.clamp
    unified = augment_spec("unified", "ferv39k")
    assert unified.crop_scale == (0.5, 1.0) and unified.jitter is None and unified.flip_p == 0.5


def test_eval_transform_is_deterministic_resize_only():
    clip = textured_clip(same=False)
    tf = ClipTransform(augment_spec("unified", "dfew"), 32, train=False)
    out = tf(clip)
    assert torch.allclose(out, clip.float() / 255)
    small = ClipTransform(augment_spec("reference", "dfew"), 16, train=False)(clip)
    assert small.shape == (4, 3, 16, 16)
    none = ClipTransform(augment_spec("none", "dfew"), 32, train=True)
    assert torch.allclose(none(clip, gen()), clip.float() / 255)


def test_flip_happens_about_half_the_time():
    clip = textured_clip()
    tf = ClipTransform(augment_spec("unified", "dfew").__class__("flip-only", crop_scale=None), 32, train=True)
    flips = sum(torch.equal(tf(clip, gen(s)), torch.flip(clip, dims=[-1]).float() / 255) for s in range(200))
    assert 70 < flips < 130


def test_crop_box_respects_scale_and_ratio():
    for seed in range(50):
        top, left, h, w = crop_box(100, 80, (0.5, 1.0), (3 / 4, 4 / 3), gen(seed))
        assert 0 <= top <= 100 - h and 0 <= left <= 80 - w
        area = h * w / (100 * 80)
        assert 0.45 <= area <= 1.0
    # impossible ratio range for a very wide image -> centred fallback inside the image
    top, left, h, w = crop_box(10, 200, (0.9, 1.0), (1.0, 1.0), gen())
    assert h <= 10 and w <= 200 and w / h == pytest.approx(1.0, abs=0.2)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown data.train_aug"):
        augment_spec("strong", "dfew")
    assert "unified" in AUG_PRESETS
