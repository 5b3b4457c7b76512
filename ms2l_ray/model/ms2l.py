"""MS²L pretraining model: one encoder shared by three views, and one head per self-supervised task.

Paper §3 / reference ``MS2LProcessor.train_epoch``. The model *receives* its encoder and heads (compose, don't
inherit); :func:`build_ms2l` wires them from the typed config. A task whose weight is 0 gets no head and
its view and compute are skipped entirely:

====================  =========================================
task on               views encoded
====================  =========================================
motion                masked
jigsaw                jigsaw
contrastive           original, masked, jigsaw (all three, as the reference)
====================  =========================================

All views of a batch go through the encoder in **one** call (``[V·N, T, F]``, lengths repeated); with a packed
encoder that costs the same GRU steps as three calls but one launch sequence instead of three.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ms2l_ray.config import ModelConfig, TaskConfig
from ms2l_ray.contract import check_batch
from ms2l_ray.model.encoder import GRUEncoder, GRUImpl, mask_mean_pool
from ms2l_ray.model.heads import JigsawHead, MLPHead, MotionDecoder, Projector
from ms2l_ray.pretext.augment import ShortPolicy, temporal_jigsaw, temporal_mask
from ms2l_ray.pretext.losses.contrastive import ContrastiveLoss
from ms2l_ray.pretext.losses.jigsaw import JigsawLoss
from ms2l_ray.pretext.losses.motion import MotionLoss


def fp32_losses(x: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Autocast switched off for ``x``'s device while a loss is computed.

    The callers pass fp32 inputs, so under mixed precision (:mod:`ms2l_ray.train.precision`) the losses are
    computed in fp32. Outside autocast it is a no-op: the fp32 path is unchanged to the bit (``.float()`` of an
    fp32 tensor is the tensor).
    """
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return contextlib.nullcontext()


