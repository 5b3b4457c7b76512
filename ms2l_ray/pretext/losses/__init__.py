"""The three MS²L self-supervised losses, one per module (paper §3.2–3.4)."""

from ms2l_ray.pretext.losses.contrastive import (
    ContrastiveLoss,
    contrastive_logits,
    contrastive_loss,
    contrastive_view_loss,
)
from ms2l_ray.pretext.losses.jigsaw import JigsawLoss, jigsaw_accuracy, jigsaw_loss
from ms2l_ray.pretext.losses.motion import MotionLoss, mask_padding, motion_loss

__all__ = [
    "ContrastiveLoss",
    "JigsawLoss",
    "MotionLoss",
    "contrastive_logits",
    "contrastive_loss",
    "contrastive_view_loss",
    "jigsaw_accuracy",
    "jigsaw_loss",
    "mask_padding",
    "motion_loss",
]
