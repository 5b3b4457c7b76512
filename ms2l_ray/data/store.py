"""The on-disk dataset: one Arrow IPC file, memory-mapped and read zero-copy (contract in ``ms2l_ray.contract``).

Schema (one row per sequence)::

    frames  list<fixed_size_list<float32, F>>   the sequence at its valid length, F = M·V·C in (M, V, C) order
    label   int64  (0-based)     subject int64    view int64    setup int64    length int64 (= len(frames))
    name    string

Schema metadata: ``format`` (:data:`FORMAT_NAME`), ``format_version``, ``num_persons``, ``num_joints``,
``num_classes``, ``layout``, ``preprocessing`` (JSON list of applied steps), ``source`` (JSON) and ``meta``
(JSON: the rest of ``SkeletonSet.meta``, e.g. split lists).

Why one record batch: :func:`open_store` hands out ``frames`` as *one* numpy view on the mapped file, which
needs every sequence's floats in one contiguous buffer. Conversion still streams: :func:`write_store_chunks`
appends each chunk's floats to a raw side file (bounded RAM), writes the Arrow file with an untouched
zero placeholder in the frames buffer's place (a hole in the file, never read into RAM), then copies the
side file into that region in the kernel (``os.copy_file_range``). The result is written to a temporary
file in the target directory and ``os.replace``-d into place, so no half-written store is ever visible.

Values: the writer refuses a chunk holding a non-finite coordinate, and :func:`open_store` refuses a store
(written by anything) whose frames hold NaN or inf, whose labels leave ``0..num_classes-1`` or whose header
sizes exceed :mod:`ms2l_ray.limits`. The frame check is one ``min``/``max`` pass over the mapped buffer in
:data:`_SCAN_ROWS`-row slices (no temporary, memory-bandwidth bound), run once per store per process.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ms2l_ray.contract import feature_dim
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.limits import MAX_CLASSES, MAX_JOINTS, MAX_PERSONS

FORMAT_NAME = "ms2l-ray-skeleton-store"
FORMAT_VERSION = 1
INT_COLUMNS = {"label": "labels", "subject": "subjects", "view": "views", "setup": "setups"}
_HEADER_INTS = ("num_persons", "num_joints", "num_classes")
_REQUIRED_META = ("format", "format_version", *_HEADER_INTS, "layout", "preprocessing", "source", "meta")
_COPY_STEP = 1 << 28  # bytes per copy_file_range call
_HEADER_RANGES = {"num_persons": (1, MAX_PERSONS), "num_joints": (1, MAX_JOINTS), "num_classes": (1, MAX_CLASSES)}
_SCAN_ROWS = 1 << 16  # frame rows per slice of the open-time finiteness scan


def store_schema(num_features: int, metadata: dict[str, str] | None = None) -> pa.Schema:
    """The store schema for ``F = num_features`` (metadata as given)."""
    fields = [pa.field("frames", pa.list_(pa.list_(pa.float32(), num_features)), nullable=False)]
    fields += [pa.field(c, pa.int64(), nullable=False) for c in (*INT_COLUMNS, "length")]
    fields.append(pa.field("name", pa.string(), nullable=False))
    return pa.schema(fields, metadata=metadata)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def _header(data: SkeletonSet) -> dict[str, str]:
    meta = {k: v for k, v in data.meta.items() if k not in ("preprocess", "source")}
    return {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "num_persons": str(data.num_persons),
            "num_joints": str(data.num_joints), "num_classes": str(data.num_classes), "layout": data.layout,
            "preprocessing": _json(data.meta.get("preprocess", [])), "source": _json(data.meta.get("source")),
            "meta": _json(meta)}


class _HoleSink(io.RawIOBase):
    """File sink that seeks over the frames placeholder instead of writing its zeros (filled in later)."""

    def __init__(self, f: io.BufferedWriter, placeholder: pa.Buffer | None) -> None:
        super().__init__()
        self._f = f
        self._skip = (placeholder.address, placeholder.size) if placeholder is not None and placeholder.size else None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if isinstance(data, pa.Buffer) and self._skip == (data.address, data.size):
            self._f.seek(data.size, io.SEEK_CUR)
            return data.size
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()


def _batch(frames: np.ndarray, lengths: np.ndarray, cols: dict[str, np.ndarray], names: list[str],
           schema: pa.Schema) -> pa.RecordBatch:
    f = schema.field("frames").type.value_type.list_size
    values = pa.Array.from_buffers(pa.float32(), frames.size, [None, pa.py_buffer(frames)])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if offsets[-1] >= 2**31:
        raise ValueError(f"store holds {offsets[-1]} frames; the int32 list offsets allow < 2**31")
    frames_arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                          pa.FixedSizeListArray.from_arrays(values, f))
    arrays = [frames_arr, *(pa.array(cols[c].astype(np.int64)) for c in INT_COLUMNS),
              pa.array(lengths.astype(np.int64)), pa.array(names, pa.string())]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def is_store_file(path: str | Path) -> bool:
    """True for a regular file whose Arrow schema says it is a store of this format (not a symlink, not a dataset)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with pa.memory_map(str(path), "r") as mm:
            metadata = pa.ipc.open_file(mm).schema.metadata or {}
    except (pa.ArrowInvalid, OSError):
        return False
    return metadata.get(b"format") == FORMAT_NAME.encode()


