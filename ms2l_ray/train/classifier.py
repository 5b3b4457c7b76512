"""The classification model used by the evaluation strategies (paper §4.3).

One forward for every strategy, so DDP sees a single module: the encoder's pooled features go to a
linear classifier; in joint training the self-supervised MS²L losses are computed in the same forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ms2l_ray.model.encoder import mask_mean_pool
from ms2l_ray.model.ms2l import MS2L, PretrainOutput


@dataclass
class ClassifierOutput:
    """The classification logits and, under joint training, the MS²L pretext output of the same forward."""

    logits: torch.Tensor  # [N, K]
    ssl: PretrainOutput | None  # self-supervised losses (joint strategies only)


class ClassifierModel(nn.Module):
    """Encoder → masked mean pool → linear classifier, optionally plus the MS²L pretext losses.

    Args:
        ms2l: the (pretrained or fresh) MS²L model whose encoder is used.
        classifier: ``Linear(hidden, num_classes)``.
        joint: also compute the self-supervised losses (joint / pretrain-then-joint training); when
            False only the encoder is registered, so DDP sees no unused head parameters.
    """

    def __init__(self, ms2l: MS2L, classifier: nn.Module, joint: bool) -> None:
        super().__init__()
        self.joint = joint
        if joint:
            self.ms2l = ms2l
        else:
            self.encoder = ms2l.encoder
        self.classifier = classifier

    def _encoder(self) -> nn.Module:
        return self.ms2l.encoder if self.joint else self.encoder

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> ClassifierOutput:
        """Logits of the pooled clip features; the pretext losses too when ``joint`` (``generator``: jigsaw)."""
        h = self._encoder()(x, lengths)  # [N, T, H]
        logits = self.classifier(mask_mean_pool(h, lengths))  # [N, K]
        ssl = self.ms2l(x, lengths, generator) if self.joint else None
        return ClassifierOutput(logits=logits, ssl=ssl)
