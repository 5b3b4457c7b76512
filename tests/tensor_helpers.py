"""Padded skeleton batches and run results as the tests compare them."""

from __future__ import annotations

import torch

from ms2l_ray.contract import valid_mask


def padded_batch(n: int, t_max: int, f: int, seed: int, min_len: int = 1,
                 full_first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random clips of ``min_len..t_max`` frames and ``f`` features, zero past each clip's length.

    ``full_first``: clip 0 spans all ``t_max`` frames (so the batch is not cut to a shorter longest clip).
    """
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(min_len, t_max + 1, (n,), generator=g)
    if full_first:
        lens[0] = t_max
    x = torch.randn(n, t_max, f, generator=g)
    return x * valid_mask(lens, t_max).unsqueeze(-1), lens


def stable(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics without wall-clock fields: what two runs of the same seed must agree on."""
    return {k: v for k, v in metrics.items() if "time" not in k and "throughput" not in k}


def stable_history(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """A run's per-epoch history without wall-clock fields."""
    return [stable(h) for h in history]
