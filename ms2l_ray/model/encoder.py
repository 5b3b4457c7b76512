"""The MS²L encoder: a (bidirectional) GRU over the frames of each valid clip, plus masked mean pooling.

Reference ``model.py`` ``Encoder`` / ``mask_mean`` (paper §3.1). The reference runs its BiGRU over all ``T``
padded frames; here the batch is packed with ``pack_padded_sequence`` so the GRU runs over valid frames only.
That saves the compute spent on padding (NTU clips average ~90 of 300 frames) and makes the features
independent of the padded length: in the reference the *backward* direction reads ``T − len`` zero frames
before the clip, so its features changed with ``T`` (not at init: with the reference's zero biases a GRU
fed zeros from a zero state stays at zero, but as soon as the biases train). ``pack=False`` restores the
reference behaviour.
"""

from __future__ import annotations

import torch
from torch import nn

from ms2l_ray.losses.motion import mask_padding


def init_weights(module: nn.Module) -> None:
    """The reference ``init_weights``: Linear xavier-normal / bias 0; GRU ``weight_ih`` xavier-uniform,
    ``weight_hh`` orthogonal, biases 0.

    As in the reference the GRU initialisers act on each *whole* stacked matrix (``[3·H, in]`` and
    ``[3·H, H]`` with the r, z, n gates stacked), not per gate block. Use with ``module.apply``.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.GRU):
        for name, param in module.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                nn.init.orthogonal_(param)
            elif name.startswith("bias"):
                nn.init.zeros_(param)


def run_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, pack: bool = True) -> torch.Tensor:
    """Run a batch-first GRU over each clip's valid frames; output is zero at ``t >= len``.

    ``pack=True`` packs the batch (``enforce_sorted=False``; the lengths go to the CPU as packing requires),
    so no step is computed for padding. ``pack=False`` runs over all ``T`` frames and zeroes afterwards.

    Shape:
        x: ``[N, T, F]``. lengths: ``[N]``. output: ``[N, T, D·H]``.
    """
    if not pack:
        out, _ = gru(x)  # [N, T, D*H]
        return mask_padding(out, lengths)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # [N, T, D*H]
    return padded


def mask_mean_pool(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames, the reference ``mask_mean``: zero ``t >= len``, sum over time, ``/ (len + 0.01)``.

    The ``+ 0.01`` is a reference quirk (a division guard for ``len = 0``, which the contract excludes); it
    shrinks features by ``len / (len + 0.01)``, under 0.03 % at NTU lengths. Kept for comparability.

    Shape:
        h: ``[N, T, D]``. lengths: ``[N]``. output: ``[N, D]``.
    """
    summed = mask_padding(h, lengths).sum(dim=1)  # [N, D]
    return summed / (lengths.to(device=h.device, dtype=h.dtype).unsqueeze(1) + 0.01)  # [N, D]


class GRUEncoder(nn.Module):
    """Per-frame features of each clip from a stacked (Bi)GRU (reference ``Encoder``).

    Args:
        num_features: ``F`` per frame (150 for NTU's 2 × 25 × 3).
        hidden_size: output width; split as ``hidden_size // 2`` units per direction when bidirectional.
        num_layers: stacked GRU layers.
        bidirectional: BiGRU as the reference.
        dropout: between GRU layers (the reference uses none).
        pack: skip padding with ``pack_padded_sequence`` (default) or run over all ``T`` frames (reference).
    """

    def __init__(self, num_features: int, hidden_size: int = 600, num_layers: int = 2, bidirectional: bool = True,
                 dropout: float = 0.0, pack: bool = True) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if hidden_size < 1 or (bidirectional and hidden_size % 2):
            raise ValueError(f"hidden_size must be >= 1 (and even when bidirectional), got {hidden_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_features = num_features
        self.hidden_size = hidden_size
        self.pack = pack
        self.gru = nn.GRU(num_features, hidden_size // 2 if bidirectional else hidden_size, num_layers=num_layers,
                          batch_first=True, bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-frame features, zero at ``t >= len``.

        Shape:
            x: ``[N, T, F]``. lengths: ``[N]`` int64 in ``1..T``. output: ``[N, T, hidden_size]``.
        """
        if x.dim() != 3 or x.shape[2] != self.num_features:
            raise ValueError(f"x must be [N, T, {self.num_features}], got shape {tuple(x.shape)}")
        return run_gru(self.gru, x, lengths, self.pack)
