"""The MS²L encoder: a (bidirectional) GRU over the frames of each valid clip, plus masked mean pooling.

Reference ``model.py`` ``Encoder`` / ``mask_mean`` (paper §3.1). The reference runs its BiGRU over all ``T``
padded frames; here the GRU runs over each clip's valid frames only. That saves the compute spent on padding
(NTU clips average ~90 of 300 frames) and makes the features independent of the padded length: in the
reference the *backward* direction reads ``T − len`` zero frames before the clip, so its features changed
with ``T``. That holds from initialisation on for any stack of more than one layer: with the reference's zero
biases a *first-layer* GRU fed zeros from a zero state stays at zero, but the first layer's forward direction
carries its state past each clip's end, so its outputs over the padding are non-zero and the second layer's
backward direction reads them before the clip (measured at init, 2-layer BiGRU: pooled features differ by
about 5 % between ``"padded"`` and ``"reversed"``; ``tests/core/test_model.py`` pins it). ``impl="padded"``
restores the reference behaviour; the config field ``model.encoder_impl`` selects it.

Two implementations skip padding (:func:`run_gru`). They give the same outputs at valid frames and the same
gradients (to float rounding) from the same parameters, one ``nn.GRU``, so checkpoints load into either:

* ``"packed"``: ``pack_padded_sequence``. On CPU its backward is slow: the packed GRU slices its input at
  every time step, and when that input requires grad (layer 2, the decoder) each ``SliceBackward`` builds a
  full-size zero gradient to add into (~45 % of the backward time).
* ``"reversed"`` (the default): unpacked over the batch cut to its longest clip. Padding is at the end, so
  the forward direction's valid outputs are exact; the backward direction runs forward over the input
  reversed *within each clip's length*, then is un-reversed. It computes ``N · max(len)`` steps rather than
  ``Σ len``, but as whole-batch products on dense tensors, which is what CPU kernels do well.

Chosen by measurement: fwd+bwd (``out.sum().backward()``) on CPU, torch 2.13, ``torch.set_num_threads(2)``
on 2 cores, min of 3–5 interleaved runs; NTU-like lengths ``clip(normal(90, 35), 20, T)``; the encoder batch
``N`` is 3 views × the training batch:

====================  ======  =========  ========  ========  ===================
module                hidden  T, N       packed    reversed  padded (reference)
====================  ======  =========  ========  ========  ===================
encoder (2 × BiGRU)   128     64, 384    714 ms    255 ms    249 ms
encoder               128     300, 384   3897 ms   961 ms    4074 ms
encoder               256     150, 192   2004 ms   759 ms    988 ms
encoder               600     64, 192    3329 ms   909 ms    861 ms
encoder               600     300, 192   7398 ms   2220 ms   27621 ms
decoder (2 × GRU)     128     64, 128    258 ms    100 ms    97 ms
decoder               600     300, 64    2380 ms   1237 ms   2423 ms
====================  ======  =========  ========  ========  ===================

``"reversed"`` is 1.9–4× faster than ``"packed"`` everywhere (2.4–5.3× with one thread), as fast as
``"padded"`` when clips fill ``T`` (``T = 64``) and much faster when they do not: it skips the padding
steps, and ``"padded"`` at ``T = 300`` also runs into subnormal floats as its hidden states decay through
long runs of zero input (6 % of its outputs; ``torch.set_flush_denormal(True)`` halved its time). A whole
MS²L training step (``benchmarks/pretrain_throughput.py``: 3 views, 3 losses, backward, clipping, Adam) went
from 824 to 379 ms (2.2×) at the ``small`` preset (hidden 128, T = 64, batch 128) and from 15.5 to 4.1 s
(3.7×) at the reference sizes (hidden 600, T = 300, batch 64). On a GPU (H200, cuDNN, encoder fwd+bwd)
``"reversed"`` also beats ``"packed"`` (36 vs 49 ms at hidden 600, T = 300, N = 192; 7 vs 21 ms at hidden
128, T = 64, N = 384), but ``"padded"``, one fused cuDNN call per layer, is fastest there (35 and 3 ms), at
the price of its padding-dependent backward direction.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch import nn

from ms2l_ray.contract import valid_mask
from ms2l_ray.pretext.losses.motion import mask_padding


def init_weights(module: nn.Module) -> None:
    """The reference ``init_weights`` for Linear and GRU modules.

    Linear: xavier-normal, bias 0; GRU: ``weight_ih`` xavier-uniform, ``weight_hh`` orthogonal, biases 0.

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


