"""Heads on top of the encoder: motion decoder, MLP heads (jigsaw, projector) and the linear classifier.

Widths and init follow the reference ``model.py`` (paper §3.2–3.4, §4.3).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ms2l_ray.model.encoder import DEFAULT_IMPL, GRUImpl, check_impl, init_weights, run_gru
from ms2l_ray.pretext.losses.motion import mask_padding


class MotionDecoder(nn.Module):
    """Motion prediction head: the reference ``Decoder`` of MS²L (arXiv:2010.05599 §3.2).

    A unidirectional GRU over the masked view's per-frame features, then a Linear back to ``F``. The prediction
    is zero at ``t >= len``.

    Being unidirectional, the GRU's outputs at valid frames are the same whether it skips padding or not; by
    default (``impl="reversed"``, named as the encoder's) it runs unpacked over the batch cut to its longest
    clip, which on CPU is faster than packing: a packed backward rebuilds a full-size input gradient at every
    step (``SliceBackward``), see :mod:`ms2l_ray.model.encoder`. ``"packed"`` and ``"padded"`` (all ``T``
    frames, the reference) give the same valid outputs. Init is PyTorch's default: the reference never
    applies ``init_weights`` to its decoder, and we keep that.

    Args:
        hidden_size: encoder width, also the decoder GRU width (reference: both 600).
        num_features: ``F`` to predict.
        num_layers: decoder GRU layers.
        impl: :func:`~ms2l_ray.model.encoder.run_gru` implementation; parameters are the same in all.
    """

    def __init__(self, hidden_size: int, num_features: int, num_layers: int = 2,
                 impl: GRUImpl = DEFAULT_IMPL) -> None:
        super().__init__()
        if hidden_size < 1 or num_features < 1 or num_layers < 1:
            raise ValueError(f"hidden_size, num_features and num_layers must be >= 1, got "
                             f"{hidden_size}, {num_features}, {num_layers}")
        self.impl: GRUImpl = check_impl(impl)
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, num_features)

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Shape: h ``[N, T, hidden]``, lengths ``[N]`` → ``[N, T, F]`` (zero at ``t >= len``)."""
        out = run_gru(self.gru, h, lengths, self.impl)  # [N, T, hidden], zero at padding
        return mask_padding(self.out(out), lengths)  # [N, T, F]; the Linear bias would leak into padding


class MLPHead(nn.Module):
    """``Linear – BatchNorm1d – ReLU – Linear``: the reference ``Projector``.

    Used for the jigsaw head and the contrastive projector. Linear layers use the reference init (xavier-normal,
    bias 0), BN the default.

    Args:
        in_features: input width (encoder ``hidden_size``).
        hidden_features: middle width (reference 2048).
        out_features: output width (``seg_num!`` for the jigsaw head, ``proj_dim`` for the projector).

    Shape:
        input ``[N, in_features]`` (``N >= 2`` in training, BatchNorm) → ``[N, out_features]``.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        if min(in_features, hidden_features, out_features) < 1:
            raise ValueError(f"widths must be >= 1, got {in_features}, {hidden_features}, {out_features}")
        self.in_features = in_features
        self.out_features = out_features
        self.net = nn.Sequential(nn.Linear(in_features, hidden_features), nn.BatchNorm1d(hidden_features),
                                 nn.ReLU(inplace=True), nn.Linear(hidden_features, out_features))
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_features]`` → ``[N, out_features]``."""
        return self.net(x)  # type: ignore[no-any-return]


def JigsawHead(in_features: int, hidden_features: int, seg_num: int) -> MLPHead:  # noqa: N802 - a named factory
    """The jigsaw classifier: :class:`MLPHead` with ``seg_num!`` outputs (paper §3.3)."""
    if seg_num < 2:
        raise ValueError(f"seg_num must be >= 2, got {seg_num}")
    return MLPHead(in_features, hidden_features, math.factorial(seg_num))


def Projector(in_features: int, hidden_features: int, proj_dim: int) -> MLPHead:  # noqa: N802 - a named factory
    """The contrastive projector: :class:`MLPHead` with ``proj_dim`` outputs (paper §3.4)."""
    return MLPHead(in_features, hidden_features, proj_dim)


class LinearClassifier(nn.Module):
    """Action classifier on pooled features for linear evaluation / fine-tuning (reference ``Linear``).

    Shape:
        input ``[N, hidden_size]`` → logits ``[N, num_classes]``.
    """

    def __init__(self, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        if hidden_size < 1 or num_classes < 2:
            raise ValueError(f"need hidden_size >= 1 and num_classes >= 2, got {hidden_size}, {num_classes}")
        self.fc = nn.Linear(hidden_size, num_classes)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of pooled features ``[N, hidden_size]``."""
        return self.fc(x)  # type: ignore[no-any-return]