def _temp_prefix(path: Path) -> str:
    """The name prefix ``.<store name>.<pid>.`` of the temporary files a store is written through.

    Hidden, beside the target (same filesystem: ``os.replace`` is atomic), and carrying the writer's pid so that
    a later run can tell a killed writer's leftovers from a live one's.
    """
    return f".{path.name}.{os.getpid()}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def leftover_temp_files(path: str | Path) -> tuple[list[Path], list[Path]]:
    """(stale, live) temporary files of earlier writes of the store ``path``.

    A SIGKILLed ``ms2l data prepare`` cannot run its cleanup and leaves ``.<name>.<pid>.XXXXXXXX.tmp`` and
    ``.frames.tmp`` files of about the dataset's size. Stale ones belong to a pid that no longer runs on this
    host (or to the pid-less names of older versions); live ones to a writer still running.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return [], []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[A-Za-z0-9_]{{8}}(?:\.frames)?\.tmp")
    stale: list[Path] = []
    live: list[Path] = []
    for candidate in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")):
        m = pattern.fullmatch(candidate.name)
        if m is None or not candidate.is_file() or candidate.is_symlink():
            continue
        pid = int(m.group(1)) if m.group(1) else None
        (live if pid is not None and pid != os.getpid() and _pid_alive(pid) else stale).append(candidate)
    return stale, live


def remove_leftover_temp_files(path: str | Path) -> tuple[list[Path], list[Path]]:
    """Delete the stale temporary files of ``path`` (see :func:`leftover_temp_files`); return (removed, live)."""
    stale, live = leftover_temp_files(path)
    removed = []
    for p in stale:
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed, live


def _frames_offset(path: Path) -> int:
    """Byte offset of the frames values buffer inside a written store file."""
    with pa.memory_map(str(path), "r") as mm:
        base = mm.read_buffer().address  # the whole file, zero-copy: its address is the mapping's start
        batch = pa.ipc.open_file(mm).get_batch(0)
        values = batch.column("frames").values.values
        return int(values.buffers()[1].address - base)


def _copy_into(src: Path, dst: Path, offset: int, nbytes: int) -> None:
    """Copy ``nbytes`` of ``src`` into ``dst`` at ``offset`` in the kernel (chunked read/write fallback)."""
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        done = 0
        while done < nbytes:
            step = min(_COPY_STEP, nbytes - done)
            try:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), step, done, offset + done)
            except (OSError, AttributeError):
                n = os.pwrite(fout.fileno(), os.pread(fin.fileno(), min(step, 1 << 24), done), offset + done)
            if n <= 0:
                raise OSError(f"copying frames from {src} into {dst} stalled at byte {done} of {nbytes}")
            done += n


def _write(path: Path, header: dict[str, str], lengths: np.ndarray, cols: dict[str, np.ndarray], names: list[str],
           frames: np.ndarray | None, raw: Path | None) -> None:
    """Write the single-batch store atomically; frames come from ``frames`` or the raw float32 file ``raw``."""
    num_features = feature_dim(int(header["num_persons"]), int(header["num_joints"]))
    schema = store_schema(num_features, header)
    if frames is None:  # calloc'd zeros: never touched, so they cost no RAM; the sink skips them
        frames = np.zeros((int(lengths.sum()), num_features), np.float32)  # [R, F]
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    batch = _batch(frames, lengths, cols, names, schema)
    placeholder = batch.column("frames").values.values.buffers()[1] if raw is not None else None
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            with pa.ipc.new_file(pa.PythonFile(_HoleSink(f, placeholder), mode="w"), schema) as writer:
                writer.write_batch(batch)
        del batch, frames
        if raw is not None and raw.stat().st_size:
            _copy_into(raw, tmp, _frames_offset(tmp), raw.stat().st_size)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a store is shared like any file the user writes
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def first_non_finite(frames: np.ndarray) -> int | None:
    """The first row of ``frames`` ``[R, F]`` holding NaN or inf, or ``None``; scanned in bounded slices."""
    for lo in range(0, len(frames), _SCAN_ROWS):
        part = frames[lo: lo + _SCAN_ROWS]
        if part.size and not (np.isfinite(part.min()) and np.isfinite(part.max())):
            return lo + int(np.argmax(~np.isfinite(part).all(axis=1)))
    return None


def _refuse_non_finite(path: Path, data: SkeletonSet, verb: str) -> None:
    row = first_non_finite(np.asarray(data.frames))
    if row is None:
        return
    seq = int(np.searchsorted(data.offsets, row, side="right")) - 1
    bad = np.asarray(data.frames[row])
    raise DataFormatError(path, "frames", float(bad[~np.isfinite(bad)][0]),
                          f"sample {data.names[seq]!r} frame {row - int(data.offsets[seq])} is not finite; "
                          f"{verb} only finite coordinates")


def write_store(data: SkeletonSet, path: str | Path) -> None:
    """Write one in-memory set as a store at ``path`` (atomically); non-finite frames are refused."""
    path = Path(path)
    _refuse_non_finite(path, data, "a store holds")
    cols = {c: getattr(data, attr) for c, attr in INT_COLUMNS.items()}
    _write(path, _header(data), data.lengths, cols, list(data.names), np.asarray(data.frames), None)


def _same_shape(a: dict[str, str], b: dict[str, str]) -> bool:
    return all(a[k] == b[k] for k in (*_HEADER_INTS, "layout"))


def write_store_chunks(chunks: Iterable[SkeletonSet], path: str | Path, *, meta: dict[str, Any] | None = None) -> int:
    """Stream ``chunks`` into a store at ``path`` without holding all frames in RAM; returns the row count.

    All chunks must share ``M``, ``V``, ``num_classes`` and layout; preprocessing, source and meta come from
    the first chunk, with ``meta`` merged over its meta *after the last chunk* (so a caller may fill it
    while the chunks are produced, e.g. with the files it skipped). If the iterator raises, nothing is
    left behind.
    """
    path = Path(path)
    first: SkeletonSet | None = None
    lengths: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {c: [] for c in INT_COLUMNS}
    names: list[str] = []
    fd, raw_name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".frames.tmp")
    raw = Path(raw_name)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                if first is None:
                    first = _empty_like(chunk)
                elif not _same_shape(_header(first), _header(chunk)):
                    raise ValueError(f"chunk with (M, V, classes, layout) = {_shape_of(chunk)} does not match the "
                                     f"first chunk's {_shape_of(first)}")
                _refuse_non_finite(path, chunk, "a store holds")
                f.write(np.ascontiguousarray(chunk.frames, dtype=np.float32).data)
                lengths.append(chunk.lengths)
                for c, attr in INT_COLUMNS.items():
                    cols[c].append(np.asarray(getattr(chunk, attr)))
                names.extend(chunk.names)
        if first is None:
            raise ValueError(f"{path}: nothing to write (the input yielded no sequences)")
        first.meta.update(meta or {})
        _write(path, _header(first), np.concatenate(lengths), {c: np.concatenate(v) for c, v in cols.items()},
               names, None, raw)
    finally:
        raw.unlink(missing_ok=True)
    return len(names)


def _shape_of(data: SkeletonSet) -> tuple[int, int, int, str]:
    return data.num_persons, data.num_joints, data.num_classes, data.layout


def _empty_like(chunk: SkeletonSet) -> SkeletonSet:
    """A zero-row set with ``chunk``'s shape and a copy of its meta (the header template)."""
    return SkeletonSet(frames=np.zeros((0, chunk.num_features), np.float32), offsets=np.zeros(1, np.int64),
                       labels=chunk.labels[:0], subjects=chunk.subjects[:0], views=chunk.views[:0],
                       setups=chunk.setups[:0], names=[], num_persons=chunk.num_persons, num_joints=chunk.num_joints,
                       num_classes=chunk.num_classes, layout=chunk.layout, meta=dict(chunk.meta))


