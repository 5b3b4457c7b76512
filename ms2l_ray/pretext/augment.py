"""Temporal augmentations of MS²L: the masked view (motion prediction) and the jigsaw view.

Both are pure functions of ``(x, lengths)`` plus an explicit ``torch.Generator``: they return new tensors,
never write into their inputs (the reference ``TemporalJigsaw`` wrote into the caller's length tensor), and
are vectorised over the batch. ``x`` follows :mod:`ms2l_ray.contract`: ``[N, T, F]`` zero-padded after
``lengths``. Neither augmentation looks inside ``F``, so the (M, V, C) flattening order does not matter here.

:func:`reference_jigsaw_loop` is a deliberately per-sample Python loop written the way the reference code
works; it is the test oracle of :func:`temporal_jigsaw` and the baseline of ``benchmarks/``.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch

from ms2l_ray.config import JIGSAW_SHORT_POLICIES

ShortPolicy = Literal["reference", "identity"]


def permutation_table(seg_num: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The jigsaw label table: row ``k`` is the ``k``-th of ``itertools.permutations(range(seg_num))``.

    Natural (lexicographic) order as in the reference ``TemporalJigsaw``, so label 0 is the identity.

    Shape:
        output: ``[seg_num!, seg_num]`` int64.
    """
    if seg_num < 1:
        raise ValueError(f"seg_num must be >= 1, got {seg_num}")
    perms = list(itertools.permutations(range(seg_num)))
    return torch.tensor(perms, dtype=torch.long, device=device).reshape(len(perms), seg_num)  # [S!, S]


