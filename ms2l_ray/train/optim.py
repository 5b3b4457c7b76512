"""Optimiser, schedule and per-module gradient clipping as the reference ``procedure.py`` does them."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ms2l_ray.config import OptimConfig


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> tuple[torch.optim.Optimizer,
                                                                              torch.optim.lr_scheduler.StepLR]:
    """Adam (lr 1e-3 in the reference) with StepLR(step 30, γ 0.1), stepped once per epoch."""
    opt = torch.optim.Adam([p for p in params if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return opt, sched


def clip_per_module(modules: Iterable[nn.Module], max_norm: float) -> None:
    """Clip the gradient norm of each module separately (reference: each of encoder, decoder, heads).

    Clipping per module keeps a large motion-prediction gradient from shrinking the jigsaw and
    contrastive heads' updates, which a single global norm would do.
    """
    if max_norm <= 0:
        return
    for module in modules:
        params = [p for p in module.parameters() if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