def _read_header(path: Path, schema: pa.Schema) -> dict[str, str]:
    raw = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    for key in _REQUIRED_META:
        if key not in raw:
            raise DataFormatError(path, f"schema metadata {key!r}", None,
                                  f"missing; not a store written by ms2l_ray (has {sorted(raw)})")
    if raw["format"] != FORMAT_NAME:
        raise DataFormatError(path, "schema metadata 'format'", raw["format"], f"expected {FORMAT_NAME!r}")
    for key in ("format_version", *_HEADER_INTS):
        if not (raw[key].isascii() and raw[key].isdigit()):
            raise DataFormatError(path, f"schema metadata {key!r}", raw[key], "expected a non-negative integer")
    for key, (lo, hi) in _HEADER_RANGES.items():
        if not lo <= int(raw[key]) <= hi:
            raise DataFormatError(path, f"schema metadata {key!r}", raw[key], f"expected {lo}..{hi}")
    if int(raw["format_version"]) > FORMAT_VERSION:
        raise DataFormatError(path, "schema metadata 'format_version'", raw["format_version"],
                              f"this ms2l_ray reads versions <= {FORMAT_VERSION}")
    for key in ("preprocessing", "source", "meta"):
        try:
            json.loads(raw[key])
        except json.JSONDecodeError:
            raise DataFormatError(path, f"schema metadata {key!r}", raw[key], "expected JSON") from None
    return raw


