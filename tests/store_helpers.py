"""Real dataset stores the tests build on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ms2l_ray.data.store import write_store
from ms2l_ray.data.synthetic import generate


def write_overflow_store(path: Path) -> Path:
    """A valid store (finite float32) whose coordinates are so large (3e38) that every loss overflows.

    What the non-finite-loss guard is tested against: the store itself passes every check, training does not.
    """
    data = generate(40, 0)
    data.frames[:] = np.where(data.frames != 0, np.float32(3e38), np.float32(0))
    write_store(data, path)
    return path
