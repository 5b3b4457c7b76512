"""Arrow store vs ST-GCN style padded ``.npy``: conversion speed, training-time reads, peak memory.

Usage::

    python benchmarks/store_benchmark.py [--num-sequences 114480] [--npy-sequences 4000] [--batches 100]
                                         [--dir /tmp/ms2l-store-bench] [--keep]

The store side builds an NTU-120-sized store (114,480 sequences, F = 150, valid lengths drawn like NTU's,
``clip(normal(90, 35), 20, 300)`` as in ``pretrain_throughput.py``) chunk by chunk from random numbers with
:func:`ms2l_ray.data.store.write_store_chunks`, then reads random batches of 256 through
``SkeletonSet.batch(idx, 300)`` from the memory-mapped store. The baseline is the padded
``N × 3 × 300 × 25 × 2`` float32 array the reference code loads whole (180 kB per sequence, 20.6 GB for
NTU-120, more than this machine's RAM), so it is measured at ``--npy-sequences`` and its load time and
memory are extrapolated linearly to ``--num-sequences`` (marked as such in the table).

Every phase runs in a fresh subprocess so that ``ru_maxrss`` (peak resident set, which counts touched
pages of memory-mapped files too) belongs to that phase alone. The page cache is warm (the files were
just written), so reads measure CPU/memory cost, not the disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.contract import from_nctvm
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.store import open_store, write_store_chunks

F, T_MAX, BATCH, CHUNK = 150, 300, 256, 2048
NPY_SHAPE = (3, T_MAX, 25, 2)  # C, T, V, M per sequence
NPY_BYTES = int(np.prod(NPY_SHAPE)) * 4


def ntu_lengths(n: int, seed: int = 0) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(90, 35, n), 20, T_MAX).astype(np.int64)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def _mapped_mb(path: Path) -> float:
    """Resident MB of this process's mappings of ``path`` (from /proc/self/smaps) at the time of the call."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef":  # a mapping header: "start-end perms offset dev inode path"
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total / 1024


def _chunks(lengths: np.ndarray, timer: dict[str, float]) -> Iterator[SkeletonSet]:
    """Random sequences, ``CHUNK`` at a time; the generation time is kept out of the write speed."""
    rng = np.random.default_rng(1)
    for start in range(0, len(lengths), CHUNK):
        t0 = time.perf_counter()
        ln = lengths[start:start + CHUNK]
        n = len(ln)
        chunk = SkeletonSet(frames=rng.standard_normal((int(ln.sum()), F), dtype=np.float32),
                            offsets=np.concatenate([[0], np.cumsum(ln)]).astype(np.int64),
                            labels=rng.integers(0, 120, n), subjects=rng.integers(1, 107, n),
                            views=rng.integers(1, 4, n), setups=rng.integers(1, 33, n),
                            names=[f"S{start + i:09d}" for i in range(n)], num_persons=2, num_joints=25,
                            num_classes=120, layout="ntu25", meta={"source": "benchmark"})
        timer["generate"] += time.perf_counter() - t0
        yield chunk


def phase_write(a: argparse.Namespace) -> dict[str, Any]:
    timer = {"generate": 0.0}
    path = Path(a.dir) / "bench.arrow"
    t0 = time.perf_counter()
    n = write_store_chunks(_chunks(ntu_lengths(a.num_sequences), timer), path)
    total = time.perf_counter() - t0
    return {"n": n, "seconds": total - timer["generate"], "generate_s": timer["generate"],
            "bytes": path.stat().st_size, "peak_mb": _peak_mb()}


def _read_loop(batch_fn: Any, n: int, batches: int) -> float:
    rng = np.random.default_rng(2)
    batch_fn(rng.integers(0, n, BATCH))  # warm-up
    t0 = time.perf_counter()
    for _ in range(batches):
        batch_fn(rng.integers(0, n, BATCH))
    return batches * BATCH / (time.perf_counter() - t0)


def phase_read(a: argparse.Namespace) -> dict[str, Any]:
    path = Path(a.dir) / "bench.arrow"
    t0 = time.perf_counter()
    data = open_store(path)
    open_s = time.perf_counter() - t0
    rate = _read_loop(lambda idx: data.batch(idx, T_MAX), len(data), a.batches)
    return {"n": len(data), "open_s": open_s, "rate": rate, "peak_mb": _peak_mb(), "file_mb": _mapped_mb(path)}


