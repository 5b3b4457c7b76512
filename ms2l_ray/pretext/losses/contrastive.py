"""Multi-view contrastive loss (paper §3.4) exactly as the reference ``contrastive_loss`` / ``contra_batch``.

Each view ``v`` (original, masked, jigsaw) is contrasted against the mean projection ``z̄`` of all views.
With ``X = normalize(z_v)`` and ``Y = normalize(z̄)`` (row-wise L2) the ``2N × 2N`` logit matrix is::

    S = [[X·Yᵀ, X·Xᵀ],
         [Y·Yᵀ, Y·Xᵀ]] / τ        with diag(X·Xᵀ) = diag(Y·Yᵀ) = −1 before dividing by τ

and the target of row ``r`` is column ``r``. Because of this block layout the target of a row ``i < N`` is
``X_i·Y_i`` (top-left block) and the target of row ``N + i`` is ``Y_i·X_i`` (bottom-right block): both
halves pick the same sample in the other view, and the same-view negatives of row ``i`` sit in the
off-diagonal blocks. The self-similarities are replaced by −1 (not −inf), i.e. they stay in the softmax
as the least similar possible pair. Accuracy = fraction of the ``2N`` rows whose argmax is the target.
The loss over views is the mean of the per-view losses; ``z̄`` is not detached (gradient flows into it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def contrastive_logits(z: torch.Tensor, z_mean: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reference's ``2N × 2N`` logit matrix ``S`` (see module docstring).

    Shape:
        z, z_mean: ``[N, D]``. output: ``[2N, 2N]``.
    """
    if z.dim() != 2 or z.shape != z_mean.shape:
        raise ValueError(f"z and z_mean must both be [N, D], got {tuple(z.shape)} and {tuple(z_mean.shape)}")
    x = nn.functional.normalize(z, dim=1)  # [N, D]
    y = nn.functional.normalize(z_mean, dim=1)  # [N, D]
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)  # [N, N]
    s12 = x @ y.t()  # [N, N]
    s11 = (x @ x.t()).masked_fill(eye, -1.0)  # [N, N]
    s22 = (y @ y.t()).masked_fill(eye, -1.0)  # [N, N]
    top = torch.cat([s12, s11], dim=1)  # [N, 2N]
    bottom = torch.cat([s22, s12.t()], dim=1)  # [N, 2N]
    return torch.cat([top, bottom], dim=0) / temperature  # [2N, 2N]


def contrastive_view_loss(z: torch.Tensor, z_mean: torch.Tensor,
                          temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy of one view against the mean projection.

    Returns:
        ``(loss, accuracy)``: mean cross-entropy over the ``2N`` rows with target ``r`` for row ``r``, and
        the fraction of rows whose argmax is the target (no gradient).
    """
    s = contrastive_logits(z, z_mean, temperature)  # [2N, 2N]
    target = torch.arange(s.shape[0], device=s.device)  # [2N]
    loss = nn.functional.cross_entropy(s, target)
    acc = (s.detach().argmax(dim=1) == target).float().mean()
    return loss, acc


def contrastive_loss(views: Sequence[torch.Tensor], temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over views of :func:`contrastive_view_loss` against ``z̄ = mean(views)``.

    Args:
        views: ``V >= 1`` projections, each ``[N, D]`` (the reference uses V = 3).
        temperature: ``τ > 0``.

    Returns:
        ``(loss, accuracy)``, both means over the views.
    """
    if len(views) == 0:
        raise ValueError("contrastive_loss needs at least one view, got none")
    shapes = {tuple(v.shape) for v in views}
    if len(shapes) != 1:
        raise ValueError(f"all views must have the same [N, D] shape, got {sorted(shapes)}")
    z_mean = torch.stack(list(views)).mean(dim=0)  # [N, D]
    pairs = [contrastive_view_loss(z, z_mean, temperature) for z in views]
    loss = torch.stack([p[0] for p in pairs]).mean()
    acc = torch.stack([p[1] for p in pairs]).mean()
    return loss, acc


class ContrastiveLoss(nn.Module):
    """Module wrapper of :func:`contrastive_loss`.

    Args:
        temperature: ``τ``, finite and ``> 0`` (reference 0.9).
    """

    def __init__(self, temperature: float = 0.9) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, views: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss, accuracy)`` over the given view projections (each ``[N, D]``)."""
        return contrastive_loss(views, self.temperature)