def kept_frames(lengths: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """How many leading frames :func:`temporal_mask` keeps: ``ceil(len · (1 − mask_ratio))``, in float32.

    The reference (``TemporalMask``) keeps ``t < len · (1 − mask_ratio)`` with the product taken in float32
    (int64 tensor × Python float). For integer ``t`` that is ``t < ceil(len · (1 − r))`` — a *ceil*, not a
    floor: ``len = 11, r = 0.3`` keeps 8 frames (``t = 0..7``). At least one frame is always kept.

    Shape:
        lengths: ``[N]`` int64. output: ``[N]`` int64.
    """
    bound = lengths * (1.0 - mask_ratio)  # [N] float32, same ops as the reference
    return torch.ceil(bound).long()


def temporal_mask(x: torch.Tensor, lengths: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """Zero every frame from ``len · (1 − mask_ratio)`` on: the input of motion prediction (paper §3.2).

    Frame ``t`` of sample ``n`` survives iff ``t < lengths[n] · (1 − mask_ratio)`` (the reference's exact
    comparison, float32 product; see :func:`kept_frames`). Padding is zero already and stays zero.

    Args:
        x: ``[N, T, F]`` batch (not modified).
        lengths: ``[N]`` int64 valid lengths.
        mask_ratio: fraction of each valid length to hide, in ``[0, 1)``.

    Returns:
        A new ``[N, T, F]`` tensor.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    bound = lengths.to(x.device) * (1.0 - mask_ratio)  # [N] float32
    t = torch.arange(x.shape[1], device=x.device)  # [T]
    keep = t.unsqueeze(0) < bound.unsqueeze(1)  # [N, T]
    return x * keep.unsqueeze(-1).to(x.dtype)  # [N, T, F]


def draw_jigsaw_labels(n: int, seg_num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` labels uniform over ``0..seg_num! − 1``, drawn on the generator's device (CPU for a CPU generator).

    The reference drew with Python's ``random`` (not seedable through torch); this uses ``torch.randint``.

    Shape:
        output: ``[n]`` int64.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, math.factorial(seg_num), (n,), generator=generator, device=device)


def _check_jigsaw_args(x: torch.Tensor, lengths: torch.Tensor, seg_num: int, short: str,
                       labels: torch.Tensor | None) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be [N, T, F], got shape {tuple(x.shape)}")
    if seg_num < 2:
        raise ValueError(f"seg_num must be >= 2, got {seg_num}")
    if short not in JIGSAW_SHORT_POLICIES:
        raise ValueError(f"short must be one of {list(JIGSAW_SHORT_POLICIES)}, got {short!r}")
    if lengths.shape != (x.shape[0],):
        raise ValueError(f"lengths must be [N] = [{x.shape[0]}], got shape {tuple(lengths.shape)}")
    if labels is not None:
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels must be [N] = [{x.shape[0]}], got shape {tuple(labels.shape)}")
        k = math.factorial(seg_num)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise ValueError(f"labels must lie in 0..{k - 1} for seg_num={seg_num}, got {labels.tolist()}")


def _segment_lengths(lengths: torch.Tensor, seg_num: int, max_frames: int, short: str) -> torch.Tensor:
    """Per-sample segment length ``L``; for ``len < seg_num`` the short policy decides (see temporal_jigsaw)."""
    seg_len = lengths // seg_num  # [N]
    if short == "reference":
        # Reference: `if length == 0: frame[i] = max_frame` — cut the whole padded clip instead.
        seg_len = torch.where(seg_len == 0, torch.full_like(seg_len, max_frames // seg_num), seg_len)
    return seg_len


def temporal_jigsaw(x: torch.Tensor, lengths: torch.Tensor, seg_num: int, generator: torch.Generator | None = None,
                    *, labels: torch.Tensor | None = None,
                    short: ShortPolicy = "reference") -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each valid clip into ``seg_num`` equal segments and reorder them (temporal jigsaw, paper §3.3).

    Per sample, ``L = len // seg_num``; the first ``seg_num · L`` frames form segments ``0..seg_num−1`` of
    ``L`` frames; frames ``t >= seg_num · L`` (the remainder and the padding) stay where they are. With
    permutation ``perm = permutation_table(seg_num)[y]``, **output segment ``k`` holds input segment
    ``perm[k]``**, i.e. ``x_j[n, k·L + i] = x[n, perm[k]·L + i]`` (the reference's
    ``shuffle_segments.extend(segments[perm])`` order).

    Samples with ``len < seg_num`` (``L = 0``) follow ``short``:

    * ``"reference"`` (default): as the reference, cut the whole padded clip, ``L = T // seg_num``, so valid
      frames may move into the padding. The reference did this by overwriting the caller's length with
      ``T``; here ``lengths`` is never modified, so the caller keeps pooling over the true length.
    * ``"identity"``: leave the sample unpermuted and give it label 0 (the identity permutation, which is
      the only truthful label when there is nothing to shuffle).

    Implementation: one gather index ``[N, T]`` built from the per-sample permutation and ``L``, then a
    single row gather of whole frames (``index_select`` on ``[N·T, F]``); no per-sample Python loop.

    Args:
        x: ``[N, T, F]`` batch (not modified).
        lengths: ``[N]`` int64 valid lengths (not modified).
        seg_num: number of segments (``seg_num!`` classes).
        generator: CPU ``torch.Generator`` that draws the labels (``None``: torch's default generator).
            Ignored when ``labels`` is given.
        labels: optional ``[N]`` labels to apply instead of drawing them (tests, oracles, benchmarks).
        short: policy for ``len < seg_num``, see above.

    Returns:
        ``(x_j, y_j)``: the new ``[N, T, F]`` view and ``[N]`` int64 labels on ``x.device`` indexing
        :func:`permutation_table`.
    """
    _check_jigsaw_args(x, lengths, seg_num, short, labels)
    n, t_max, f = x.shape
    if labels is None:
        labels = draw_jigsaw_labels(n, seg_num, generator)
    labels = labels.to(device=x.device, dtype=torch.long)
    lengths = lengths.to(x.device)
    seg_len = _segment_lengths(lengths, seg_num, t_max, short)  # [N]
    if short == "identity":
        labels = torch.where(seg_len == 0, torch.zeros_like(labels), labels)
    perm = permutation_table(seg_num, device=x.device)[labels]  # [N, S]
    t = torch.arange(t_max, device=x.device).unsqueeze(0)  # [1, T]
    safe_len = seg_len.clamp(min=1).unsqueeze(1)  # [N, 1]; L = 0 rows are never inside a segment
    seg_idx = (t // safe_len).clamp(max=seg_num - 1)  # [N, T] segment of each output frame
    src = torch.gather(perm, 1, seg_idx) * safe_len + t % safe_len  # [N, T] source frame inside the segments
    inside = t < seg_num * seg_len.unsqueeze(1)  # [N, T]
    index = torch.where(inside, src, t.expand(n, t_max))  # [N, T] source frame of each output frame
    # Gather whole frames: a row gather on [N·T, F] with an [N·T] index copies contiguous F-vectors and is
    # ~1.6× faster on CPU than torch.gather along dim 1 with an index expanded to [N, T, F].
    rows = (index + t_max * torch.arange(n, device=x.device).unsqueeze(1)).reshape(n * t_max)  # [N*T]
    x_j = x.reshape(n * t_max, f).index_select(0, rows).reshape(n, t_max, f)  # [N*T, F] -> [N, T, F]
    return x_j, labels


def reference_jigsaw_loop(x: torch.Tensor, lengths: torch.Tensor, seg_num: int,
                          generator: torch.Generator | None = None, *, labels: torch.Tensor | None = None,
                          short: ShortPolicy = "reference") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`temporal_jigsaw` as a per-sample Python loop, the way the reference ``TemporalJigsaw`` works.

    Kept as the test oracle and the benchmark baseline, not for training. It builds Python lists of segment
    frame indices per sample (``range(0, len, L)`` chunks, of which only the first ``seg_num`` are
    permuted), copies sample by sample, and draws labels exactly like :func:`temporal_jigsaw` so both give
    identical output for the same generator state. Unlike the reference it does not write into ``lengths``.

    Returns:
        ``(x_j [N, T, F], y_j [N])`` as :func:`temporal_jigsaw`.
    """
    _check_jigsaw_args(x, lengths, seg_num, short, labels)
    n, t_max, _ = x.shape
    if labels is None:
        labels = draw_jigsaw_labels(n, seg_num, generator)
    perms = list(itertools.permutations(range(seg_num)))
    out = torch.zeros_like(x)
    out_labels: list[int] = []
    for i in range(n):
        frame = int(lengths[i])
        label = int(labels[i])
        length = frame // seg_num
        if length == 0:
            if short == "identity":
                out[i] = x[i]
                out_labels.append(0)
                continue
            frame = t_max  # the reference wrote this into the caller's tensor; we keep it local
            length = frame // seg_num
        frames = list(range(frame))
        segments = [frames[b:b + length] for b in range(0, len(frames), length)]
        shuffled: list[int] = []
        for p in perms[label]:
            shuffled.extend(segments[p])
        order = list(range(t_max))
        order[:len(shuffled)] = shuffled
        out[i] = x[i, order]
        out_labels.append(label)
    return out, torch.tensor(out_labels, dtype=torch.long, device=x.device)
