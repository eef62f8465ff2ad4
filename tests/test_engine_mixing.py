"""Batch mixup / cutmix on video clips: box on H, W for every frame, λ correction, targets, seeding."""

import numpy as np
import pytest
import torch

from ifdd_bench.config import protocol_preset
from ifdd_bench.engine.mixing import ClipMixer, soft_target_cross_entropy
from ifdd_bench.errors import ConfigError

K = 7


def _batch(b=4, c=3, t=5, h=12, w=10):
    # every clip constant with value = its index + 1, so the source of every pixel is visible
    x = torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, c, t, h, w).clone()
    return x, torch.tensor([0, 1, 2, 3][:b])


def _smoothed(y, eps=0.1):
    off = eps / K
    out = torch.full((len(y), K), off)
    out[torch.arange(len(y)), y] = 1 - eps + off
    return out


def test_cutmix_pastes_one_hw_box_of_the_reversed_partner_into_every_frame():
    mixer = ClipMixer(protocol_preset("reference", switch_prob=1.0), K)  # always cutmix
    for seed in range(5):
        mixer.reseed(seed)
        x, y = _batch()
        mixed, soft = mixer(x.clone(), y)
        assert mixed.shape == x.shape
        for i in range(4):
            partner = 4 - i  # value of sample B-1-i
            from_partner = mixed[i] == partner  # (C, T, H, W)
            # the box is identical for every channel and frame
            assert torch.equal(from_partner, from_partner[:1, :1].expand_as(from_partner))
            box = from_partner[0, 0]  # (H, W)
            rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
            if len(rows):  # a rectangle
                assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
            assert set(mixed[i].unique().tolist()) <= {float(i + 1), float(partner)}
            # λ is corrected to the kept area, and the targets use it
            lam = 1 - box.float().mean().item()
            expected = lam * _smoothed(y)[i] + (1 - lam) * _smoothed(y.flip(0))[i]
            assert torch.allclose(soft[i], expected, atol=1e-6)
            assert mixer.last_lam == pytest.approx(lam, abs=1e-6)


def test_mixup_blends_with_the_reversed_batch_and_mixes_targets():
    mixer = ClipMixer(protocol_preset("reference", switch_prob=0.0), K)  # always mixup
    mixer.reseed(1)
    x, y = _batch()
    mixed, soft = mixer(x.clone(), y)
    lam = mixer.last_lam
    assert 0 < lam < 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0), atol=1e-6)
    assert torch.allclose(soft, lam * _smoothed(y) + (1 - lam) * _smoothed(y.flip(0)), atol=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(4))


def test_mixer_is_reproducible_from_its_seed_and_ignores_global_numpy_state():
    cfg = protocol_preset("reference")
    a, b = ClipMixer(cfg, K), ClipMixer(cfg, K)
    a.reseed(7)
    b.reseed(7)
    outs = []
    for mixer, global_seed in ((a, 0), (b, 123)):
        np.random.seed(global_seed)
        x, y = _batch()
        outs.append([mixer(x.clone(), y) for _ in range(3)])
    for (xa, ya), (xb, yb) in zip(*outs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    state = np.random.get_state()
    a(*_batch())
    assert np.array_equal(np.random.get_state()[1], state[1])  # global stream untouched


def test_odd_batch_is_rejected():
    mixer = ClipMixer(protocol_preset("reference"), K)
    x, y = _batch(b=3)
    with pytest.raises(ConfigError, match="even"):
        mixer(x, y)


def test_soft_target_cross_entropy_matches_hand_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]])
    manual = -(soft * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert soft_target_cross_entropy(logits, soft).item() == pytest.approx(manual.item())
    hard = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert soft_target_cross_entropy(logits, torch.eye(3)[[0, 1]]).item() == pytest.approx(hard.item())
