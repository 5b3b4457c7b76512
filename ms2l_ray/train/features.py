"""Frozen-encoder features, computed once per split (linear evaluation and KNN reuse them).

Why cache: with a frozen encoder and no augmentation (linear protocol, paper §4.3), every epoch of
the reference code recomputes identical features; computing them once gives the same classifier
updates at a fraction of the cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.train.batches import eval_positions, padded_lengths
from ms2l_ray.train.collectives import all_gather_cat
from ms2l_ray.train.precision import Precision

EncodeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [N,T,F], lengths [N]) -> [N, H]


@torch.no_grad()
def extract_features(encode: EncodeFn, data: SkeletonSet, indices: np.ndarray, *, batch_size: int, max_frames: int,
                     device: torch.device, rank: int = 0, world_size: int = 1, bucketing: bool = False,
                     precision: Precision | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features ``[N, H]`` (CPU, fp32) and labels ``[N]`` for ``indices``, in order.

    Under DDP each rank encodes a disjoint shard and the shards are all-gathered in rank order
    (:func:`~ms2l_ray.train.collectives.all_gather_cat`, on the process group's device), so every rank
    ends with the full matrix. ``bucketing`` (``data.bucketing``) encodes each shard in length-sorted batches
    (less padding to run the encoder over) and puts the rows back in shard order; ``precision`` runs the
    encoder under its autocast.
    """
    idx_all = np.asarray(indices, dtype=np.int64)
    lens = padded_lengths(data.lengths, idx_all, max_frames) if bucketing else None
    positions = eval_positions(len(idx_all), batch_size, rank=rank, world_size=world_size, lengths=lens)
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for pos in positions:
        x, lengths, y = data.batch(idx_all[pos], max_frames)
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            h = encode(x.to(device), lengths.to(device))
        feats.append(h.float().cpu())
        labels.append(y)
    f = torch.cat(feats) if feats else torch.zeros(0, 0)
    y_all = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    if lens is not None and positions:
        back = torch.from_numpy(np.argsort(np.concatenate(positions), kind="stable"))  # sorted → shard order
        f, y_all = f[back], y_all[back]
    if world_size > 1:
        f, y_all = all_gather_cat(f), all_gather_cat(y_all)
    return f, y_all
