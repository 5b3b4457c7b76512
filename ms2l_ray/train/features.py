"""Frozen-encoder features, computed once per split (linear evaluation and KNN reuse them).

Why cache: with a frozen encoder and no augmentation (linear protocol, paper §4.3), every epoch of
the reference code recomputes identical features; computing them once gives the same classifier
updates at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.train.batches import eval_batches

EncodeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [N,T,F], lengths [N]) -> [N, H]


@torch.no_grad()
def extract_features(encode: EncodeFn, data: SkeletonSet, indices: np.ndarray, *, batch_size: int, max_frames: int,
                     device: torch.device, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features ``[N, H]`` (CPU) and labels ``[N]`` for ``indices``, in order.

    Under DDP each rank encodes a disjoint shard and the shards are all-gathered, so every rank ends
    with the full matrix.
    """
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for idx in eval_batches(indices, batch_size, rank=rank, world_size=world_size):
        x, lengths, y = data.batch(idx, max_frames)
        feats.append(encode(x.to(device), lengths.to(device)).float().cpu())
        labels.append(y)
    f = torch.cat(feats) if feats else torch.zeros(0, 0)
    y_all = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        gathered: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * world_size
        dist.all_gather_object(gathered, (f, y_all))
        parts = [g for g in gathered if g is not None and len(g[1])]
        f = torch.cat([p[0] for p in parts])
        y_all = torch.cat([p[1] for p in parts])
    return f, y_all
