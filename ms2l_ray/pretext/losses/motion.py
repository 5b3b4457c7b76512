"""Motion-prediction loss (paper §3.2): reconstruct the original clip from the temporally masked view.

As the reference ``motion_batch``: the decoder's prediction is zeroed at ``t >= len`` and compared with the
*original* ``x`` by a plain MSE averaged over all ``N·T·F`` elements. Padding contributes zero error (both
sides are zero there) but still counts in the denominator, so the value depends on ``T`` — kept for
comparability with the reference numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from ms2l_ray.contract import valid_mask


def mask_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero ``x`` at ``t >= lengths[n]`` (the reference ``mask_empty_frame``); returns a new tensor.

    Shape:
        x: ``[N, T, D]``. lengths: ``[N]``. output: ``[N, T, D]``.
    """
    mask = valid_mask(lengths.to(x.device), x.shape[1])  # [N, T]
    return x * mask.unsqueeze(-1).to(x.dtype)  # [N, T, D]


def motion_loss(prediction: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Masked MSE: ``mean over N·T·F of (pred·valid − target)²``.

    Args:
        prediction: ``[N, T, F]`` decoder output; zeroed here at ``t >= len`` (idempotent if already zero).
        target: ``[N, T, F]`` the original, unmasked batch (zero-padded per the contract).
        lengths: ``[N]`` valid lengths.

    Returns:
        Scalar tensor.
    """
    if prediction.shape != target.shape or prediction.dim() != 3:
        raise ValueError(f"prediction and target must both be [N, T, F], got {tuple(prediction.shape)} "
                         f"and {tuple(target.shape)}")
    if lengths.shape != (prediction.shape[0],):
        raise ValueError(f"lengths must be [N] = [{prediction.shape[0]}], got shape {tuple(lengths.shape)}")
    return nn.functional.mse_loss(mask_padding(prediction, lengths), target)


class MotionLoss(nn.Module):
    """Module wrapper of :func:`motion_loss` (no hyperparameters)."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """:func:`motion_loss` of the batch."""
        return motion_loss(prediction, target, lengths)