@dataclass
class PretrainOutput:
    """One pretraining step's result.

    Attributes:
        loss: weighted total ``Σ w_task · L_task`` over the active tasks (scalar, differentiable).
        metrics: detached scalars, keys among ``motion_loss``, ``jigsaw_loss``, ``jigsaw_acc``,
            ``contrastive_loss``, ``contrastive_acc`` — only those of active tasks.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class MS2L(nn.Module):
    """Multi-task self-supervised model (paper §3): motion prediction + temporal jigsaw + contrastive.

    Args:
        encoder: per-frame encoder ``(x [N, T, F], lengths) -> [N, T, H]`` (:class:`GRUEncoder`).
        motion_decoder: head of motion prediction, or ``None`` to switch the task off.
        jigsaw_head: ``[N, H] -> [N, seg_num!]``, or ``None``.
        projector: ``[N, H] -> [N, D]`` contrastive projector, or ``None``.
        motion_weight, jigsaw_weight, contrastive_weight: loss weights; must be > 0 for a present head.
        mask_ratio: fraction of each clip hidden in the masked view.
        seg_num: jigsaw segments.
        temperature: contrastive ``τ``.
        jigsaw_short: jigsaw policy for clips shorter than ``seg_num`` (see :func:`temporal_jigsaw`).
    """

    def __init__(self, encoder: GRUEncoder, motion_decoder: MotionDecoder | None = None,
                 jigsaw_head: MLPHead | None = None, projector: MLPHead | None = None, *,
                 motion_weight: float = 1.0, jigsaw_weight: float = 1.0, contrastive_weight: float = 1.0,
                 mask_ratio: float = 0.3, seg_num: int = 3, temperature: float = 0.9,
                 jigsaw_short: ShortPolicy = "reference") -> None:
        super().__init__()
        heads = {"motion": (motion_decoder, motion_weight), "jigsaw": (jigsaw_head, jigsaw_weight),
                 "contrastive": (projector, contrastive_weight)}
        for name, (head, weight) in heads.items():
            if head is not None and not weight > 0:
                raise ValueError(f"{name}_weight must be > 0 when the {name} head is given, got {weight}")
        if all(head is None for head, _ in heads.values()):
            raise ValueError("MS2L needs at least one task head (motion_decoder, jigsaw_head or projector)")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if seg_num < 2:
            raise ValueError(f"seg_num must be >= 2, got {seg_num}")
        if jigsaw_head is not None and jigsaw_head.out_features != math.factorial(seg_num):
            raise ValueError(f"jigsaw_head must output seg_num! = {math.factorial(seg_num)} classes, "
                             f"got {jigsaw_head.out_features}")
        self.encoder = encoder
        self.motion_decoder = motion_decoder
        self.jigsaw_head = jigsaw_head
        self.projector = projector
        self.motion_weight = motion_weight
        self.jigsaw_weight = jigsaw_weight
        self.contrastive_weight = contrastive_weight
        self.mask_ratio = mask_ratio
        self.seg_num = seg_num
        self.jigsaw_short: ShortPolicy = jigsaw_short
        self.motion_loss = MotionLoss()
        self.jigsaw_loss = JigsawLoss(seg_num)
        self.contrastive_loss = ContrastiveLoss(temperature) if projector is not None else None

    def view_names(self) -> list[str]:
        """The views this configuration encodes, in encoder-batch order."""
        contrastive = self.projector is not None
        names = ["original"] if contrastive else []
        if contrastive or self.motion_decoder is not None:
            names.append("masked")
        if contrastive or self.jigsaw_head is not None:
            names.append("jigsaw")
        return names

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled clip features for linear evaluation, KNN and export.

        Shape:
            x: ``[N, T, F]``. lengths: ``[N]``. output: ``[N, H]``.
        """
        return mask_mean_pool(self.encoder(x, lengths), lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> PretrainOutput:
        """Build the needed views, encode them in one call and sum the weighted task losses.

        Args:
            x: ``[N, T, F]`` batch per :mod:`ms2l_ray.contract`.
            lengths: ``[N]`` int64 valid lengths.
            generator: CPU generator for the jigsaw labels (``None``: torch's default generator).
        """
        check_batch(x, lengths, self.encoder.num_features)
        lengths = lengths.to(x.device)
        names = self.view_names()
        inputs: list[torch.Tensor] = []
        y_jigsaw: torch.Tensor | None = None
        for name in names:
            if name == "original":
                inputs.append(x)
            elif name == "masked":
                inputs.append(temporal_mask(x, lengths, self.mask_ratio))
            else:
                x_j, y_jigsaw = temporal_jigsaw(x, lengths, self.seg_num, generator, short=self.jigsaw_short)
                inputs.append(x_j)
        v = len(names)
        all_lengths = lengths.repeat(v)  # [V*N]
        h = self.encoder(torch.cat(inputs, dim=0), all_lengths)  # [V*N, T, H]
        pooled = mask_mean_pool(h, all_lengths)  # [V*N, H]
        frames = dict(zip(names, h.chunk(v), strict=True))  # name -> [N, T, H]
        clips = dict(zip(names, pooled.chunk(v), strict=True))  # name -> [N, H]

        total = x.new_zeros(())
        metrics: dict[str, torch.Tensor] = {}
        if self.motion_decoder is not None:
            pred = self.motion_decoder(frames["masked"], lengths)  # [N, T, F]
            with fp32_losses(x):
                loss = self.motion_loss(pred.float(), x, lengths)
            total = total + self.motion_weight * loss
            metrics["motion_loss"] = loss.detach()
        if self.jigsaw_head is not None:
            assert y_jigsaw is not None
            logits = self.jigsaw_head(clips["jigsaw"])  # [N, seg_num!]
            with fp32_losses(x):
                loss, acc = self.jigsaw_loss(logits.float(), y_jigsaw)
            total = total + self.jigsaw_weight * loss
            metrics.update(jigsaw_loss=loss.detach(), jigsaw_acc=acc)
        if self.projector is not None and self.contrastive_loss is not None:
            # One projector call per view, not one on [V*N, H]: BatchNorm statistics stay per view, as in
            # the reference (`contra_head` called three times).
            projections = [self.projector(clips[name]) for name in names]  # V × [N, D]
            with fp32_losses(x):
                loss, acc = self.contrastive_loss([p.float() for p in projections])
            total = total + self.contrastive_weight * loss
            metrics.update(contrastive_loss=loss.detach(), contrastive_acc=acc)
        return PretrainOutput(loss=total, metrics=metrics)


def build_ms2l(model_cfg: ModelConfig, task_cfg: TaskConfig, num_features: int) -> MS2L:
    """Wire encoder and heads from the config; a task with weight 0 gets no head (and no compute)."""
    m, t = model_cfg, task_cfg
    impl = cast(GRUImpl, m.encoder_impl)
    encoder = GRUEncoder(num_features, m.hidden_size, m.num_layers, m.bidirectional, m.dropout, impl=impl)
    decoder = MotionDecoder(m.hidden_size, num_features, m.decoder_layers, impl=impl) if t.motion_weight > 0 else None
    jigsaw = JigsawHead(m.hidden_size, m.head_hidden, t.jigsaw_segments) if t.jigsaw_weight > 0 else None
    projector = Projector(m.hidden_size, m.head_hidden, m.proj_dim) if t.contrastive_weight > 0 else None
    return MS2L(encoder, decoder, jigsaw, projector, motion_weight=t.motion_weight, jigsaw_weight=t.jigsaw_weight,
                contrastive_weight=t.contrastive_weight, mask_ratio=t.mask_ratio, seg_num=t.jigsaw_segments,
                temperature=t.temperature, jigsaw_short=cast(ShortPolicy, t.jigsaw_short))
