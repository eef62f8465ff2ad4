"""Per-clip memo of a frozen feature extractor, keyed by the clip's content.

When a model's embedding and backbone are frozen (``IFDDConfig.freeze_backbone``) and the training
clips reach it unchanged every epoch (no random augmentation, one fixed frame sampling), the
backbone computes the same features for the same clip in every epoch. :class:`FeatureMemo` keeps
them: each clip is looked up by a digest of its bytes, so a changed clip (augmented, perturbed by a
probe, another temporal window) is simply a new entry, never a wrong hit.

Every clip the memo handles is computed on its own (batch of one), hit or miss, so a clip's
features do not depend on which other clips shared its batch: a run gives the same numbers whether
its memo was filled in one order or another (e.g. after resuming). Its budget bounds the memory;
past it, clips are still computed (one at a time) but no longer kept.

Example::

    memo = FeatureMemo(lambda x: [backbone(x)], budget_mb=512)
    taps = memo(clips)  # list of (B, ...) tensors, one per output of the extractor
"""

from __future__ import annotations

import hashlib
from typing import Callable

import torch


def clip_key(clip: torch.Tensor) -> bytes:
    """Digest of one clip's shape, dtype and bytes (``(C, T, H, W)`` on any device)."""
    data = clip.detach().contiguous().cpu()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((tuple(data.shape), str(data.dtype))).encode())
    digest.update(data.flatten().view(torch.uint8).numpy().tobytes())  # raw bytes of any dtype
    return digest.digest()


class FeatureMemo:
    """Memoise ``extract(x) -> list of (B, ...) tensors`` per clip, within ``budget_mb`` megabytes."""

    def __init__(self, extract: Callable[[torch.Tensor], list[torch.Tensor]], budget_mb: float):
        if not budget_mb > 0:
            raise ValueError(f"FeatureMemo budget_mb must be > 0, got {budget_mb!r}")
        self.extract = extract
        self.budget = int(budget_mb * 2 ** 20)
        self.entries: dict[bytes, list[torch.Tensor]] = {}
        self.bytes = 0
        self.hits = self.misses = 0

    def clear(self) -> None:
        """Forget every entry (e.g. after the frozen weights were replaced)."""
        self.entries.clear()
        self.bytes = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x (B, C, T, H, W)`` -> the extractor's outputs for the batch, each ``(B, ...)``."""
        rows = []
        for clip in x:
            key = clip_key(clip)
            feats = self.entries.get(key)
            if feats is None:
                self.misses += 1
                feats = [f.detach() for f in self.extract(clip.unsqueeze(0))]  # each (1, ...)
                size = sum(f.numel() * f.element_size() for f in feats)
                if self.bytes + size <= self.budget:
                    self.entries[key] = feats
                    self.bytes += size
            else:
                self.hits += 1
            rows.append(feats)
        return [torch.cat(parts) for parts in zip(*rows)]  # each (B, ...)
