"""Mixed precision (``Config.precision``): the autocast dtype of the forward passes and the fp16 grad scaler.

Why: on a GPU the GRUs and MLP heads run several times faster in bf16/fp16 than in fp32 (tensor cores), and
the GRU encoder is most of a step. What stays in fp32, and why:

* **the losses**: :class:`ms2l_ray.model.ms2l.MS2L` computes its three losses with autocast switched off on
  fp32 copies of their inputs, and the classifier loss of the evaluation strategies is computed outside the
  autocast block on ``logits.float()``: the contrastive logits are cosine similarities ``/ τ`` whose
  differences bf16's 8-bit mantissa would round away, and a reduction over ``N·T·F`` squared errors in 16
  bits loses the motion loss's small terms;
* **the backward pass and the optimiser**: autocast wraps only the forward (the PyTorch AMP recipe); the
  parameters and Adam's moments stay fp32;
* **fp16 only**: a :class:`torch.amp.GradScaler` scales the loss so small gradients do not underflow fp16's
  range, and unscales them before the per-module clipping (bf16 has fp32's range and needs none).

``"auto"`` resolves to bf16 on a CUDA device that supports it (``torch.cuda.is_bf16_supported()``: Ampere
and newer) and to fp32 elsewhere: on CPU autocast would leave the GRUs in fp32 (no CPU bf16 GRU kernel) and
run the heads' matmuls in bf16, slower than fp32 without AMX and less exact. The fp32 path enters no autocast
context at all, so its numbers are exactly those of a loop without this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

RESOLVED_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
# The resolved precision as a number, for the metrics a job reports (metrics are floats; the driver turns it
# back into the ``precision`` tag with :func:`precision_name`).
PRECISION_IDS: dict[str, float] = {"fp32": 0.0, "bf16": 1.0, "fp16": 2.0}
PRECISION_METRIC = "precision_id"
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device) -> str:
    """``"auto"`` → ``"bf16"`` on a bf16-capable CUDA device, else ``"fp32"``; other names pass through.

    Raises:
        ValueError: an unknown name.
    """
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name not in RESOLVED_PRECISIONS:
        raise ValueError(f"precision must be one of {('auto', *RESOLVED_PRECISIONS)}, got {name!r}")
    return name


def precision_name(metrics: dict[str, Any]) -> str | None:
    """The resolved precision recorded in a job's metrics (:data:`PRECISION_METRIC`), or None if absent."""
    value = metrics.get(PRECISION_METRIC)
    return next((k for k, v in PRECISION_IDS.items() if value == v), None)


@dataclass
class Precision:
    """How one training job runs its forward passes; build with :meth:`make`.

    Attributes:
        name: the resolved precision, one of :data:`RESOLVED_PRECISIONS`.
        device: the job's device (autocast's ``device_type``).
        scaler: the loss scaler, fp16 only.
    """

    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def make(cls, requested: str, device: torch.device) -> Precision:
        """The resolved precision for ``device`` (:func:`resolve_precision`), with a grad scaler for fp16 only."""
        name = resolve_precision(requested, device)
        scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
        return cls(name=name, device=device, scaler=scaler)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None for fp32 (no autocast)."""
        return _DTYPES.get(self.name)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for a forward pass: autocast to :attr:`dtype`, or nothing at all for fp32."""
        dtype = self.dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, on the scaled loss under fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()  # type: ignore[no-untyped-call]

    def step(self, opt: torch.optim.Optimizer, clip: Callable[[], None]) -> None:
        """Clip the gradients and step the optimizer.

        Under fp16 the gradients are unscaled before ``clip`` and the step is skipped when they overflowed (the
        scaler then lowers its scale).
        """
        if self.scaler is None:
            clip()
            opt.step()
            return
        self.scaler.unscale_(opt)
        clip()
        self.scaler.step(opt)
        self.scaler.update()

    def metrics(self) -> dict[str, float]:
        """``{"precision_id": …}`` for the job's reported metrics."""
        return {PRECISION_METRIC: PRECISION_IDS[self.name]}

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state for a checkpoint (None unless fp16)."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore the fp16 loss scale from a checkpoint, so a resumed run keeps scaling where it stopped."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
