"""Batch mixup / cutmix for video clips, built on timm's :class:`~timm.data.Mixup`.

Semantics (IFDD reference, spec 9.1, = timm ``mode="batch"``): one λ per batch; with probability
``switch_prob`` CutMix (λ ~ Beta(cutmix_alpha)) else Mixup (λ ~ Beta(mixup_alpha)); the partner of
sample i is sample B-1-i (the batch reversed); CutMix pastes one box of the partner, identical for
every frame and channel, and corrects λ to the kept area; targets are label-smoothed one-hot
vectors mixed with the same λ. The batch size must be even.

timm's box indexing addresses the last two dimensions of a 4-D image batch. A video batch
``(B, C, T, H, W)`` is therefore viewed as ``(B, C*T, H, W)`` (no copy) so the box lands on H, W
for all frames.

timm draws its random numbers from NumPy's *global* generator. :class:`ClipMixer` swaps in its
own generator state around each call, so mixing is reproducible from ``(seed, epoch)`` alone and
unaffected by whatever else uses NumPy (data transforms, other libraries) - this is what makes a
resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch
from timm.data import Mixup

from ifdd_bench.config import TrainConfig
from ifdd_bench.errors import ConfigError


class ClipMixer:
    """Mix a clip batch and build soft targets: ``x, soft_y = mixer(x, y)``.

    ``x`` is ``(B, C, T, H, W)`` (or any ``(B, ..., H, W)``); ``y`` holds class indices ``(B,)``.
    Returns the mixed batch (same shape) and targets ``(B, K)``.
    """

    def __init__(self, cfg: TrainConfig, num_classes: int):
        self.num_classes = num_classes
        self.timm_mixup = Mixup(
            mixup_alpha=cfg.mixup_alpha,
            cutmix_alpha=cfg.cutmix_alpha,
            prob=cfg.mix_prob,
            switch_prob=cfg.switch_prob,
            mode="batch",
            correct_lam=True,
            label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )
        self._state = np.random.RandomState(0).get_state()
        self.last_lam: float = 1.0

    def reseed(self, seed: int) -> None:
        """Restart the mixer's private random stream (the engine calls this once per epoch)."""
        self._state = np.random.RandomState(seed % 2**32).get_state()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] % 2:
            raise ConfigError(f"mixup/cutmix needs an even batch, got {x.shape[0]} clips; "
                              "set an even batch_size (the engine drops the last partial batch)")
        shape = x.shape
        flat = x.contiguous().view(shape[0], -1, shape[-2], shape[-1])  # (B, C*T, H, W)
        outer = np.random.get_state()
        np.random.set_state(self._state)
        try:
            flat, soft = self.timm_mixup(flat, y)
            self._state = np.random.get_state()
        finally:
            np.random.set_state(outer)
        # the target's λ is the corrected one; recover it from the first row for logging
        self.last_lam = _lam_from_targets(soft, y, self.num_classes, self.timm_mixup.label_smoothing)
        return flat.view(shape), soft


def _lam_from_targets(soft: torch.Tensor, y: torch.Tensor, k: int, smoothing: float) -> float:
    off = smoothing / k
    on = 1.0 - smoothing + off
    if on == off or y[0] == y.flip(0)[0]:
        return 1.0
    return float((soft[0, y[0]] - off) / (on - off))


def soft_target_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k y_k log softmax(logits)_k`` (computed in float32)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, K)
    return -(soft_targets * log_probs).sum(dim=-1).mean()
