"""Classification metrics of the benchmark, all derived from one confusion matrix.

* WAR (weighted average recall) = accuracy = correct / samples.
* UAR (unweighted average recall) = mean over the classes **present in the targets** of
  TP_c / (TP_c + FN_c). A class with no test sample has no recall and is left out of the mean
  (it is reported as ``nan`` in the per-class vector); a class that is never predicted but has
  samples counts with recall 0.
* per-class recall, per-class support and the confusion matrix itself (rows = true class,
  columns = predicted class).

Everything is computed from integer counts, so the distributed version is exact: every rank
accumulates its own confusion matrix, one ``all_reduce(SUM)`` adds them, and the metrics follow
(:meth:`ConfusionMatrix.all_reduce`). This is the torchmetrics recipe without the dependency.

Example::

    >>> cm = ConfusionMatrix(3)
    >>> cm.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))
    >>> round(cm.compute()["uar"], 3), cm.compute()["war"]
    (0.833, 0.75)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def confusion_counts(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts with ``cm[true, pred]``; ``preds`` and ``targets`` are 1-D class indices."""
    preds = preds.reshape(-1).long()
    targets = targets.reshape(-1).long()
    if preds.shape != targets.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and targets {tuple(targets.shape)} differ in length")
    if preds.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes
                          or int(preds.min()) < 0 or int(preds.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    flat = targets * num_classes + preds  # (N,)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: np.ndarray | torch.Tensor) -> dict:
    """UAR, WAR, per-class recall and support from a (K, K) confusion matrix (rows = truth).

    Returns ``{"uar", "war", "recall" (list, nan for absent classes), "support" (list),
    "confusion" (list of lists), "samples", "classes_present"}``. With no samples at all UAR and
    WAR are ``nan``.
    """
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.int64)
    support = cm.sum(axis=1)  # (K,) samples per true class
    correct = np.diag(cm)
    total = int(support.sum())
    present = support > 0
    recall = np.full(cm.shape[0], np.nan)
    recall[present] = correct[present] / support[present]
    uar = float(recall[present].mean()) if present.any() else math.nan
    war = float(correct.sum() / total) if total else math.nan
    return {
        "uar": uar,
        "war": war,
        "recall": [float(r) for r in recall],
        "support": [int(s) for s in support],
        "confusion": cm.tolist(),
        "samples": total,
        "classes_present": int(present.sum()),
    }


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches (and over processes with :meth:`all_reduce`)."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of predicted and true class indices."""
        self.counts += confusion_counts(preds.to(self.counts.device), targets.to(self.counts.device),
                                        self.num_classes)

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the counts of every process in the default group (no-op when not distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.counts, op=dist.ReduceOp.SUM)
        return self

    def compute(self) -> dict:
        """Metrics of the counts so far (see :func:`metrics_from_confusion`)."""
        return metrics_from_confusion(self.counts)


def classification_metrics(preds: Sequence[int] | torch.Tensor, targets: Sequence[int] | torch.Tensor,
                           num_classes: int) -> dict:
    """One-shot helper: metrics of two sequences of class indices."""
    preds_t = torch.as_tensor(preds, dtype=torch.long)
    targets_t = torch.as_tensor(targets, dtype=torch.long)
    return metrics_from_confusion(confusion_counts(preds_t, targets_t, num_classes))
