"""Weighted KNN on frozen features: a cheap, training-free probe of representation quality.

Used as an evaluation strategy of its own and as the early-stopping proxy reported during
pretraining (Tune trials are cut on it). Cosine similarity, top-k neighbours, votes weighted by
``exp(sim / τ)`` (the usual instance-discrimination KNN protocol).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ms2l_ray.train.metrics import topk_correct


@torch.no_grad()
def knn_logits(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, num_classes: int, k: int,
               temperature: float, chunk: int = 1024) -> torch.Tensor:
    """Class scores ``[Q, K]`` for each query from its ``k`` nearest bank features.

    Shape:
        bank: ``[N, H]``; bank_labels: ``[N]``; query: ``[Q, H]``.
    """
    if len(bank) == 0:
        raise ValueError("KNN needs a non-empty feature bank")
    k = min(k, len(bank))
    bank_n = F.normalize(bank, dim=1)
    out = []
    for start in range(0, len(query), chunk):  # chunked to bound the [Q, N] similarity matrix
        q = F.normalize(query[start:start + chunk], dim=1)
        sim = q @ bank_n.T  # [q, N]
        top_sim, top_idx = sim.topk(k, dim=1)  # [q, k]
        weights = (top_sim / temperature).exp()  # [q, k]
        votes = torch.zeros(len(q), num_classes, dtype=weights.dtype, device=weights.device)  # bank's device
        votes.scatter_add_(1, bank_labels[top_idx], weights)  # [q, K]
        out.append(votes)
    return torch.cat(out)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor,
                 num_classes: int, k: int, temperature: float) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of KNN classification of ``query``."""
    if len(query) == 0:
        return {"top1": float("nan"), "top5": float("nan")}
    logits = knn_logits(bank, bank_labels, query, num_classes, k, temperature)
    hits = topk_correct(logits, query_labels)
    return {"top1": 100.0 * hits[1] / len(query), "top5": 100.0 * hits[5] / len(query)}
