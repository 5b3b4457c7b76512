"""Trials packed onto one GPU: does running K pretrainings at once beat running one? (issue 12, item 5)

``ms2l tune --gpus-per-trial 0.25`` lets Ray place four trials on one GPU. Whether that pays depends on how much
of the GPU one MS²L pretraining keeps busy: a GRU step at batch 256 launches many small kernels, so one process
leaves the GPU idle between them and a second process can fill the gaps. This benchmark measures it without
Ray (the GPU machine has none): for each K in ``--procs`` it starts K processes on the same device, each
running the same pretraining step (paper sizes, ``--impl``, ``--precision``, length-bucketed NTU-like batches)
``--steps`` times after a warm-up, all released at once by a barrier. It prints

- the total sequences/s of the K processes (K × batch × steps / the wall time from the barrier to the last
  finish) and its ratio to the first K (1 by default);
- the GPU utilisation (mean of ``nvidia-smi`` samples every 0.5 s while they run) and the GPU memory in use
  (peak of the samples);
- the peak memory one process allocated (``torch.cuda.max_memory_allocated``): what one trial needs at these
  sizes, for sizing ``--gpus-per-trial`` (add the CUDA context, about 0.5 GiB a process, for the total).

Usage (needs only torch, numpy and pyyaml; run from the repository root)::

    python benchmarks/gpu_packing.py [--procs 1,2,4] [--batch-size 256] [--steps 20] [--precision bf16]
    python benchmarks/gpu_packing.py --device cpu --procs 1,2 --batch-size 8 --hidden 64 --frames 60 --steps 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the NTU-like batches live beside us

from pretrain_throughput import bucketed_batches, precision_step, sync  # noqa: E402

from ms2l_ray.config import ENCODER_IMPLS  # noqa: E402
from ms2l_ray.train.precision import RESOLVED_PRECISIONS, Precision  # noqa: E402


def run_one(rank: int, args: argparse.Namespace, barrier: Any, results: Any) -> None:
    """One "trial": build the model, warm up, wait at the barrier, time ``args.steps`` steps, report."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train = precision_step(args.impl, args.precision, args.hidden, device, args.seed + rank)
    batches = [(x.to(device), n.to(device)) for x, n in
               bucketed_batches(args.batch_size, args.frames, min(args.steps, 8), args.bucket_chunk, args.seed)]

    def step(i: int) -> None:
        train(*batches[i % len(batches)])

    for i in range(args.warmup):
        step(i)
    sync(device)
    barrier.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across the processes of one machine
    for i in range(args.steps):
        step(i)
    sync(device)
    end = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    results.put((rank, start, end, peak))


class GpuSampler(threading.Thread):
    """``nvidia-smi`` utilisation and memory samples every 0.5 s until :meth:`stop` (nothing without it)."""

    def __init__(self, index: int) -> None:
        super().__init__(daemon=True)
        self.index, self._stop = index, threading.Event()
        self.samples: list[tuple[float, float]] = []
        self.available = shutil.which("nvidia-smi") is not None

    def run(self) -> None:
        while self.available and not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "-i", str(self.index), "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, check=False)
            if out.returncode == 0 and out.stdout.strip():
                util, mem = (float(v) for v in out.stdout.strip().split(",")[:2])
                self.samples.append((util, mem))
            self._stop.wait(0.5)

    def stop(self) -> tuple[str, str]:
        """Mean utilisation and peak memory of the samples, formatted (``n/a`` without samples)."""
        self._stop.set()
        self.join()
        if not self.samples:
            return "n/a", "n/a"
        util = sum(u for u, _ in self.samples) / len(self.samples)
        return f"{util:.0f} %", f"{max(m for _, m in self.samples) / 1024:.1f} GiB"


def run_k(k: int, args: argparse.Namespace) -> tuple[float, str, str, float]:
    """K concurrent processes: total sequences/s, utilisation, memory in use, peak allocated per process."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    barrier, results = ctx.Barrier(k + 1), ctx.Queue()
    procs = [ctx.Process(target=run_one, args=(r, args, barrier, results)) for r in range(k)]
    for proc in procs:
        proc.start()
    barrier.wait()  # every process warmed up: start sampling as they start timing
    device = torch.device(args.device)
    sampler = GpuSampler(device.index or 0)
    if device.type == "cuda":
        sampler.start()
    rows = [results.get() for _ in range(k)]
    util, mem = sampler.stop() if device.type == "cuda" else ("n/a", "n/a")
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a benchmark process exited with {proc.exitcode}")
    wall = max(end for _, _, end, _ in rows) - min(start for _, start, _, _ in rows)
    return k * args.batch_size * args.steps / wall, util, mem, max(peak for *_, peak in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--procs", default="1,2,4", help="comma-separated process counts K")
    p.add_argument("--impl", choices=ENCODER_IMPLS, default="padded", help="model.encoder_impl of every process")
    p.add_argument("--precision", choices=RESOLVED_PRECISIONS, default=None,
                   help="default: bf16 on a bf16-capable GPU, else fp32")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--hidden", type=int, default=600)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--bucket-chunk", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = torch.device(args.device)
    if args.precision is None:
        args.precision = Precision.make("auto", device).name
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; encoder_impl {args.impl}, {args.precision}, T≤{args.frames}, "
          f"hidden {args.hidden}, batch {args.batch_size}, {args.steps} timed steps per process (+{args.warmup})\n")
    print("| processes on one device | sequences / s, total | per process | total vs first row | GPU utilisation "
          "| GPU memory in use | peak allocated per process |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    one = None
    for k in (int(v) for v in args.procs.split(",")):
        total, util, mem, peak = run_k(k, args)
        one = one or total
        peak_text = f"{peak:.2f} GiB" if peak == peak else "n/a"  # NaN off CUDA
        print(f"| {k} | {total:.1f} | {total / k:.1f} | {total / one:.2f}× | {util} | {mem} | {peak_text} |",
              flush=True)


if __name__ == "__main__":
    main()
