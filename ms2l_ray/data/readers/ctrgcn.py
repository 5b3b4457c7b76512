"""CTR-GCN style ``.npz``: ``x_train``/``x_test`` N×T×150 in (M, V, C) order, one-hot ``y_train``/``y_test``.

The x arrays of NTU-120 are tens of GB, and ``np.load`` cannot memory-map a zip member, so the
members are streamed: the ``.npy`` header is parsed and rows are read ``chunk_size`` at a time
straight from the (possibly deflated) zip entry. The valid length of a row is the frames up to its
last non-zero frame (the format pads with zeros and records no lengths). Samples are named
``train#000000`` / ``test#000000`` and the file's own partition is recorded as
``meta["split_lists"]["file"]`` — and under the standard split name when the file name says which
benchmark it is (``NTU60_CS.npz`` → ``ntu60-xsub``), since the format carries no performer ids.

Sizes are checked before anything is read: a member's declared shape must account for exactly the bytes the
zip entry says it inflates to (a few MB of deflated zeros can claim gigabytes), its dimensions must be within
:mod:`ms2l_ray.limits`, and both ``x`` and ``y`` are read in chunks of at most
:data:`~ms2l_ray.limits.MAX_CHUNK_BYTES`, so memory stays bounded whatever the file declares.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.readers import ReadLog, assemble, dense_samples
from ms2l_ray.data.readers.stgcn import valid_lengths
from ms2l_ray.data.splits import GROUP_SEP
from ms2l_ray.limits import MAX_CLASSES, MAX_PERSONS, MAX_SEQUENCE_FRAMES, chunk_rows, shape_elements

NUM_JOINTS = 25
PARTS = ("train", "test")
BENCHMARKS = {"NTU60_CS": "ntu60-xsub", "NTU60_CV": "ntu60-xview", "NTU120_CSUB": "ntu120-xsub",
              "NTU120_CSET": "ntu120-xset"}


def _open_member(path: Path, zf: zipfile.ZipFile, key: str) -> tuple[IO[bytes], tuple[int, ...], np.dtype[Any]]:
    """An open stream positioned at the array data of member ``key``, with the array's shape and dtype."""
    try:
        info = zf.getinfo(f"{key}.npy")
    except KeyError:
        held = sorted(n.removesuffix(".npy") for n in zf.namelist())
        raise DataFormatError(path, key, None, f"missing array; the file holds {held}") from None
    fp = zf.open(info)
    try:
        version = np.lib.format.read_magic(fp)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fp)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        fp.close()
        raise DataFormatError(path, key, type(e).__name__, f"not a .npy array: {e}") from None
    if fortran or dtype.hasobject or dtype.kind not in "biuf":
        fp.close()
        raise DataFormatError(path, key, f"fortran={fortran} dtype={dtype}", "expected a C-order numeric array")
    count = shape_elements(tuple(shape))
    data_bytes = info.file_size - fp.tell()  # the bytes after the header that the entry inflates to
    if count is None or count * dtype.itemsize != data_bytes:
        fp.close()
        raise DataFormatError(path, key, f"shape {tuple(shape)} {dtype}", f"declares {(count or 0) * dtype.itemsize} "
                              f"bytes of data but the zip entry holds {data_bytes}")
    return fp, tuple(shape), dtype


def _check_label_shape(path: Path, key: str, shape: tuple[int, ...]) -> None:
    if len(shape) not in (1, 2) or (len(shape) == 2 and not 1 <= shape[1] <= MAX_CLASSES):
        raise DataFormatError(path, key, f"shape {shape}", f"expected [N] labels or one-hot [N, classes <= "
                              f"{MAX_CLASSES}]")


