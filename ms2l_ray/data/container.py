"""The one dataset type every training loop consumes: ragged sequences plus per-sample metadata.

Why ragged: sequences are kept at their valid length (REFERENCE.md §3 datasets range from 1 to 300
frames), so memory grows with the real frame count, not ``N × max_frames``. ``frames`` may be an
in-memory array (built-in dataset) or a zero-copy view on a memory-mapped Arrow buffer
(``ms2l_ray.data.store``); batching only touches the rows it gathers, so peak memory does not grow with
the dataset. Layout follows :mod:`ms2l_ray.contract` (features in (M, V, C) order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ms2l_ray.contract import ShapeError, feature_dim, resample_indices


@dataclass
class SkeletonSet:
    """Ragged skeleton sequences.

    Attributes:
        frames: ``[sum(L), F]`` float32, all sequences back to back (F in (M, V, C) order).
        offsets: ``[N + 1]`` int64; sequence ``i`` is ``frames[offsets[i]:offsets[i+1]]``.
        labels: ``[N]`` int64, 0-based.
        subjects: ``[N]`` int64 performer/subject id (1-based as in the datasets; 0 = unknown).
        views: ``[N]`` int64 camera/view id (0 = unknown).
        setups: ``[N]`` int64 setup id (0 = unknown).
        names: sample names (e.g. ``S001C001P001R001A001``).
        num_persons, num_joints: ``M`` and ``V``; ``F = M·V·3``.
        num_classes: number of action classes.
        layout: joint layout name (``ms2l_ray.layouts``).
        meta: provenance (dataset name, preprocessing steps, generator parameters).
    """

    frames: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    views: np.ndarray
    setups: np.ndarray
    names: list[str]
    num_persons: int
    num_joints: int
    num_classes: int
    layout: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        f = feature_dim(self.num_persons, self.num_joints)
        if self.frames.ndim != 2 or self.frames.shape[1] != f:
            raise ShapeError(f"frames must be [sum(L), F={f}], got shape {self.frames.shape}")
        if self.offsets.shape != (n + 1,) or int(self.offsets[-1]) != self.frames.shape[0]:
            end = int(self.offsets[-1]) if len(self.offsets) else None
            raise ShapeError(f"offsets must be [N+1]={n + 1} ending at {self.frames.shape[0]}, "
                             f"got shape {self.offsets.shape} ending at {end}")
        for key in ("subjects", "views", "setups"):
            if getattr(self, key).shape != (n,):
                raise ShapeError(f"{key} must be [N]={n}, got shape {getattr(self, key).shape}")
        if len(self.names) != n:
            raise ShapeError(f"names must have N={n} entries, got {len(self.names)}")
        if n and (self.lengths.min() < 1):
            raise ShapeError(f"every sequence needs at least one frame; sample {int(np.argmin(self.lengths))} has 0")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_features(self) -> int:
        """``F = M · V · 3`` values per frame, the width the encoder reads (:mod:`ms2l_ray.contract`)."""
        return feature_dim(self.num_persons, self.num_joints)

    @property
    def lengths(self) -> np.ndarray:
        """``[N]`` valid lengths on disk."""
        return np.diff(self.offsets)

    def sequence(self, i: int) -> np.ndarray:
        """One sequence, ``[L, F]``."""
        return self.frames[self.offsets[i]:self.offsets[i + 1]]

    def batch(self, indices: np.ndarray, max_frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gather rows into a padded batch, vectorised (one fancy-index read for the whole batch).

        Longer sequences are resampled to ``max_frames`` (see :func:`ms2l_ray.contract.resample_indices`).

        Returns:
            ``x [B, T, F]`` float32 zero-padded, ``lengths [B]`` int64, ``labels [B]`` int64, where
            ``T = min(max_frames, longest sequence in the batch)`` so short batches stay short.
        """
        indices = np.asarray(indices, dtype=np.int64)
        start = self.offsets[indices]
        length = self.offsets[indices + 1] - start
        idx, new_len = resample_indices(length, max_frames)  # [B, max_frames], [B]
        t = int(new_len.max()) if len(indices) else 1
        idx = idx[:, :t]  # [B, T]
        valid = np.arange(t)[None, :] < new_len[:, None]  # [B, T]
        rows = (start[:, None] + idx)[valid]  # [n_valid]
        x = np.zeros((len(indices), t, self.num_features), dtype=np.float32)  # [B, T, F]
        x[valid] = self.frames[rows]
        return (torch.from_numpy(x), torch.from_numpy(new_len.astype(np.int64)),
                torch.from_numpy(self.labels[indices].astype(np.int64)))

    def subset(self, indices: np.ndarray) -> SkeletonSet:
        """A new in-memory set holding only ``indices`` (copies the selected frames)."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # vectorised ragged gather: row r of the subset comes from start[i] + (r - new_offset[i])
        owner = np.repeat(np.arange(len(indices)), lengths)  # [sum L]
        rows = self.offsets[indices][owner] + np.arange(int(offsets[-1])) - offsets[:-1][owner]
        return SkeletonSet(
            frames=np.asarray(self.frames[rows], dtype=np.float32).reshape(-1, self.num_features),
            offsets=offsets, labels=self.labels[indices], subjects=self.subjects[indices],
            views=self.views[indices], setups=self.setups[indices], names=[self.names[i] for i in indices],
            num_persons=self.num_persons, num_joints=self.num_joints, num_classes=self.num_classes,
            layout=self.layout, meta=dict(self.meta),
        )


@dataclass(frozen=True)
class Splits:
    """Index arrays into one :class:`SkeletonSet`. ``val`` is carved from the training side, never from test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = np.intersect1d(getattr(self, a), getattr(self, b))
            if len(both):
                raise ValueError(f"split {self.name!r}: {a} and {b} overlap in {len(both)} samples, "
                                 f"e.g. {both[:5].tolist()}")

    def get(self, part: str) -> np.ndarray:
        """The indices of ``part`` (``train``, ``val`` or ``test``); a typo raises rather than reading nothing."""
        if part not in ("train", "val", "test"):
            raise ValueError(f"unknown split part {part!r}; expected train, val or test")
        return getattr(self, part)  # type: ignore[no-any-return]


def holdout_validation(train: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (train, val) with a seeded permutation.

    The reference code holds out 5 % (``train_clip = 0.95``) but unseeded; here the split is a pure
    function of ``seed`` so that model selection is reproducible.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(np.asarray(train, dtype=np.int64))
    n_val = int(round(len(perm) * fraction))
    if fraction > 0 and n_val == 0 and len(perm) > 1:
        n_val = 1
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def label_subset(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Keep ``fraction`` of the labelled ``indices``, stratified by class (at least one per class).

    Used by the semi-supervised protocol (paper §4.3, ``label_clip`` in the reference code), where the
    reference simply takes the first fraction of the shuffled list; stratification keeps rare classes.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.asarray(indices, dtype=np.int64)
    rng = np.random.default_rng(seed)
    indices = np.asarray(indices, dtype=np.int64)
    keep: list[np.ndarray] = []
    for c in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == c])
        keep.append(members[: max(1, int(round(len(members) * fraction)))])
    return np.sort(np.concatenate(keep))
