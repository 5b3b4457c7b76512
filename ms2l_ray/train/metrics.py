"""Classification metrics: top-k accuracy, confusion matrix, per-class accuracy.

Summing them over DDP ranks is ``ms2l_ray.train.collectives.all_reduce_sum`` (backend-aware devices).
"""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the top-k logits, for each k (k clipped to #classes).

    Shape:
        logits: ``[N, K]``; labels: ``[N]``.
    """
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [N, kmax]
    hits = top == labels.unsqueeze(1)  # [N, kmax]
    return {k: int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[K, K]`` counts, rows = true class, columns = predicted class."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)  # [K, K]


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall per true class (NaN for a class with no samples)."""
    total = cm.sum(dim=1).double()
    return cm.diag().double() / total.where(total > 0, torch.full_like(total, float("nan")))