# cuDNN warns when an RNN's weights are not one flat buffer in its own layout, and copies them into one. The
# per-(layer, direction) calls of run_gru_direction hand it a slice of nn.GRU's flat buffer, so the copy (one
# layer's weights, cheap next to the GRU) is expected: silence that warning for calls from this module only.
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk",
                        category=UserWarning, module=__name__)

GRUImpl = Literal["packed", "reversed", "padded"]
"""How :func:`run_gru` runs a GRU over a zero-padded batch (see the module docstring)."""

GRU_IMPLS: tuple[GRUImpl, ...] = ("packed", "reversed", "padded")
DEFAULT_IMPL: GRUImpl = "reversed"


def check_impl(impl: GRUImpl) -> GRUImpl:
    """``impl`` itself when it names one of :data:`GRU_IMPLS`, else a ``ValueError`` listing them.

    Checked up front: a typo would otherwise surface only at the first forward.
    """
    if impl not in GRU_IMPLS:
        raise ValueError(f"impl must be one of {GRU_IMPLS}, got {impl!r}")
    return impl


def within_length_reverse_index(lengths: torch.Tensor, max_frames: int) -> torch.Tensor:
    """Time index reversing each sequence within its own length: ``len − 1 − t`` for ``t < len``, ``t`` after.

    The map is an involution (its own inverse), so the same index reverses and un-reverses. Padding stays
    in place, at the end, so a forward-running GRU over the reversed batch reads each clip's valid frames
    first, exactly like the backward direction of a packed BiGRU.

    Shape:
        lengths: ``[N]``. output: ``[N, max_frames]`` int64 on ``lengths.device``.
    """
    t = torch.arange(max_frames, device=lengths.device).unsqueeze(0)  # [1, T]
    last = lengths.to(torch.int64).unsqueeze(1) - 1  # [N, 1]
    return torch.where(t <= last, last - t, t)  # [N, T]


class _PermuteRows(torch.autograd.Function):
    """``x.view(N·T, D)[rows]`` for an *involution* ``rows``, whose gradient is the same row gather.

    Autograd's own backward of a gather or ``index_select`` scatter-adds into a zero tensor; for a
    permutation that is its own inverse one more row gather suffices (measured on CPU, fwd+bwd of a
    ``[384, 64, 150]`` batch: 4.8 ms against 17 ms for ``gather`` and 6.9 ms for ``index_select``).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        return _permute_rows(x, rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (rows,) = ctx.saved_tensors
        return _permute_rows(grad, rows), None


def _permute_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    n, t, d = x.shape
    return x.reshape(n * t, d).index_select(0, rows).view(n, t, d)


def flat_time_index(index: torch.Tensor) -> torch.Tensor:
    """A per-sequence time index ``[N, T]`` as row indices ``n·T + index[n, t]`` of ``x.view(N·T, D)``."""
    n, t = index.shape
    return (index + torch.arange(n, device=index.device).unsqueeze(1) * t).reshape(-1)  # [N*T]


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[n, t] = x[n, index[n, t]]`` for a per-sequence time index that is an involution.

    The index is such as :func:`within_length_reverse_index`; the gather is differentiable, and its own inverse.

    Shape:
        x: ``[N, T, D]``. index: ``[N, T]``, or its :func:`flat_time_index` ``[N·T]``. output: ``[N, T, D]``.
    """
    rows = flat_time_index(index) if index.dim() == 2 else index
    out: torch.Tensor = _PermuteRows.apply(x, rows)
    return out


def gru_layer_weights(gru: nn.GRU, layer: int, reverse: bool) -> tuple[torch.Tensor, ...]:
    """The parameters of one (layer, direction) of ``gru`` in ``torch.gru``'s order.

    The order is ``(w_ih, w_hh[, b_ih, b_hh])``. They are ``gru``'s own parameters (no copy), so gradients land there.
    """
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if gru.bias else [])
    return tuple(getattr(gru, name + suffix) for name in names)


def run_gru_direction(gru: nn.GRU, x: torch.Tensor, layer: int, reverse: bool) -> torch.Tensor:
    """One layer, one direction of ``gru`` run *forward in time* over a batch-first ``x`` from a zero state.

    Shape:
        x: ``[N, T, in]``. output: ``[N, T, gru.hidden_size]``.
    """
    hx = x.new_zeros(1, x.shape[0], gru.hidden_size)  # [1, N, H]
    # train=gru.training as nn.GRU passes it: cuDNN keeps what backward needs only in training mode
    weights = gru_layer_weights(gru, layer, reverse)
    out, _ = torch.gru(x, hx, weights, gru.bias, 1, 0.0, gru.training, False, True)
    return out


