"""What a training loop needs from its runner: device, rank, a model wrapper, epoch hooks, a logger.

A stand-alone run uses the defaults; the Ray layer passes Ray Train's DDP wrapper, the worker's rank and
world size, and a hook that reports metrics and checkpoints through ``ray.train.report``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ms2l_ray.train.guard import NonFiniteGuard

# hook(epoch, metrics, make_state): make_state() builds the full checkpoint dict only when asked for.
EpochHook = Callable[[int, dict[str, float], Callable[[], dict[str, Any]]], None]


def _identity(module: nn.Module) -> nn.Module:
    return module


@dataclass
class LoopContext:
    """How the loop runs. ``wrap_model`` receives the model already on ``device``."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    wrap_model: Callable[[nn.Module], nn.Module] = _identity
    hooks: Sequence[EpochHook] = ()
    log: Callable[[str], None] = print
    progress: bool = True  # rank 0 prints progress lines

    def say(self, msg: str) -> None:
        """Log ``msg`` once per job: from rank 0 only, and only when progress lines are on."""
        if self.rank == 0 and self.progress:
            self.log(msg)


@dataclass
class Fit:
    """One training run's moving parts, handed to the epoch functions as one argument.

    ``wrapped`` is what :attr:`LoopContext.wrap_model` made of ``model`` (DDP under Ray Train): forward and
    backward go through it, while clipping, checkpoints and model selection read ``model`` itself.
    """

    model: nn.Module
    wrapped: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    guard: NonFiniteGuard

    def close_epoch(self, epoch: int) -> float:
        """End an epoch: the guard's all-skipped check, then the schedule step; returns the lr the epoch used."""
        self.guard.end_epoch(epoch)
        lr: float = self.opt.param_groups[0]["lr"]
        self.sched.step()
        return lr


class Progress:
    """Step-level progress lines with an ETA, at most one every ``every`` steps (no log flooding)."""

    def __init__(self, ctx: LoopContext, total_epochs: int, steps_per_epoch: int, every: int, tag: str) -> None:
        self.ctx, self.total, self.steps, self.every, self.tag = ctx, total_epochs, max(1, steps_per_epoch), every, tag
        self.t0 = time.perf_counter()
        self.done = 0

    def step(self, epoch: int, step: int, values: dict[str, float]) -> None:
        """Count a step; every ``every`` steps (and at the epoch's last) say its values and the ETA."""
        self.done += 1
        if (step + 1) % self.every and step + 1 != self.steps:
            return
        elapsed = time.perf_counter() - self.t0
        remaining = (self.total - epoch) * self.steps - (step + 1)
        eta = elapsed / self.done * max(remaining, 0)
        shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
        self.ctx.say(f"[{self.tag}] epoch {epoch + 1}/{self.total} step {step + 1}/{self.steps} {shown} "
                     f"eta {eta:.0f}s")

    def restart_epoch_clock(self) -> None:
        """Start the ETA clock at the epoch's first step, so evaluation between epochs does not count."""
        self.t0, self.done = time.perf_counter(), 0


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or the module itself)."""
    inner = getattr(module, "module", None)
    return inner if isinstance(inner, nn.Module) else module