def _check_schema(path: Path, schema: pa.Schema, header: dict[str, str]) -> None:
    expected = store_schema(feature_dim(int(header["num_persons"]), int(header["num_joints"])))
    for field in expected:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            raise DataFormatError(path, f"column {field.name!r}", None, f"missing; expected {field.type}")
        if schema.field(idx).type != field.type:
            raise DataFormatError(path, f"column {field.name!r}", str(schema.field(idx).type), f"expected {field.type}")


def _check_values(path: Path, frames: np.ndarray, offsets: np.ndarray, labels: np.ndarray | None,
                  num_classes: int) -> None:
    """Refuse labels outside ``0..num_classes-1``, empty sequences and non-finite frames (vectorised)."""
    if labels is not None and labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        row = int(np.argmax((labels < 0) | (labels >= num_classes)))
        raise DataFormatError(path, "column 'label'", int(labels[row]),
                              f"row {row}: expected 0..{num_classes - 1} (num_classes = {num_classes})")
    lengths = np.diff(offsets)
    if lengths.size and lengths.min() < 1:
        raise DataFormatError(path, "column 'frames'", f"row {int(np.argmin(lengths))}", "a sequence has no frame")
    found = first_non_finite(frames)
    if found is not None:
        seq = int(np.searchsorted(offsets, found, side="right")) - 1
        bad = np.asarray(frames[found])
        raise DataFormatError(path, "column 'frames'", float(bad[~np.isfinite(bad)][0]),
                              f"row {seq} (frame {found - int(offsets[seq])}) is not finite; a store holds only "
                              f"finite coordinates")


def open_store(path: str | Path) -> SkeletonSet:
    """Memory-map a store; ``frames`` is a zero-copy view on the mapped file (nothing is read up front).

    The small per-row columns (labels, ids, names) are copied into RAM; ``offsets`` come from the
    list offsets of ``frames``. A foreign or damaged file raises :class:`DataFormatError` naming the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"store {path} does not exist")
    source = pa.memory_map(str(path), "r")
    try:
        reader = pa.ipc.open_file(source)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(path, "arrow ipc", type(e).__name__, f"not an Arrow IPC file: {e}") from None
    header = _read_header(path, reader.schema)
    _check_schema(path, reader.schema, header)
    if reader.num_record_batches == 1:
        batch = reader.get_batch(0)
    else:  # not written by this module: concatenating copies, so the zero-copy promise does not hold
        batch = reader.read_all().combine_chunks().to_batches()[0] if reader.num_record_batches else None
    m, v = int(header["num_persons"]), int(header["num_joints"])
    f = feature_dim(m, v)
    if batch is None or batch.num_rows == 0:
        frames, offsets, cols, names = np.zeros((0, f), np.float32), np.zeros(1, np.int64), {}, []
    else:
        lists = batch.column("frames")
        if lists.null_count or lists.values.null_count:
            raise DataFormatError(path, "column 'frames'", f"{lists.null_count} null rows", "nulls are not allowed")
        offsets = np.asarray(lists.offsets, dtype=np.int64)  # [N+1]
        fsl = lists.values
        values = fsl.values.to_numpy(zero_copy_only=True).reshape(-1, f)[fsl.offset: fsl.offset + len(fsl)]  # [R, F]
        frames = values[offsets[0]: offsets[-1]]
        offsets = offsets - offsets[0]
        cols = {c: np.array(batch.column(c).to_numpy(), dtype=np.int64) for c in (*INT_COLUMNS, "length")}
        names = batch.column("name").to_pylist()
        if not np.array_equal(cols["length"], np.diff(offsets)):
            raise DataFormatError(path, "column 'length'", int(np.argmax(cols["length"] != np.diff(offsets))),
                                  "length disagrees with the frames list at this row")
    _check_values(path, frames, offsets, cols.get("label"), int(header["num_classes"]))
    meta = json.loads(header["meta"])
    meta.update(preprocess=json.loads(header["preprocessing"]), source=json.loads(header["source"]))
    empty = np.zeros(0, np.int64)
    return SkeletonSet(frames=frames, offsets=offsets, labels=cols.get("label", empty),
                       subjects=cols.get("subject", empty), views=cols.get("view", empty),
                       setups=cols.get("setup", empty), names=names, num_persons=m, num_joints=v,
                       num_classes=int(header["num_classes"]), layout=header["layout"], meta=meta)
