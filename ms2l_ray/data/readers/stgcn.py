"""ST-GCN style arrays: ``{split}_data.npy`` N×C×T×V×M float32, ``{split}_label.pkl``, ``{split}_frame.npy``.

The label file is a pickled ``(sample_names, labels)`` tuple (REFERENCE.md §3). Pickles downloaded from
the internet can run arbitrary code on load, so :func:`read_label_pkl` unpickles with
:class:`SafeUnpickler`, which resolves no global except the few numpy constructors an integer or
string array needs — a ``__reduce__`` that names ``os.system`` or anything else is rejected before it
runs. Those constructors are handed out wrapped: an array they would build (``_reconstruct``, ``ndarray``,
``__setstate__``, ``scalar``) may not need more than :func:`~ms2l_ray.limits.pickle_array_ceiling` bytes
— a real label array's data is inside the file — so a 40-byte pickle cannot ask for 931 GiB; and the file is
read whole first (at most :data:`MAX_LABEL_FILE_BYTES`), so a length field cannot make the reader allocate
more than the file holds. Data arrays are memory-mapped and converted chunk by chunk to the contract's (M, V, C) order
(:func:`~ms2l_ray.contract.from_nctvm`); the valid length is the ``{split}_frame.npy`` entry when given
(the reference code's file), else the frames up to the last non-zero frame.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.contract import from_nctvm
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.readers import ReadLog, assemble, dense_samples
from ms2l_ray.data.readers.ntu import parse_ntu_name
from ms2l_ray.layouts import layout_for_joints
from ms2l_ray.limits import MAX_PERSONS, MAX_SEQUENCE_FRAMES, chunk_rows, pickle_array_ceiling, shape_elements

MAX_LABEL_FILE_BYTES = 256 << 20  # NTU-120's label pickle is ~3 MB

# (module, name) pairs a pickled int/str numpy array (protocol 2..5, numpy 1.x or 2.x) needs; nothing else.
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles store raw array bytes as latin-1 text
})


def _check_size(shape: Any, dtype: Any, ceiling: int, what: str) -> None:
    """Refuse an array of ``shape`` × ``dtype`` larger than ``ceiling`` bytes, before numpy allocates it."""
    count = shape_elements(shape)
    if count is None:
        raise pickle.UnpicklingError(f"{what}: shape {shape!r} is not a tuple of non-negative integers")
    try:
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError):
        raise pickle.UnpicklingError(f"{what}: {dtype!r} is not a numpy dtype") from None
    if count * itemsize > ceiling:
        raise pickle.UnpicklingError(f"{what}: shape {shape!r} of {itemsize}-byte items needs {count * itemsize} "
                                     f"bytes; an array in this file can hold at most {ceiling}")


def _bounded_array_type(ceiling: int) -> type[np.ndarray]:
    """An ``ndarray`` subclass whose construction and ``__setstate__`` refuse arrays over ``ceiling`` bytes."""

    class BoundedArray(np.ndarray):
        def __new__(cls, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> Any:
            _check_size(shape, dtype, ceiling, "ndarray")
            return np.ndarray.__new__(cls, shape, dtype, *args, **kwargs)

        def __setstate__(self, state: Any) -> None:
            if not isinstance(state, tuple) or len(state) not in (4, 5):
                raise pickle.UnpicklingError(f"ndarray state: expected a 4- or 5-tuple, got {type(state).__name__}")
            shape, dtype = state[-4], state[-3]  # (version,) shape, dtype, is_fortran, data
            _check_size(shape, dtype, ceiling, "ndarray state")
            super().__setstate__(state)

    return BoundedArray


def _bounded_reconstruct(fn: Callable[..., Any], ceiling: int) -> Callable[..., Any]:
    """``_reconstruct(subtype, shape, dtype)`` allocates ``shape`` at once: check it first."""
    def call(subtype: Any, shape: Any, dtype: Any, *rest: Any) -> Any:
        _check_size(shape, dtype, ceiling, "_reconstruct")
        return fn(subtype, shape, dtype, *rest)
    return call


def _bounded_scalar(fn: Callable[..., Any], ceiling: int) -> Callable[..., Any]:
    """``scalar(dtype, data)``: one item, whose size the dtype says."""
    def call(dtype: Any, *rest: Any) -> Any:
        _check_size((), dtype, ceiling, "scalar")
        return fn(dtype, *rest)
    return call


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for untrusted label files: tuples, lists, str, int and numpy int/str arrays only.

    Each array is at most ``ceiling`` bytes, checked before numpy allocates it.
    """

    def __init__(self, file: Any, *, ceiling: int) -> None:
        super().__init__(file)
        self._array = _bounded_array_type(ceiling)
        self._ceiling = ceiling

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the allow-listed globals: a label pickle naming anything else could run code."""
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a label file")
        found = super().find_class(module, name)
        if name == "ndarray":
            return self._array
        if name == "_reconstruct":
            return _bounded_reconstruct(found, self._ceiling)
        if name == "scalar":
            return _bounded_scalar(found, self._ceiling)
        return found


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
    with path.open("rb") as f:
        raw = f.read(MAX_LABEL_FILE_BYTES + 1)
    if len(raw) > MAX_LABEL_FILE_BYTES:
        raise DataFormatError(path, "file size", f"> {MAX_LABEL_FILE_BYTES} bytes",
                              f"a label pickle is at most {MAX_LABEL_FILE_BYTES} bytes")
    try:
        obj = SafeUnpickler(io.BytesIO(raw), ceiling=pickle_array_ceiling(len(raw))).load()
        if isinstance(obj, tuple | list) and len(obj) == 2:  # plain arrays from here on
            obj = tuple(np.asarray(o).view(np.ndarray) if isinstance(o, np.ndarray) else o for o in obj)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as e:
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
    if data.dtype.kind not in "biuf":
        raise DataFormatError(data_path, "dtype", str(data.dtype), "expected a numeric array")
    if not 1 <= data.shape[2] <= MAX_SEQUENCE_FRAMES or not 1 <= data.shape[4] <= MAX_PERSONS:
        raise DataFormatError(data_path, "shape", data.shape, f"expected 1 <= T <= {MAX_SEQUENCE_FRAMES} frames and "
                              f"1 <= M <= {MAX_PERSONS} persons")
    if len(data) != len(labels):
        raise DataFormatError(label_path, "labels", len(labels), f"{data_path.name} holds {len(data)} samples")
    lengths = None
    if frame_path is not None:
        try:  # memory-mapped: a header that declares more than the file holds fails here, allocating nothing
            frames_arr = np.load(frame_path, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise DataFormatError(frame_path, "npy", type(e).__name__, str(e)) from None
        values = np.asarray(frames_arr).reshape(-1)
        if frames_arr.dtype.kind not in "iuf" or values.size != len(data) or not np.all(values == np.round(values)):
            raise DataFormatError(frame_path, "lengths", f"{frames_arr.dtype} shape {frames_arr.shape}",
                                  f"expected {len(data)} integer lengths")
        lengths = values.astype(np.int64)
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
    step = chunk_rows(int(np.prod(data.shape[1:])) * data.dtype.itemsize, chunk_size)
    for start in range(0, len(data), step):
        stop = min(start + step, len(data))
        x = from_nctvm(np.asarray(data[start:stop]), dtype=None)  # [n, T, M*V*C] as stored: checked before float32
        n_len = valid_lengths(x) if lengths is None else lengths[start:stop]
        samples = dense_samples(x, n_len, labels[start:stop], stems[start:stop], file=data_path, field="data",
                                start=start, log=log, skip_bad=skip_bad, ids=ids[start:stop])
        if samples:
            yield assemble(samples, num_persons=m, num_joints=v, num_classes=classes, layout=layout,
                           meta={"source": "stgcn"})