def run_gru_reversed(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Unpacked GRU whose outputs at valid frames equal the packed GRU's; zero at ``t >= len``.

    The batch is cut to its longest clip. A forward direction needs nothing more (padding is at the end, so
    it comes after every valid frame). A backward direction runs forward in time over the input reversed
    within each clip's length (:func:`within_length_reverse_index`), and its output is un-reversed with the
    same index. Layers are run one by one, with ``gru``'s own parameters, and nn.GRU's inter-layer dropout
    (training only). Padding is zeroed on the way in, so even non-finite junk there cannot reach the valid
    outputs or the gradients (``0 · inf`` would be NaN). A unidirectional ``gru`` runs in one call.

    Shape:
        x: ``[N, T, F]`` batch-first. lengths: ``[N]`` in ``1..T``. output: ``[N, T, D·H]``.
    """
    frames = x.shape[1]
    lengths = lengths.to(x.device)
    t_max = int(lengths.max())
    if t_max > frames:
        raise ValueError(f"lengths must be <= T = {frames}, got max {t_max}")
    valid = valid_mask(lengths, t_max).unsqueeze(-1)  # [N, t_max, 1]
    h = torch.where(valid, x[:, :t_max], 0.0)  # [N, t_max, F]
    if not gru.bidirectional:
        h, _ = gru(h)  # all layers in one call (dropout included): valid outputs never read padding
    else:
        rev = flat_time_index(within_length_reverse_index(lengths, t_max))  # [N*t_max], built once per batch
        for layer in range(gru.num_layers):
            if layer > 0 and gru.dropout > 0:
                h = nn.functional.dropout(h, gru.dropout, gru.training)
            fwd = run_gru_direction(gru, h, layer, reverse=False)  # [N, t_max, H]
            bwd = gather_time(run_gru_direction(gru, gather_time(h, rev), layer, reverse=True), rev)
            h = torch.cat([fwd, bwd], dim=2)  # [N, t_max, 2H]
    h = torch.where(valid, h, 0.0)  # [N, t_max, D*H]
    return h if t_max == frames else nn.functional.pad(h, (0, 0, 0, frames - t_max))  # [N, T, D*H]


def run_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, impl: GRUImpl = DEFAULT_IMPL) -> torch.Tensor:
    """Run a batch-first GRU over a zero-padded batch; output is zero at ``t >= len``.

    ``impl``:

    * ``"packed"``: ``pack_padded_sequence`` (``enforce_sorted=False``; the lengths go to the CPU as packing
      requires), so no step is computed for padding.
    * ``"reversed"``: :func:`run_gru_reversed`, unpacked over the longest clip; same valid outputs and
      gradients as ``"packed"`` (to float rounding), faster on CPU (see the module docstring).
    * ``"padded"``: the reference: over all ``T`` frames, zeroed afterwards. Its backward direction reads the
      padding before each clip, so its valid outputs differ from the two above once the biases are non-zero.

    Shape:
        x: ``[N, T, F]``. lengths: ``[N]``. output: ``[N, T, D·H]``.
    """
    if not gru.batch_first:
        raise ValueError("run_gru needs a batch_first GRU")
    if impl == "padded":
        out, _ = gru(x)  # [N, T, D*H]
        return mask_padding(out, lengths)
    if impl == "reversed":
        return run_gru_reversed(gru, x, lengths)
    if impl != "packed":
        raise ValueError(f"impl must be one of {GRU_IMPLS}, got {impl!r}")
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
        impl: how the GRU runs over padding (:func:`run_gru`): ``"reversed"`` (default, fastest on CPU),
            ``"packed"`` (same outputs), or ``"padded"`` (the reference). The parameters are one ``nn.GRU``
            (``gru.*``) in every case, so a state_dict of one loads into any other.
    """

    def __init__(self, num_features: int, hidden_size: int = 600, num_layers: int = 2, bidirectional: bool = True,
                 dropout: float = 0.0, impl: GRUImpl = DEFAULT_IMPL) -> None:
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
        self.impl: GRUImpl = check_impl(impl)
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
        return run_gru(self.gru, x, lengths, self.impl)
