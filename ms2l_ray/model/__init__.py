"""Encoder, heads and the MS²L pretraining model (paper §3)."""

from ms2l_ray.model.encoder import GRUEncoder, init_weights, mask_mean_pool, run_gru
from ms2l_ray.model.heads import JigsawHead, LinearClassifier, MLPHead, MotionDecoder, Projector
from ms2l_ray.model.ms2l import MS2L, PretrainOutput, build_ms2l

__all__ = [
    "MS2L",
    "GRUEncoder",
    "JigsawHead",
    "LinearClassifier",
    "MLPHead",
    "MotionDecoder",
    "PretrainOutput",
    "Projector",
    "build_ms2l",
    "init_weights",
    "mask_mean_pool",
    "run_gru",
]
