"""The data shape contract, written once. Every other module follows it.

On disk (Arrow store, ``ms2l_ray.data.store``): one row per sequence; the ``frames`` column holds the
sequence at its *valid length* only (no padding), as ``L × F`` float32 values.

In memory, per batch (what the encoder sees), REFERENCE.md §1:
    ``x``       float32 ``[N, T, F]``, zero after each sequence's valid length;
    ``lengths`` int64   ``[N]``, ``1 <= lengths[n] <= T``;
    ``labels``  int64   ``[N]``, 0-based class ids.

Flattening order of ``F = M·V·C`` is **(M, V, C)**: person-major, then joint, then coordinate, i.e.
``x[n, t, (m·V + v)·C + c]``. This is the CTR-GCN ``.npz`` order and the order the reference code's
augmentations assume; the reference code's own ST-GCN reshape produced (C, V, M) instead — a defect we
do not repeat. ST-GCN arrays ``[N, C, T, V, M]`` are converted with :func:`from_nctvm`.

Sequences longer than the configured ``max_frames`` are resampled to ``max_frames`` frames at evenly
spaced indices (:func:`resample_indices`), which keeps the whole action instead of cutting its end.
"""

from __future__ import annotations

import numpy as np
import torch

COORDS = 3  # x, y, z


class ShapeError(ValueError):
    """A tensor or array that breaks the contract; the message carries the actual shape."""


def feature_dim(num_persons: int, num_joints: int, coords: int = COORDS) -> int:
    """``F = M·V·C``."""
    return num_persons * num_joints * coords


def flatten_mvc(x: torch.Tensor) -> torch.Tensor:
    """``[..., M, V, C]`` → ``[..., M·V·C]`` in the contract's (M, V, C) order."""
    if x.dim() < 3:
        raise ShapeError(f"flatten_mvc needs [..., M, V, C], got shape {tuple(x.shape)}")
    return x.reshape(*x.shape[:-3], -1)  # [..., M*V*C]


def unflatten_mvc(x: torch.Tensor, num_persons: int, num_joints: int, coords: int = COORDS) -> torch.Tensor:
    """``[..., F]`` → ``[..., M, V, C]``; raises if ``F`` is not ``M·V·C``."""
    f = feature_dim(num_persons, num_joints, coords)
    if x.shape[-1] != f:
        raise ShapeError(f"expected last dim M·V·C = {num_persons}·{num_joints}·{coords} = {f}, "
                         f"got shape {tuple(x.shape)}")
    return x.reshape(*x.shape[:-1], num_persons, num_joints, coords)  # [..., M, V, C]


def from_nctvm(x: np.ndarray, dtype: type | None = np.float32) -> np.ndarray:
    """ST-GCN ``[N, C, T, V, M]`` → contract ``[N, T, M·V·C]`` (a copy).

    The copy is float32; ``dtype=None`` keeps ``x``'s, so a reader can range-check the stored values before the
    cast.
    """
    if x.ndim != 5:
        raise ShapeError(f"ST-GCN arrays are [N, C, T, V, M], got shape {x.shape}")
    n, c, t, v, m = x.shape
    out = np.ascontiguousarray(x.transpose(0, 2, 4, 3, 1))  # [N, T, M, V, C]
    out = out.reshape(n, t, m * v * c)  # [N, T, M*V*C]
    return out if dtype is None else out.astype(dtype, copy=False)


def check_batch(x: torch.Tensor, lengths: torch.Tensor, num_features: int | None = None) -> None:
    """Raise :class:`ShapeError` unless ``x``/``lengths`` follow the contract."""
    if x.dim() != 3:
        raise ShapeError(f"x must be [N, T, F], got shape {tuple(x.shape)}")
    if num_features is not None and x.shape[2] != num_features:
        raise ShapeError(f"x must have F = {num_features} features, got shape {tuple(x.shape)}")
    if lengths.shape != (x.shape[0],):
        raise ShapeError(f"lengths must be [N] = [{x.shape[0]}], got shape {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise ShapeError(f"lengths must lie in 1..T = 1..{x.shape[1]}, "
                         f"got min {int(lengths.min())} max {int(lengths.max())}")


def valid_mask(lengths: torch.Tensor, max_frames: int) -> torch.Tensor:
    """Boolean ``[N, T]``: True where ``t < lengths[n]``."""
    t = torch.arange(max_frames, device=lengths.device)
    return t.unsqueeze(0) < lengths.unsqueeze(1)  # [N, T]


def resample_indices(length: np.ndarray, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (relative to each sequence start) that fit each length into ``max_frames``.

    Args:
        length: ``[N]`` valid lengths on disk.
        max_frames: ``T`` of the batch.

    Returns:
        ``(idx [N, T] int64, new_length [N] int64)``: ``idx[n, t]`` is the source frame for batch frame
        ``t``; entries at ``t >= new_length[n]`` are 0 and must be masked by the caller.
    """
    length = np.asarray(length, dtype=np.int64)
    new_len = np.minimum(length, max_frames)
    t = np.arange(max_frames, dtype=np.int64)[None, :]  # [1, T]
    # Evenly spaced source frames: floor(t * L / T') for long sequences, identity for short ones.
    idx = (t * length[:, None]) // np.maximum(new_len[:, None], 1)  # [N, T]
    idx = np.where(t < new_len[:, None], idx, 0)
    return idx, new_len
