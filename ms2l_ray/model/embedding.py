"""A self-contained embedding module for serving: the encoder plus the paper's masked mean pooling."""

from __future__ import annotations

import torch
from torch import nn

from ms2l_ray.model.encoder import mask_mean_pool


class EncoderEmbedding(nn.Module):
    """``forward(x [N, T, F], lengths [N]) -> [N, hidden]`` pooled features (what linear evaluation sees)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled clip embeddings ``[N, H]`` of a ``[N, T, F]`` batch (what the linear probe and KNN read)."""
        return mask_mean_pool(self.encoder(x, lengths), lengths)
