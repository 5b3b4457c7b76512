"""Shared by the ``gpu``-marked tests: selected with ``-m gpu`` on a machine without CUDA they fail, never skip.

Why fail: ``pytest -m gpu`` is how a person checks the GPU path when a GPU machine is lent; a run that
silently skips everything would read as a pass.
"""

from __future__ import annotations

import pytest
import torch


def require_cuda() -> torch.device:
    """The first CUDA device; fails the calling test (not a skip) when this torch build sees no CUDA."""
    if not torch.cuda.is_available():
        pytest.fail(f"this test needs CUDA (`-m gpu` selects GPU tests) but torch {torch.__version__} sees no CUDA "
                    f"device: run it on a GPU machine with a CUDA build of torch", pytrace=False)
    return torch.device("cuda", 0)
