"""Stop training at the first non-finite loss (or after a configured patience), before it reaches the weights.

Why: one NaN or inf in a loss turns every weight into NaN at the next optimiser step, and everything after —
the encoder file, its evaluations, a search's ranking — is silently meaningless while the job exits 0. The
guard looks at every training step's loss terms *before* the backward pass: a non-finite step is skipped
(no update), and more than ``nonfinite_patience`` consecutive ones stop the job with
:class:`NonFiniteLossError` naming the phase, epoch, step and loss term. Under DDP the ranks agree on the
verdict (one all-reduce of a flag), so either every rank skips or stops, or none does — a rank that stopped
alone would leave the others waiting in the gradient all-reduce.

:func:`check_finite_weights` is the last line before an artifact is written: a step whose loss was finite
can still produce non-finite weights (an overflowing update at the very last step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from ms2l_ray.train.collectives import all_reduce_sum, group_is_up
from ms2l_ray.train.errors import NonFiniteLossError, TrainingError

__all__ = ["NonFiniteGuard", "NonFiniteLossError", "TrainingError", "check_finite_weights"]


def _first_bad(terms: Mapping[str, torch.Tensor | float]) -> tuple[str, float] | None:
    for name, value in terms.items():
        v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            return name, v
    return None


class NonFiniteGuard:
    """Per-loop guard against non-finite losses.

    Call :meth:`ok` once per training step with the step's loss terms, and :meth:`end_epoch` after each epoch.

    Args:
        phase: what trains (``"pretrain"``, ``"finetune"``, ``"linear probe"``), for the message.
        patience: consecutive non-finite steps to skip before stopping (0: stop at the first).
        setting: the config key of ``patience``, named in the message.
        steps_per_epoch: shown as ``step s/S``.
        say: where a skipped step is reported (the loop's progress logger).
    """

    def __init__(self, phase: str, patience: int, setting: str, steps_per_epoch: int,
                 say: Callable[[str], None] | None = None) -> None:
        self.phase, self.patience, self.setting, self.steps = phase, patience, setting, steps_per_epoch
        self.say = say
        self.consecutive = 0
        self.applied = 0  # steps applied in the current epoch
        self.skipped = 0  # steps skipped in the current epoch

    def _where(self, epoch: int, step: int) -> str:
        return f"epoch {epoch + 1} step {step + 1}/{self.steps}"

    def ok(self, epoch: int, step: int, terms: Mapping[str, torch.Tensor | float]) -> bool:
        """True: apply this step. False: skip it (non-finite, within patience). Raises past the patience.

        ``terms`` maps names to scalar losses, the total first (``{"loss": ..., "motion_loss": ...}``); the
        message names the first non-finite *component* when there is one, else the total.
        """
        total = torch.stack([t.detach().float().reshape(()) if isinstance(t, torch.Tensor) else torch.tensor(float(t))
                             for t in terms.values()])
        bad_here = not bool(torch.isfinite(total).all())
        bad = bad_here
        if group_is_up():  # every rank takes the same branch
            bad = float(all_reduce_sum(torch.tensor([float(bad_here)], dtype=torch.float64))[0]) > 0
        if not bad:
            self.consecutive = 0
            self.applied += 1
            return True
        self.consecutive += 1
        self.skipped += 1
        items = list(terms.items())
        found = (_first_bad(dict(items[1:])) or _first_bad(dict(items[:1]))) if bad_here else None
        what = f"{found[0]} = {found[1]}" if found else "a non-finite loss on another rank"
        if self.consecutive <= self.patience:
            if self.say is not None:
                self.say(f"[{self.phase}] {self._where(epoch, step)}: {what}; step skipped "
                         f"({self.consecutive} of {self.setting} = {self.patience})")
            return False
        raise NonFiniteLossError(
            f"{self.phase}: non-finite loss at {self._where(epoch, step)}: {what}; stopped after "
            f"{self.consecutive} consecutive non-finite step{'s' * (self.consecutive > 1)} "
            f"({self.setting} = {self.patience}); nothing was saved")

    def end_epoch(self, epoch: int) -> None:
        """Raise if every step of the epoch was skipped (a patience larger than an epoch trains nothing)."""
        applied, skipped = self.applied, self.skipped
        self.applied = self.skipped = 0
        if skipped and not applied:
            raise NonFiniteLossError(f"{self.phase}: every one of the {skipped} steps of epoch {epoch + 1} had a "
                                     f"non-finite loss (all skipped, {self.setting} = {self.patience}); "
                                     f"nothing was saved")


def check_finite_weights(model: nn.Module, phase: str) -> None:
    """Raise :class:`NonFiniteLossError` naming the first parameter or buffer holding NaN or inf."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteLossError(f"{phase}: weight {name} holds non-finite values after training; "
                                     f"nothing was saved")
