"""Temporal-jigsaw loss (paper §3.3): classify which permutation reordered the clip's segments.

Cross-entropy over ``seg_num!`` classes and top-1 accuracy, as the reference ``jigsaw_batch``. Labels index
:func:`ms2l_ray.pretext.augment.permutation_table`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, K], got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must be [N] = [{logits.shape[0]}], got shape {tuple(labels.shape)}")


def jigsaw_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of permutation logits ``[N, K]`` against labels ``[N]``."""
    _check(logits, labels)
    return nn.functional.cross_entropy(logits, labels)


def jigsaw_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose argmax equals the label (scalar float tensor, no gradient)."""
    _check(logits, labels)
    return (logits.detach().argmax(dim=1) == labels).float().mean()


class JigsawLoss(nn.Module):
    """Cross-entropy + accuracy for a ``seg_num``-segment jigsaw (``seg_num!`` classes).

    Args:
        seg_num: number of temporal segments, ``>= 2``.
    """

    def __init__(self, seg_num: int) -> None:
        super().__init__()
        if seg_num < 2:
            raise ValueError(f"seg_num must be >= 2, got {seg_num}")
        self.seg_num = seg_num
        self.num_classes = math.factorial(seg_num)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss, accuracy)``."""
        if logits.dim() == 2 and logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have seg_num! = {self.num_classes} columns, got shape "
                             f"{tuple(logits.shape)}")
        return jigsaw_loss(logits, labels), jigsaw_accuracy(logits, labels)