def _labels(path: Path, zf: zipfile.ZipFile, part: str, n: int | None) -> np.ndarray:
    """``[N]`` int64 labels of ``y_{part}`` (integers or one-hot rows), read in bounded chunks."""
    key = f"y_{part}"
    fp, shape, dtype = _open_member(path, zf, key)
    with fp:
        _check_label_shape(path, key, shape)
        if n is not None and shape[0] != n:
            raise DataFormatError(path, key, shape[0], f"x_{part} holds {n} samples")
        width = shape[1] if len(shape) == 2 else 1
        step = chunk_rows(width * dtype.itemsize, 1 << 16)
        out = []
        for start in range(0, shape[0], step):
            rows = min(step, shape[0] - start)
            y = np.frombuffer(fp.read(rows * width * dtype.itemsize), dtype=dtype).reshape(rows, width)
            if len(shape) == 1:
                out.append(y[:, 0].astype(np.int64))
                continue
            if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
                bad = start + int(np.argmax(~(((y == 0) | (y == 1)).all(axis=1) & (y.sum(axis=1) == 1))))
                raise DataFormatError(path, key, f"row {bad}", "expected one-hot rows [N, classes]")
            out.append(np.argmax(y, axis=1).astype(np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def num_classes_of(path: str | Path) -> int:
    """Width of the one-hot ``y_train`` (max label + 1 for integer labels)."""
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        fp, shape, _ = _open_member(path, zf, "y_train")
        fp.close()
        _check_label_shape(path, "y_train", shape)
        if len(shape) == 2:
            return int(shape[1])
        labels = _labels(path, zf, "train", None)
        if labels.size and not 0 <= labels.min() <= labels.max() < MAX_CLASSES:
            raise DataFormatError(path, "y_train", int(labels.max() if labels.min() >= 0 else labels.min()),
                                  f"expected labels in 0..{MAX_CLASSES - 1}")
        return int(labels.max(initial=0)) + 1


def split_lists_for(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """The file's partition under ``"file"`` and, if the name says so, under the standard split name."""
    lists = {"file": {"train": ["train"], "test": ["test"]}}
    bench = BENCHMARKS.get(Path(path).stem.upper())
    if bench:
        lists[bench] = lists["file"]
    return lists


def _iter_part(path: Path, zf: zipfile.ZipFile, part: str, *, classes: int, meta: dict[str, Any], log: ReadLog,
               skip_bad: bool, chunk_size: int) -> Iterator[SkeletonSet]:
    fp, shape, dtype = _open_member(path, zf, f"x_{part}")
    with fp:
        if len(shape) != 3 or shape[2] % (NUM_JOINTS * 3) or not 1 <= shape[2] // (NUM_JOINTS * 3) <= MAX_PERSONS:
            raise DataFormatError(path, f"x_{part}", shape, f"expected N × T × M·25·3 in (M, V, C) order, "
                                  f"1 <= M <= {MAX_PERSONS}")
        if not 1 <= shape[1] <= MAX_SEQUENCE_FRAMES:
            raise DataFormatError(path, f"x_{part}", shape, f"expected 1 <= T <= {MAX_SEQUENCE_FRAMES} frames")
        labels = _labels(path, zf, part, shape[0])
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
            raise DataFormatError(path, f"y_{part}", bad, f"expected labels in 0..{classes - 1}")
        n, t, f = shape
        row_bytes = t * f * dtype.itemsize
        step = chunk_rows(row_bytes, chunk_size)
        for start in range(0, n, step):
            rows = min(step, n - start)
            raw = fp.read(rows * row_bytes)
            if len(raw) != rows * row_bytes:
                raise DataFormatError(path, f"x_{part}", f"{len(raw)} bytes", f"truncated at sample {start}")
            x = np.frombuffer(raw, dtype=dtype).reshape(rows, t, f)  # [n, T, F] as stored: checked before float32
            names = [f"{part}{GROUP_SEP}{i:06d}" for i in range(start, start + rows)]
            samples = dense_samples(x, valid_lengths(x), labels[start:start + rows], names, file=path,
                                    field=f"x_{part}", start=start, log=log, skip_bad=skip_bad)
            if samples:
                yield assemble(samples, num_persons=f // (NUM_JOINTS * 3), num_joints=NUM_JOINTS,
                               num_classes=classes, layout="ntu25", meta=meta)


def iter_ctrgcn(path: str | Path, *, skip_bad: bool = False, log: ReadLog | None = None,
                chunk_size: int = 512) -> Iterator[SkeletonSet]:
    """Chunks of ``x_train`` then ``x_test``; all-zero or non-finite rows are bad samples."""
    path = Path(path)
    log = log if log is not None else ReadLog()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFormatError(path, "npz", type(e).__name__, str(e)) from None
    with zf:
        classes = num_classes_of(path)
        meta: dict[str, Any] = {"source": "ctrgcn", "split_lists": split_lists_for(path)}
        for part in PARTS:
            yield from _iter_part(path, zf, part, classes=classes, meta=meta, log=log, skip_bad=skip_bad,
                                  chunk_size=chunk_size)
