"""Frame samplers: segment (TSN), the reference's consecutive window with expansion, uniform."""

from __future__ import annotations

import pytest
import torch

from ifdd_bench.data.sampling import (SamplingSpec, consecutive_indices, expand_short, sample_indices,
                                      segment_indices, uniform_indices)
from ifdd_bench.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_segment_eval_takes_segment_centres():
    # n=32, U=16, V=1: L=32, tick=2 -> starts 1, 3, 5, ...
    assert segment_indices(32, 16, 1, train=False, gen=None) == list(range(1, 32, 2))
    # U=8, V=2 (Former-DFER): L=31, tick=3.875 -> starts floor(1.9375 + i*3.875), pairs
    idx = segment_indices(32, 8, 2, train=False, gen=None)
    starts = [int(1.9375 + i * 3.875) for i in range(8)]
    assert idx == [s + j for s in starts for j in (0, 1)]


def test_segment_train_draws_one_frame_inside_each_segment():
    for seed in range(20):
        idx = segment_indices(50, 16, 1, train=True, gen=gen(seed))
        seg = 50 // 16
        assert all(i * seg <= f < (i + 1) * seg for i, f in enumerate(idx))
    draws = {tuple(segment_indices(50, 16, 1, train=True, gen=gen(s))) for s in range(5)}
    assert len(draws) > 1


def test_short_clips_pad_with_the_last_frame():
    assert segment_indices(5, 16, 1, train=True, gen=gen()) == [0, 1, 2, 3, 4] + [4] * 11
    assert segment_indices(5, 8, 2, train=False, gen=None) == [0, 1, 2, 3, 4] + [4] * 11
    assert uniform_indices(3, 6, train=False, gen=None) == [0, 1, 2, 2, 2, 2]
    assert segment_indices(16, 16, 1, train=True, gen=gen()) == list(range(16))


def test_expansion_rule_counts_extras_from_the_start_or_the_end():
    # span 16 from 5 frames: each frame 3 times, one extra copy for frame 0 (start) or frame 4 (end)
    assert expand_short(5, 16, from_end=False) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert expand_short(5, 16, from_end=True) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4]
    # MAFW: 32 frames at stride 2 -> span 63; a 20-frame clip: 3 copies each, the last 3 frames 4 copies
    ext = expand_short(20, 63, from_end=True)
    assert len(ext) == 63 and ext.count(19) == 4 and ext.count(16) == 3 and ext.count(17) == 4
    idx = consecutive_indices(20, 32, 2, train=True, gen=gen(), expand_from="end")
    assert idx == ext[0:63:2] and len(idx) == 32


def test_consecutive_window_train_random_eval_centre_or_random():
    for seed in range(10):
        idx = consecutive_indices(100, 16, 1, train=True, gen=gen(seed))
        assert idx == list(range(idx[0], idx[0] + 16)) and 0 <= idx[0] <= 84
    assert consecutive_indices(100, 16, 1, train=False, gen=None) == list(range(42, 58))
    assert consecutive_indices(100, 32, 2, train=False, gen=None) == list(range(18, 81, 2))
    rand_eval = consecutive_indices(100, 16, 1, train=False, gen=gen(3), eval_mode="random")
    assert rand_eval == consecutive_indices(100, 16, 1, train=False, gen=gen(3), eval_mode="random")
    assert consecutive_indices(16, 16, 1, train=True, gen=gen()) == list(range(16))  # TIM folders: all 16


def test_uniform_sampler():
    assert uniform_indices(32, 4, train=False, gen=None) == [4, 12, 20, 28]
    idx = uniform_indices(40, 16, train=True, gen=gen())
    assert idx == sorted(idx) and len(set(idx)) == 16


def test_multi_view_evaluation_returns_distinct_deterministic_views():
    spec = SamplingSpec("segment", frames=4, segments=4, views=2)
    views = sample_indices(spec, 16, train=False, gen=None)
    assert views == [[1, 5, 9, 13], [3, 7, 11, 15]]
    assert len(sample_indices(spec, 16, train=True, gen=gen())) == 1
    cons = SamplingSpec("consecutive", frames=4, views=3)
    assert sample_indices(cons, 20, train=False, gen=None) == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]]


def test_spec_validation():
    with pytest.raises(ConfigError, match="segments \\* data.segment_len"):
        SamplingSpec("segment", frames=16, segments=8, segment_len=1)
    with pytest.raises(ConfigError, match="unknown data.sampling"):
        SamplingSpec("tsn")
    assert SamplingSpec("consecutive", frames=32, stride=2).span == 63
