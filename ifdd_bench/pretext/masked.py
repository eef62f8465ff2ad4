"""Masked-video reconstruction, the label-neutral pretext objective (``objective="masked-video"``).

The backbone sees a clip in which part of the spatio-temporal token grid is replaced by one learned
mask token, and a light head reconstructs the pixels of the hidden parts from what it sees -- the
masked-modelling recipe of VideoMAE / MaskFeat, in the form that suits a pooling-attention backbone
(the tokens stay on their grid, as in SimMIM, instead of being dropped). The targets are the clip's
own pixels: no expression parameter, no class, nothing of the label space is ever read.

Two targets (:data:`TARGETS`): ``pixels``, the unit's pixels standardised per unit; ``motion``,
each pixel's deviation from its own mean over the clip (what moved, the still parts being ~0),
scaled by the clip's overall deviation. Both are computed from the pixels alone.

The masking unit is one token of the first backbone tap (the coarser of the two taps IFDD reads):
one token frame (two input frames) by ``s x s`` embedding tokens, where ``s`` is the spatial stride
between the embedding grid and that tap. Every unit is predicted from the same tap, after the
second tap is brought up to its grid, by one linear layer; the loss is the mean squared error of
per-unit standardised pixels over the hidden units only.
"""

from __future__ import annotations

import torch
from torch import nn

from ifdd_bench.models.ifdd import TOKEN_FRAMES


#: reconstruction targets of the masked-video objective
TARGETS = ("pixels", "motion")


def patch_units(x: torch.Tensor, t_unit: int, s_unit: int, standardise: bool = True) -> torch.Tensor:
    """Pixels of each masking unit, standardised per unit unless ``standardise`` is False.

    ``x (B, C, T, H, W)`` -> ``(B, T/t_unit, H/s_unit, W/s_unit, t_unit*s_unit*s_unit*C)``.
    """
    b, c, t, h, w = x.shape
    units = x.reshape(b, c, t // t_unit, t_unit, h // s_unit, s_unit, w // s_unit, s_unit)
    units = units.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, t // t_unit, h // s_unit, w // s_unit, -1)
    if not standardise:
        return units
    mean, var = units.mean(-1, keepdim=True), units.var(-1, keepdim=True, unbiased=False)
    return (units - mean) / (var + 1e-6).sqrt()


def motion_residual(x: torch.Tensor) -> torch.Tensor:
    """Each pixel minus its mean over the clip's frames, divided by the clip's residual std.

    ``(B, C, T, H, W)`` -> same shape; still pixels go to ~0, moving ones keep their change.
    """
    residual = x - x.mean(dim=2, keepdim=True)
    scale = residual.flatten(1).std(dim=1).clamp_min(1e-2)  # (B,); a still clip stays ~0, not amplified noise
    return residual / scale.view(-1, 1, 1, 1, 1)


def sample_mask(batch: int, grid: tuple[int, int, int], ratio: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool ``(B, t, h, w)``: exactly ``round(ratio * t*h*w)`` hidden units per clip, uniformly placed."""
    n = grid[0] * grid[1] * grid[2]
    hidden = max(1, min(n - 1, round(ratio * n)))
    scores = torch.rand(batch, n, generator=generator)
    order = scores.argsort(dim=1)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    mask.scatter_(1, order[:, :hidden], True)
    return mask.view(batch, *grid)


def masked_mse(pred: torch.Tensor, target_and_mask: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean squared error over the hidden units: ``pred`` and target ``(B, t, h, w, D)``, mask ``(B, t, h, w)``."""
    target, mask = target_and_mask
    per_unit = ((pred - target) ** 2).mean(-1)  # (B, t, h, w)
    return per_unit[mask].mean()


class MaskedVideoModel(nn.Module):
    """IFDD's embedding + backbone with a mask token and a linear pixel head on the first tap's grid."""

    def __init__(self, ifdd: nn.Module, target: str = "pixels"):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"masked-video target must be one of {TARGETS}, got {target!r}")
        self.target = target
        self._unit_input = motion_residual if target == "motion" else None  # chosen once, not per call
        cfg = ifdd.cfg
        self.embed, self.backbone = ifdd.embed, ifdd.backbone
        self.in_chans = cfg.in_chans
        embed_grid = cfg.img_size // cfg.patch_stride
        first, last = cfg.taps[0], cfg.taps[-1]
        self.tap_grids = (cfg.stage_grids[first], cfg.stage_grids[last])
        self.s_embed = embed_grid // self.tap_grids[0]  # embedding tokens per unit side
        self.s_unit = self.s_embed * cfg.patch_stride  # pixels per unit side
        self.t_unit = cfg.frames // TOKEN_FRAMES  # input frames per token frame
        self.grid = (TOKEN_FRAMES, self.tap_grids[0], self.tap_grids[0])
        self.mask_token = nn.Parameter(torch.zeros(cfg.widths[0]))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        channels = cfg.widths[first] + cfg.widths[last]
        self.norm = nn.LayerNorm(channels)
        self.out = nn.Linear(channels, self.t_unit * self.s_unit * self.s_unit * cfg.in_chans)

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> unit targets ``(B, t, h, w, D)`` (:data:`TARGETS`)."""
        if self._unit_input is None:
            return patch_units(x, self.t_unit, self.s_unit)  # pixels, standardised per unit
        return patch_units(self._unit_input(x), self.t_unit, self.s_unit, standardise=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, 3, T, H, W)`` in [0, 1], ``mask (B, t, h, w)`` bool -> predicted unit pixels ``(B, t, h, w, D)``."""
        tokens = self.embed(x)  # (B, C0, T', G, G)
        hide = mask.repeat_interleave(self.s_embed, 2).repeat_interleave(self.s_embed, 3)  # (B, T', G, G)
        hide = hide.unsqueeze(1).to(tokens.dtype)  # (B, 1, T', G, G)
        tokens = tokens * (1 - hide) + self.mask_token.view(1, -1, 1, 1, 1) * hide
        taps = self.backbone(tokens)  # [(B, 1 + T'*g_s*g_s, C_s)]
        b = x.shape[0]
        (g_fine, g_coarse), t = self.tap_grids, TOKEN_FRAMES
        fine = taps[0][:, 1:].reshape(b, t, g_fine, g_fine, -1)  # (B, T', g, g, C_a)
        coarse = taps[-1][:, 1:].reshape(b, t, g_coarse, g_coarse, -1)  # (B, T', g', g', C_b)
        up = g_fine // g_coarse
        coarse = coarse.repeat_interleave(up, 2).repeat_interleave(up, 3)  # (B, T', g, g, C_b)
        return self.out(self.norm(torch.cat([fine, coarse], dim=-1)))  # (B, T', g, g, D)
