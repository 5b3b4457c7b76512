"""CTR-GCN style ``.npz``: ``x_train``/``x_test`` N×T×150 in (M, V, C) order, one-hot ``y_train``/``y_test``.

The x arrays of NTU-120 are tens of GB, and ``np.load`` cannot memory-map a zip member, so the
members are streamed: the ``.npy`` header is parsed and rows are read ``chunk_size`` at a time
straight from the (possibly deflated) zip entry. The valid length of a row is the frames up to its
last non-zero frame (the format pads with zeros and records no lengths). Samples are named
``train#000000`` / ``test#000000`` and the file's own partition is recorded as
``meta["split_lists"]["file"]`` — and under the standard split name when the file name says which
benchmark it is (``NTU60_CS.npz`` → ``ntu60-xsub``), since the format carries no performer ids.
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

NUM_JOINTS = 25
PARTS = ("train", "test")
BENCHMARKS = {"NTU60_CS": "ntu60-xsub", "NTU60_CV": "ntu60-xview", "NTU120_CSUB": "ntu120-xsub",
              "NTU120_CSET": "ntu120-xset"}


def _open_member(path: Path, zf: zipfile.ZipFile, key: str) -> tuple[IO[bytes], tuple[int, ...], np.dtype[Any]]:
    """An open stream positioned at the array data of member ``key``, with the array's shape and dtype."""
    try:
        fp = zf.open(f"{key}.npy")
    except KeyError:
        held = sorted(n.removesuffix(".npy") for n in zf.namelist())
        raise DataFormatError(path, key, None, f"missing array; the file holds {held}") from None
    version = np.lib.format.read_magic(fp)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(fp)
    if fortran or dtype.hasobject:
        raise DataFormatError(path, key, f"fortran={fortran} dtype={dtype}", "expected a C-order numeric array")
    return fp, tuple(shape), dtype


def _labels(path: Path, zf: zipfile.ZipFile, part: str, n: int) -> np.ndarray:
    fp, shape, dtype = _open_member(path, zf, f"y_{part}")
    with fp:
        y = np.frombuffer(fp.read(), dtype=dtype).reshape(shape)
    if len(y) != n:
        raise DataFormatError(path, f"y_{part}", len(y), f"x_{part} holds {n} samples")
    if y.ndim == 1:
        return y.astype(np.int64)
    if y.ndim != 2 or not np.all(np.isin(y, (0, 1))) or not np.all(y.sum(axis=1) == 1):
        raise DataFormatError(path, f"y_{part}", f"shape {y.shape}", "expected one-hot rows [N, classes]")
    return np.argmax(y, axis=1).astype(np.int64)


def num_classes_of(path: str | Path) -> int:
    """Width of the one-hot ``y_train`` (max label + 1 for integer labels)."""
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        fp, shape, _ = _open_member(path, zf, "y_train")
        fp.close()
        if len(shape) == 2:
            return int(shape[1])
        return int(_labels(path, zf, "train", shape[0]).max(initial=0)) + 1


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
    if len(shape) != 3 or shape[2] % (NUM_JOINTS * 3):
        raise DataFormatError(path, f"x_{part}", shape, "expected N × T × M·25·3 in (M, V, C) order")
    labels = _labels(path, zf, part, shape[0])
    if labels.size and labels.max() >= classes:
        raise DataFormatError(path, f"y_{part}", int(labels.max()), f"expected < {classes} classes")
    n, t, f = shape
    row_bytes = t * f * dtype.itemsize
    with fp:
        for start in range(0, n, chunk_size):
            rows = min(chunk_size, n - start)
            raw = fp.read(rows * row_bytes)
            if len(raw) != rows * row_bytes:
                raise DataFormatError(path, f"x_{part}", f"{len(raw)} bytes", f"truncated at sample {start}")
            x = np.frombuffer(raw, dtype=dtype).reshape(rows, t, f).astype(np.float32)  # [n, T, F]
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
