"""One-shot GPU check for a lent GPU machine that has torch + CUDA but no Ray and no MLflow.

Run from the repository root: ``python benchmarks/gpu_check.py``. It prints what GPU and torch build it
sees, then runs the opt-in GPU tests (``pytest -m gpu`` on ``tests/gpu/test_gpu.py`` and
``tests/gpu/test_gpu_distributed.py``: forward parity with CPU, fp32 pretraining + linear against CPU, bf16/fp16
loss curves against fp32's seed-to-seed noise, and the Ray-free distributed worker body on a NCCL process group
— validation, KNN and every evaluation strategy), then the two GPU benchmarks (``gpu_encoders.py``: encoder
implementations × precision against the reference step; ``gpu_packing.py``: 1, 2 and 4 pretraining processes on
one GPU), and exits with pytest's status (``--tests-only`` skips the benchmarks). Why a script: device time
is short and metered, so the whole check is one command with nothing to type in between. Needs only
``torch`` (CUDA build), ``numpy``, ``pyyaml`` and ``pytest``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/gpu/test_gpu.py", "tests/gpu/test_gpu_distributed.py"]
BENCHMARKS = [["benchmarks/gpu_encoders.py", "--batch-size", "256", "--steps", "5"],
              ["benchmarks/gpu_packing.py", "--procs", "1,2,4", "--steps", "20"]]


def gpu_names() -> list[str]:
    """GPU names from ``nvidia-smi`` (empty when it is missing or fails)."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, check=False)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def main() -> int:
    import torch

    names = gpu_names()
    print(f"nvidia-smi: {'; '.join(names) if names else 'not available'}")
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__} (CUDA build {torch.version.cuda}), cuda available: {cuda}, "
          f"devices: {torch.cuda.device_count() if cuda else 0}, "
          f"NCCL: {torch.distributed.is_nccl_available() if torch.distributed.is_available() else False}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-m", "gpu", *TESTS]
    print("running:", " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    verdict = "PASSED" if rc == 0 else f"FAILED (pytest exit status {rc})"
    print(f"gpu check {verdict} in {time.perf_counter() - t0:.0f} s on {names[0] if names else 'no GPU'}", flush=True)
    if cuda and "--tests-only" not in sys.argv[1:]:
        for bench in BENCHMARKS:
            t1 = time.perf_counter()
            print(f"\nrunning: {' '.join(bench)}", flush=True)
            done = subprocess.run([sys.executable, *bench], cwd=ROOT, env=env, check=False).returncode
            print(f"{bench[0]}: exit status {done} in {time.perf_counter() - t1:.0f} s", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
