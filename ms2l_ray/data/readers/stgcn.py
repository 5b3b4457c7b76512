"""ST-GCN style arrays: ``{split}_data.npy`` N×C×T×V×M float32, ``{split}_label.pkl``, ``{split}_frame.npy``.

The label file is a pickled ``(sample_names, labels)`` tuple (REFERENCE.md §3). Pickles downloaded from
the internet can run arbitrary code on load, so :func:`read_label_pkl` unpickles with
:class:`SafeUnpickler`, which resolves no global except the few numpy constructors an integer or
string array needs — a ``__reduce__`` that names ``os.system`` or anything else is rejected before it
runs. Data arrays are memory-mapped and converted chunk by chunk to the contract's (M, V, C) order
(:func:`~ms2l_ray.contract.from_nctvm`); the valid length is the ``{split}_frame.npy`` entry when given
(the reference code's file), else the frames up to the last non-zero frame.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.contract import from_nctvm
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.readers import ReadLog, assemble, dense_samples
from ms2l_ray.data.readers.ntu import parse_ntu_name
from ms2l_ray.layouts import layout_for_joints

# (module, name) pairs a pickled int/str numpy array (protocol 2..5, numpy 1.x or 2.x) needs; nothing else.
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles store raw array bytes as latin-1 text
})


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for untrusted label files: tuples, lists, str, int and numpy int/str arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a label file")
        return super().find_class(module, name)


def _int_labels(path: Path, labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise DataFormatError(path, "labels", f"{arr.dtype} shape {arr.shape}", "expected a 1-D sequence of integers")
    if arr.size and arr.min() < 0:
        raise DataFormatError(path, "labels", int(arr.min()), "labels are 0-based and must be >= 0")
    return arr.astype(np.int64)


def read_label_pkl(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(sample_names, labels [N] int64)`` from an untrusted ST-GCN label pickle."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            obj = SafeUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataFormatError(path, "pickle", type(e).__name__, f"not a safe (names, labels) pickle: {e}") from None
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        raise DataFormatError(path, "pickle", type(obj).__name__, "expected a (sample_names, labels) pair")
    names = [n.decode() if isinstance(n, bytes) else n for n in np.asarray(obj[0]).tolist()]
    if not all(isinstance(n, str) for n in names):
        raise DataFormatError(path, "sample_names", type(names[0]).__name__ if names else None, "expected strings")
    labels = _int_labels(path, obj[1])
    if len(names) != len(labels):
        raise DataFormatError(path, "labels", len(labels), f"{len(names)} sample names but {len(labels)} labels")
    return names, labels


def valid_lengths(x: np.ndarray) -> np.ndarray:
    """Frames up to and including the last frame with any non-zero value. Shape: ``[N, T, F]`` → ``[N]``."""
    nonzero = np.any(x != 0, axis=2)  # [N, T]
    return np.where(nonzero.any(axis=1), x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)


def iter_stgcn(data_path: str | Path, label_path: str | Path, frame_path: str | Path | None = None, *,
               num_classes: int | None = None, skip_bad: bool = False, log: ReadLog | None = None,
               chunk_size: int = 512) -> Iterator[SkeletonSet]:
    """Chunks of one ST-GCN split; names with NTU fields fill subjects/views/setups (0 otherwise)."""
    data_path = Path(data_path)
    log = log if log is not None else ReadLog()
    names, labels = read_label_pkl(label_path)
    try:
        data = np.load(data_path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise DataFormatError(data_path, "npy", type(e).__name__, str(e)) from None
    if data.ndim != 5 or data.shape[1] != 3:
        raise DataFormatError(data_path, "shape", data.shape, "expected N × C=3 × T × V × M")
    if len(data) != len(labels):
        raise DataFormatError(label_path, "labels", len(labels), f"{data_path.name} holds {len(data)} samples")
    lengths = None
    if frame_path is not None:
        lengths = np.load(frame_path).astype(np.int64).reshape(-1)
        if len(lengths) != len(data) or (lengths > data.shape[2]).any():
            raise DataFormatError(frame_path, "lengths", f"{len(lengths)} entries, max {lengths.max(initial=0)}",
                                  f"expected {len(data)} entries <= T = {data.shape[2]}")
    _, _, _, v, m = data.shape
    layout = layout_for_joints(v).name
    classes = num_classes or int(labels.max(initial=0)) + 1
    if labels.size and labels.max() >= classes:
        raise DataFormatError(label_path, "labels", int(labels.max()), f"expected < num_classes = {classes}")
    fields = [parse_ntu_name(n) for n in names]
    ids = [(f.performer, f.camera, f.setup) if f else (0, 0, 0) for f in fields]
    stems = [n.split(".")[0] for n in names]
    for start in range(0, len(data), chunk_size):
        stop = min(start + chunk_size, len(data))
        x = from_nctvm(np.asarray(data[start:stop]))  # [n, T, M*V*C]
        n_len = valid_lengths(x) if lengths is None else lengths[start:stop]
        samples = dense_samples(x, n_len, labels[start:stop], stems[start:stop], file=data_path, field="data",
                                start=start, log=log, skip_bad=skip_bad, ids=ids[start:stop])
        if samples:
            yield assemble(samples, num_persons=m, num_joints=v, num_classes=classes, layout=layout,
                           meta={"source": "stgcn"})
