"""Deterministic, shardable batch index plans (a seeded stand-in for ``DistributedSampler``).

Why not a DataLoader: a batch is one vectorised gather from the ragged store
(:meth:`SkeletonSet.batch`), so index plans are all we need; making them a pure function of
``(seed, epoch, rank, world_size)`` gives exact resume and the shuffling the reference code forgot
(its training loader used ``shuffle=False``).

Two training plans (``data.bucketing`` picks one, :func:`train_batches` implements both):

* **random** (``data.bucketing: false``, the reference's shuffled loader): a seeded permutation cut into
  batches. A batch is padded to its longest clip; with NTU-like lengths (mean ≈ 90, long tail to 300) a batch
  of 64 has a longest clip of ≈ 190–300, so the encoder spends most of its GRU steps on padding.
* **length-bucketed** (``data.bucketing: true``, "sortish" sampling): the same seeded permutation is cut into
  chunks of ``chunk_batches`` global batches, each chunk is sorted by clip length (stable, so equal lengths
  keep their random order), cut into batches, and the batch order is shuffled. A batch's padded length is
  then close to its mean length; membership and order still change every epoch, seeded from
  ``(seed, epoch)``, and the encoder (``impl="reversed"`` cuts each batch to its longest clip) skips what the
  batch no longer pads.

Under DDP the plan is global (a function of ``(seed, epoch)`` only) and each rank takes every
``world_size``-th clip of every global batch: ranks are disjoint, run the same number of steps, and at a given
step all ranks hold clips of similar length, so none waits on another's longer batch.
"""

from __future__ import annotations

import numpy as np

from ms2l_ray.train.runtime import derive_seed

# Chunk size of the length-bucketed plan, in global batches: large enough that most batches hold clips of
# nearly one length, small enough that batch membership is re-drawn every epoch on datasets of many chunks.
CHUNK_BATCHES = 50


def train_batches(indices: np.ndarray, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, min_batch: int = 2, lengths: np.ndarray | None = None,
                  chunk_batches: int = CHUNK_BATCHES) -> list[np.ndarray]:
    """Shuffled per-rank batches for one epoch; every rank gets the same number of batches.

    Args:
        indices: sample indices of the training part.
        batch_size: *global* batch size; each rank takes ``batch_size // world_size``.
        seed: the run's seed; with ``epoch`` it fixes the shuffle, so a resumed run replays the same batches.
        epoch: the 0-based epoch the batches are for.
        rank: this rank, ``0 <= rank < world_size``.
        world_size: ranks in the job; each takes an equal share of every global batch.
        min_batch: batches smaller than this are dropped (BatchNorm needs ≥ 2); only the one partial batch
            of an epoch can be, and it is the same size on every rank, so all ranks drop it together.
        lengths: ``[len(indices)]`` padded length of each clip (``min(length, max_frames)``): given, the
            batches are length-bucketed (module docstring); ``None``: the random plan, as before bucketing.
        chunk_batches: global batches per sorted chunk of the bucketed plan (≥ 1).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} for world_size {world_size}")
    per_rank = max(1, batch_size // world_size)
    rng = np.random.default_rng(derive_seed(seed, epoch, 7919))
    if lengths is not None:
        return _bucketed(np.asarray(indices, dtype=np.int64), np.asarray(lengths), per_rank, rng, rank=rank,
                         world_size=world_size, min_batch=min_batch, chunk_batches=chunk_batches)
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


def _bucketed(indices: np.ndarray, lengths: np.ndarray, per_rank: int, rng: np.random.Generator, *, rank: int,
              world_size: int, min_batch: int, chunk_batches: int) -> list[np.ndarray]:
    """The length-bucketed ("sortish") plan of :func:`train_batches`; same batch count as the random plan."""
    if lengths.shape != indices.shape:
        raise ValueError(f"lengths must match indices: {lengths.shape} vs {indices.shape}")
    if chunk_batches < 1:
        raise ValueError(f"chunk_batches must be >= 1, got {chunk_batches}")
    order = rng.permutation(len(indices))  # positions into indices
    if len(order) == 0:
        return []
    pad = (-len(order)) % world_size  # as the random plan: repeat the head so ranks are equal
    order = np.concatenate([order, order[:pad]]) if pad else order
    global_batch = per_rank * world_size
    chunk = chunk_batches * global_batch  # a multiple of the global batch: only the last chunk ends partial
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]  # stable: ties keep their random order
        batches.extend(part[i:i + global_batch] for i in range(0, len(part), global_batch))
    mine = [indices[batches[j][rank::world_size]] for j in rng.permutation(len(batches))]
    return [b for b in mine if len(b) >= min_batch]


def eval_positions(n: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                   lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """Positions ``0..n-1`` of this rank's contiguous shard, in batches (no position on two ranks).

    ``lengths`` (``[n]``, padded length per position) sorts the shard by length before cutting, so each batch
    pads little; the caller puts outputs back in position order (:func:`ms2l_ray.train.features.extract_features`).
    ``None``: the shard in order, as before bucketing.
    """
    shard = np.array_split(np.arange(n, dtype=np.int64), world_size)[rank]
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (n,):
            raise ValueError(f"lengths must be [{n}], got shape {lengths.shape}")
        shard = shard[np.argsort(lengths[shard], kind="stable")]
    return [shard[i:i + batch_size] for i in range(0, len(shard), batch_size)]


def eval_batches(indices: np.ndarray, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """This rank's contiguous shard of ``indices`` in batches (no sample counted twice).

    With ``lengths`` (``[len(indices)]``) the shard is sorted by length (for sums and counts, where order does
    not matter).
    """
    idx = np.asarray(indices, dtype=np.int64)
    return [idx[p] for p in eval_positions(len(idx), batch_size, rank=rank, world_size=world_size, lengths=lengths)]


def padded_lengths(all_lengths: np.ndarray, indices: np.ndarray, max_frames: int) -> np.ndarray:
    """``min(length, max_frames)`` of each of ``indices``: the time steps each clip takes in a batch.

    :meth:`ms2l_ray.data.container.SkeletonSet.batch` resamples longer clips to ``max_frames``.
    """
    return np.minimum(np.asarray(all_lengths)[np.asarray(indices, dtype=np.int64)], max_frames)