def phase_npy_write(a: argparse.Namespace) -> dict[str, Any]:
    path = Path(a.dir) / "bench_data.npy"
    lengths = ntu_lengths(a.npy_sequences)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(a.npy_sequences, *NPY_SHAPE))
    for start in range(0, a.npy_sequences, 256):
        ln = lengths[start:start + 256]
        x = rng.standard_normal((len(ln), *NPY_SHAPE), dtype=np.float32)  # [n, C, T, V, M]
        x *= (np.arange(T_MAX)[None, :] < ln[:, None])[:, None, :, None, None]
        out[start:start + len(ln)] = x
    out.flush()
    del out
    return {"n": a.npy_sequences, "seconds": time.perf_counter() - t0, "bytes": path.stat().st_size,
            "peak_mb": _peak_mb()}


def phase_npy_load(a: argparse.Namespace) -> dict[str, Any]:
    path = Path(a.dir) / "bench_data.npy"
    t0 = time.perf_counter()
    arr = np.load(path, mmap_mode="r" if a.phase == "npy-mmap" else None)
    open_s = time.perf_counter() - t0
    rate = _read_loop(lambda idx: from_nctvm(arr[idx]), len(arr), a.batches)  # [B, T, F] like training
    return {"n": len(arr), "open_s": open_s, "rate": rate, "peak_mb": _peak_mb(), "file_mb": _mapped_mb(path)}


def phase_idle(a: argparse.Namespace) -> dict[str, Any]:
    return {"peak_mb": _peak_mb()}


PHASES = {"idle": phase_idle, "write": phase_write, "read": phase_read, "npy-write": phase_npy_write,
          "npy-load": phase_npy_load, "npy-mmap": phase_npy_load}


def _run(phase: str, a: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--dir", a.dir, "--num-sequences", str(a.num_sequences),
           "--npy-sequences", str(a.npy_sequences), "--batches", str(a.batches)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def table(a: argparse.Namespace) -> str:
    Path(a.dir).mkdir(parents=True, exist_ok=True)
    idle, w, r = _run("idle", a), _run("write", a), _run("read", a)
    nw, nl, nm = _run("npy-write", a), _run("npy-load", a), _run("npy-mmap", a)
    scale = a.num_sequences / a.npy_sequences
    gb = 1e9
    rows = [
        "| format | sequences | on disk | write (seq/s) | open / load | read, batches of 256 (seq/s) | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| Arrow store, memory-mapped (measured) | {w['n']:,} | {w['bytes'] / gb:.2f} GB "
        f"| {w['n'] / w['seconds']:,.0f} | {r['open_s']:.2f} s | {r['rate']:,.0f} "
        f"| write {w['peak_mb']:,.0f} MB; read {r['peak_mb']:,.0f} MB (mapped {r['file_mb']:,.0f} MB) |",
        f"| padded .npy, np.load into RAM (measured) | {nl['n']:,} | {nw['bytes'] / gb:.2f} GB "
        f"| {nw['n'] / nw['seconds']:,.0f} | {nl['open_s']:.2f} s | {nl['rate']:,.0f} | {nl['peak_mb']:,.0f} MB |",
        f"| padded .npy, np.load into RAM (**extrapolated** ×{scale:.1f}) | {a.num_sequences:,} "
        f"| {nw['bytes'] * scale / gb:.2f} GB | – | {nl['open_s'] * scale:.1f} s | – "
        f"| {idle['peak_mb'] + (nl['peak_mb'] - idle['peak_mb']) * scale:,.0f} MB |",
        f"| padded .npy, np.load(mmap_mode='r') (measured) | {nm['n']:,} | {nw['bytes'] / gb:.2f} GB | – "
        f"| {nm['open_s']:.2f} s | {nm['rate']:,.0f} | {nm['peak_mb']:,.0f} MB (mapped {nm['file_mb']:,.0f} MB) |",
    ]
    notes = (f"\nInterpreter + numpy + torch alone: {idle['peak_mb']:,.0f} MB peak RSS. Store write speed excludes "
             f"generating the random chunks ({w['generate_s']:.1f} s). {a.batches} random batches per read row; "
             "`mapped` is the resident part of the data file's own mapping at the end (clean page-cache pages, "
             "reclaimable by the kernel), which `ru_maxrss` counts too.")
    return "\n".join(rows) + notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-sequences", type=int, default=114_480)
    p.add_argument("--npy-sequences", type=int, default=4_000, help="padded .npy baseline size (extrapolated)")
    p.add_argument("--batches", type=int, default=100, help="random batches of 256 per read measurement")
    p.add_argument("--dir", default="/tmp/ms2l-store-bench")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.phase:
        print(json.dumps(PHASES[a.phase](a)))
        return
    try:
        print(table(a))
    finally:
        if not a.keep:
            for name in ("bench.arrow", "bench_data.npy"):
                (Path(a.dir) / name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
