"""Does an artifact's config describe the weights it holds? Answered before the model is built.

Why: building the model a stored config describes allocates its parameters (``hidden_size`` 16384 is ~7
billion of them), so an ``encoder`` file of a few bytes whose config claims huge sizes would allocate
gigabytes before any check. Here the model is built on PyTorch's ``meta`` device — shapes only, no memory —
and its tensor names and shapes are compared with the tensors actually in the file; only a config that
matches them exactly is built for real, so what gets allocated is bounded by the file's own size.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ms2l_ray.config import Config
from ms2l_ray.limits import MAX_FEATURES


def size_problem(cfg: Config, num_features: int, state: Mapping[str, torch.Tensor]) -> str | None:
    """Why the model of ``cfg`` with ``num_features`` inputs does not fit ``state``, or None when it does."""
    from ms2l_ray.model.ms2l import build_ms2l

    if not 1 <= num_features <= MAX_FEATURES or num_features % 3:
        return f"field 'num_features' = {num_features}: expected a multiple of 3 in 3..{MAX_FEATURES}"
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_ms2l(cfg.model, cfg.tasks, num_features).state_dict().items()}
    held = {k: tuple(v.shape) for k, v in state.items()}
    for key in sorted(shapes.keys() | held.keys()):
        want, have = shapes.get(key), held.get(key)
        if want != have:
            return (f"its config describes {'no tensor' if want is None else f'shape {want}'} for {key!r} but the file "
                    f"holds {'none' if have is None else f'shape {have}'}; refused before building the model")
    return None
