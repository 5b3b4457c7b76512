"""Deterministic, shardable batch index plans (a seeded stand-in for ``DistributedSampler``).

Why not a DataLoader: a batch is one vectorised gather from the ragged store
(:meth:`SkeletonSet.batch`), so index plans are all we need; making them a pure function of
``(seed, epoch, rank, world_size)`` gives exact resume and the shuffling the reference code forgot
(its training loader used ``shuffle=False``).
"""

from __future__ import annotations

import numpy as np

from ms2l_ray.train.runtime import derive_seed


def train_batches(indices: np.ndarray, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, min_batch: int = 2) -> list[np.ndarray]:
    """Shuffled per-rank batches for one epoch; every rank gets the same number of batches.

    Args:
        indices: sample indices of the training part.
        batch_size: *global* batch size; each rank takes ``batch_size // world_size``.
        min_batch: trailing batches smaller than this are dropped (BatchNorm needs ≥ 2).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} for world_size {world_size}")
    per_rank = max(1, batch_size // world_size)
    rng = np.random.default_rng(derive_seed(seed, epoch, 7919))
    perm = rng.permutation(np.asarray(indices, dtype=np.int64))
    if len(perm) == 0:
        return []
    pad = (-len(perm)) % world_size  # like DistributedSampler: repeat the head so ranks are equal
    perm = np.concatenate([perm, perm[:pad]]) if pad else perm
    mine = perm[rank::world_size]
    batches = [mine[i:i + per_rank] for i in range(0, len(mine), per_rank)]
    if batches and len(batches[-1]) < min_batch:
        batches.pop()
    return batches


def eval_batches(indices: np.ndarray, batch_size: int, *, rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
    """Unshuffled contiguous shard of ``indices`` for this rank, in batches (no sample counted twice)."""
    shard = np.array_split(np.asarray(indices, dtype=np.int64), world_size)[rank]
    return [shard[i:i + batch_size] for i in range(0, len(shard), batch_size)]
