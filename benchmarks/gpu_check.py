"""One-shot GPU check for a lent GPU machine that has torch + CUDA but no Ray and no MLflow.

Run from the repository root: ``python benchmarks/gpu_check.py``. It prints what GPU and torch build it
sees, then runs the opt-in GPU tests (``pytest -m gpu`` on ``tests/gpu/test_gpu.py`` and
``tests/gpu/test_gpu_distributed.py``: forward parity with CPU, pretraining + linear on CUDA, and the Ray-free
distributed worker body on a NCCL process group — validation, KNN and every evaluation strategy) and exits
with pytest's status. Why a script: device time is short and metered, so the whole check is one command
with nothing to type in between. Needs only ``torch`` (CUDA build), ``numpy``, ``pyyaml`` and ``pytest``.
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
    print(f"gpu check {verdict} in {time.perf_counter() - t0:.0f} s on {names[0] if names else 'no GPU'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
