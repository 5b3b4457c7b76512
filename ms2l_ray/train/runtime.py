"""Device selection and seeding: the device is a config value, never a hard-coded CUDA call."""

from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else is passed to :class:`torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (seed, epoch, rank, ...), stable across processes and runs."""
    ss = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])
    return int(ss.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices).

    Called at every epoch start with a derived seed so that a run resumed from an epoch-boundary checkpoint
    replays exactly the same random stream.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def cpu_generator(seed: int) -> torch.Generator:
    """An explicit CPU generator for augmentations (passed to every random op, per STYLE.md §4)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g
