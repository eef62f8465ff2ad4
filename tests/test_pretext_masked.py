"""Masked-video reconstruction, the label-neutral pretext objective."""

from __future__ import annotations

import pytest
import torch

from ifdd_bench import registry
from ifdd_bench.pretext.masked import MaskedVideoModel, masked_mse, patch_units, sample_mask


def test_units_are_the_pixels_of_their_block_standardised():
    x = torch.rand(2, 3, 4, 8, 8)
    units = patch_units(x, t_unit=2, s_unit=4)  # (2, 2, 2, 2, 2*4*4*3)
    assert units.shape == (2, 2, 2, 2, 96)
    block = x[1, :, 2:4, 4:8, 0:4]  # clip 1, token frame 1, unit row 1, unit column 0
    expected = block.permute(1, 2, 3, 0).reshape(-1)
    expected = (expected - expected.mean()) / (expected.var(unbiased=False) + 1e-6).sqrt()
    torch.testing.assert_close(units[1, 1, 1, 0], expected)
    torch.testing.assert_close(units.mean(-1), torch.zeros(2, 2, 2, 2), atol=1e-5, rtol=0)


def test_masks_hide_the_same_share_of_every_clip_reproducibly():
    a = sample_mask(5, (8, 4, 4), 0.6, generator=torch.Generator().manual_seed(3))
    b = sample_mask(5, (8, 4, 4), 0.6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (5, 8, 4, 4) and a.dtype == torch.bool
    assert a.flatten(1).sum(1).tolist() == [77] * 5  # round(0.6 * 128)
    assert not torch.equal(a[0], a[1])  # every clip has its own mask


def test_loss_counts_hidden_units_only():
    pred, target = torch.zeros(1, 2, 1, 1, 4), torch.ones(1, 2, 1, 1, 4)
    target[0, 1] = 3.0
    mask = torch.tensor([True, False]).view(1, 2, 1, 1)
    assert masked_mse(pred, (target, mask)).item() == pytest.approx(1.0)  # the visible unit's error 9 is ignored


def test_hidden_pixels_do_not_reach_the_prediction():
    """The mask token replaces the embedding of hidden units: changing pixels that only hidden
    tokens see (a hidden unit's first frame, away from the border the next unit's embedding kernel
    overlaps) leaves every prediction unchanged, while changing a visible unit's pixels does not."""
    torch.manual_seed(0)
    model = MaskedVideoModel(registry.create_model("ifdd_tiny", "gap")).eval()
    assert model.grid == (8, 4, 4) and (model.t_unit, model.s_unit) == (2, 16)
    x = torch.rand(1, 3, 16, 64, 64)
    mask = torch.zeros(1, 8, 4, 4, dtype=torch.bool)
    mask[0, 3, 1, 2] = True  # frames 6-7, rows 16-31, columns 32-47
    with torch.no_grad():
        clean = model(x, mask)
        hidden = x.clone()
        hidden[:, :, 6, 16:29, 32:45] = torch.rand(3, 13, 13)  # frame 6: token frame 4's kernel starts at 7
        torch.testing.assert_close(model(hidden, mask), clean, rtol=0, atol=0)
        visible = x.clone()
        visible[:, :, 6, 0:13, 0:13] = torch.rand(3, 13, 13)
        assert not torch.allclose(model(visible, mask), clean)


def test_motion_target_is_zero_where_nothing_moves():
    from ifdd_bench.pretext.masked import motion_residual

    x = torch.rand(1, 3, 1, 8, 8).expand(1, 3, 4, 8, 8).clone()  # a still clip
    x[0, :, 2, :4, :4] += 0.5  # one block changes in one frame
    residual = motion_residual(x)
    assert residual[..., 4:, 4:].abs().max() == 0 and residual[0, :, 2, :4, :4].abs().min() > 0
    model = MaskedVideoModel(registry.create_model("ifdd_tiny", "gap"), "motion")
    units = model.targets(torch.rand(1, 1, 1, 64, 64).expand(1, 3, 16, 64, 64))  # still clip
    assert units.shape == (1, 8, 4, 4, 1536) and units.abs().max() < 1e-4  # float rounding, not amplified
