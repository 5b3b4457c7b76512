"""Readers for the real dataset formats (REFERENCE.md §3) and the pieces they share.

Every reader turns its files into :class:`Sample` records — one sequence at its valid length, already
flattened in the contract's (M, V, C) order — and :func:`assemble` packs those into a
:class:`~ms2l_ray.data.container.SkeletonSet`. Large formats are read chunk-wise (``iter_*`` functions
yield ``SkeletonSet`` chunks) so that ``ms2l data prepare`` can stream them into the Arrow store
without holding the dataset in RAM.

Modules: :mod:`.ntu` (raw ``.skeleton``), :mod:`.stgcn` (``.npy`` + ``.pkl``), :mod:`.ctrgcn` (``.npz``),
:mod:`.ucla` (NW-UCLA JSON), :mod:`.pku` (PKU-MMD text).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, TypeVar

import numpy as np

from ms2l_ray.contract import feature_dim
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.limits import MAX_ABS_COORD

T = TypeVar("T")


@dataclass
class Sample:
    """One sequence as read from its file.

    Attributes:
        name: sample name (NTU ``S001C001P001R001A001``, NW-UCLA ``a01_s01_e00_v01``, PKU ``0005-L#03``).
        frames: ``[L, F]`` float32, ``F = M·V·C`` in (M, V, C) order, ``L >= 1`` valid frames only.
        label: 0-based class id.
        subject, view, setup: 1-based ids, 0 = unknown.
    """

    name: str
    frames: np.ndarray
    label: int
    subject: int = 0
    view: int = 0
    setup: int = 0


@dataclass
class ReadLog:
    """What a read skipped: bad files (with their errors) and samples on a published missing list."""

    bad: list[DataFormatError] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def reject(self, err: DataFormatError, skip_bad: bool) -> None:
        """Record ``err`` when skipping bad input, else raise it (the first bad file stops the read)."""
        if not skip_bad:
            raise err
        self.bad.append(err)


COORD_RULE = f"coordinates must be finite and within ±{MAX_ABS_COORD:g}"


def in_range(values: np.ndarray) -> np.ndarray:
    """Element-wise: finite and ``|x| <= MAX_ABS_COORD`` (NaN compares false, so one comparison does both)."""
    return np.abs(values) <= MAX_ABS_COORD


def check_finite(values: np.ndarray, file: str | PathLike[str], field: str, *, first_line: int | None = None,
                 what: str = "row") -> None:
    """Raise :class:`DataFormatError` at the first row of ``values`` holding NaN, inf or an out-of-range value.

    Rows run along axis 0; out of range is beyond ``±MAX_ABS_COORD`` (:mod:`ms2l_ray.limits`).

    Call it on the values *as parsed* (float64 for text and JSON), before the cast to float32: ``1e39`` is
    finite in float64 and would silently become ``inf`` in float32. ``first_line`` maps row 0 to a 1-based
    file line for text formats; otherwise the row index is reported.
    """
    rows = values.reshape(len(values), -1)
    ok = in_range(rows).all(axis=1) if values.size else np.ones(0, bool)
    if ok.all():
        return
    row = int(np.argmin(ok))
    bad = rows[row]
    value = float(bad[~in_range(bad)][0])
    if first_line is not None:
        raise DataFormatError(file, field, value, COORD_RULE, line=first_line + row)
    raise DataFormatError(file, field, value, f"{COORD_RULE} ({what} {row})")


def dense_samples(x: np.ndarray, lengths: np.ndarray, labels: np.ndarray, names: Sequence[str], *,
                  file: str | PathLike[str], field: str, start: int, log: ReadLog, skip_bad: bool,
                  ids: Sequence[tuple[int, int, int]] | None = None) -> list[Sample]:
    """Samples from one padded chunk of a dense format.

    Out-of-range (:func:`check_finite`) or all-zero rows are bad input. ``x`` may be in the file's dtype: it is
    checked before the samples become float32.

    Shape:
        x ``[n, T, F]``, lengths/labels/names/ids ``[n]``; ``ids[k] = (subject, view, setup)``.
        ``start`` is the chunk's first sample index in the file (for error messages).
    """
    finite = np.asarray(in_range(x).all(axis=(1, 2)))  # [n]
    out: list[Sample] = []
    for k in range(len(x)):
        try:
            if not finite[k]:
                check_finite(x[k], file, field, what=f"sample {start + k} frame")
            if lengths[k] < 1:
                raise DataFormatError(file, field, f"sample {start + k}", "all frames are zero (no valid frame)")
        except DataFormatError as err:
            log.reject(err, skip_bad)
            continue
        subject, view, setup = ids[k] if ids is not None else (0, 0, 0)
        out.append(Sample(name=names[k], frames=x[k, :lengths[k]].astype(np.float32), label=int(labels[k]),
                          subject=subject, view=view, setup=setup))
    return out


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def assemble(samples: Sequence[Sample], *, num_persons: int, num_joints: int, num_classes: int, layout: str,
             meta: dict[str, Any] | None = None) -> SkeletonSet:
    """Pack samples into one ragged :class:`SkeletonSet` (frames back to back, one copy)."""
    f = feature_dim(num_persons, num_joints)
    for s in samples:
        if s.frames.ndim != 2 or s.frames.shape[1] != f or len(s.frames) < 1:
            raise ValueError(f"sample {s.name!r}: frames must be [L>=1, F={f}], got shape {s.frames.shape}")
        if not 0 <= s.label < num_classes:
            raise ValueError(f"sample {s.name!r}: label {s.label} outside 0..{num_classes - 1}")
    lengths = np.array([len(s.frames) for s in samples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = (np.concatenate([s.frames for s in samples]).astype(np.float32, copy=False) if samples
              else np.zeros((0, f), np.float32))
    ints = {key: np.array([getattr(s, key) for s in samples], dtype=np.int64)
            for key in ("label", "subject", "view", "setup")}
    return SkeletonSet(frames=frames, offsets=offsets, labels=ints["label"], subjects=ints["subject"],
                       views=ints["view"], setups=ints["setup"], names=[s.name for s in samples],
                       num_persons=num_persons, num_joints=num_joints, num_classes=num_classes, layout=layout,
                       meta=dict(meta or {}))


def concat_sets(sets: Sequence[SkeletonSet]) -> SkeletonSet:
    """Concatenate chunks that share ``M``, ``V``, classes and layout; ``meta`` comes from the first."""
    if not sets:
        raise ValueError("concat_sets needs at least one SkeletonSet")
    first = sets[0]
    for s in sets[1:]:
        if (s.num_persons, s.num_joints, s.num_classes, s.layout) != (
                first.num_persons, first.num_joints, first.num_classes, first.layout):
            raise ValueError(f"cannot concatenate sets with (M, V, classes, layout) = "
                             f"{(s.num_persons, s.num_joints, s.num_classes, s.layout)} and "
                             f"{(first.num_persons, first.num_joints, first.num_classes, first.layout)}")
    lengths = np.concatenate([s.lengths for s in sets])
    return SkeletonSet(
        frames=np.concatenate([s.frames for s in sets]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        labels=np.concatenate([s.labels for s in sets]), subjects=np.concatenate([s.subjects for s in sets]),
        views=np.concatenate([s.views for s in sets]), setups=np.concatenate([s.setups for s in sets]),
        names=[n for s in sets for n in s.names], num_persons=first.num_persons, num_joints=first.num_joints,
        num_classes=first.num_classes, layout=first.layout, meta=dict(first.meta),
    )


__all__ = ["COORD_RULE", "DataFormatError", "ReadLog", "Sample", "assemble", "check_finite", "chunked",
           "concat_sets", "dense_samples", "in_range"]
