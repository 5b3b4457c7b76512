"""Temporal mask and temporal jigsaw: exact frames, labels, purity, seeding, and the loop oracle."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tensor_helpers import padded_batch

from ms2l_ray.contract import valid_mask
from ms2l_ray.pretext.augment import (
    kept_frames,
    permutation_table,
    reference_jigsaw_loop,
    temporal_jigsaw,
    temporal_mask,
)


def indexed_batch(lengths: list[int], t_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x[n, t] = (t + 1, n) at valid frames, zero padding: every frame names its source."""
    lens = torch.tensor(lengths)
    n = len(lengths)
    t = torch.arange(t_max, dtype=torch.float32) + 1
    x = torch.stack([t.expand(n, t_max), torch.arange(n, dtype=torch.float32)[:, None].expand(n, t_max)], -1)
    return x * valid_mask(lens, t_max).unsqueeze(-1), lens  # [N, T, 2]


# ---- permutation table ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seg_num, classes", [(2, 2), (3, 6), (4, 24), (5, 120)])
def test_permutation_table_sizes_and_natural_order(seg_num: int, classes: int) -> None:
    table = permutation_table(seg_num)
    assert table.shape == (classes, seg_num) and table.dtype == torch.long
    assert table.tolist() == [list(p) for p in itertools.permutations(range(seg_num))]
    assert table[0].tolist() == list(range(seg_num))  # label 0 is the identity


def test_permutation_table_three_segments_explicit() -> None:
    assert permutation_table(3).tolist() == [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]


def test_permutation_table_rejects_zero() -> None:
    with pytest.raises(ValueError, match="seg_num must be >= 1, got 0"):
        permutation_table(0)


# ---- temporal mask ---------------------------------------------------------------------------------------

def test_kept_frames_is_reference_ceil() -> None:
    # Reference: keep t < len * 0.7 -> ceil(len * 0.7): 10 -> 7, 11 -> 8 (7.7), 3 -> 3 (2.1), 1 -> 1 (0.7).
    assert kept_frames(torch.tensor([10, 11, 3, 1]), 0.3).tolist() == [7, 8, 3, 1]
    lens = torch.arange(1, 301)
    assert kept_frames(lens, 0.3).tolist() == [math.ceil(n * 0.7 - 1e-9) for n in range(1, 301)]


def test_temporal_mask_zeroes_exactly_the_tail() -> None:
    x, lens = padded_batch(4, 12, 5, seed=0)
    lens = torch.tensor([10, 11, 3, 1])
    x = x + 1.0  # non-zero everywhere, including padding, so every kept/zeroed frame is visible
    before = x.clone()
    out = temporal_mask(x, lens, 0.3)
    keep = torch.tensor([7, 8, 3, 1])
    for n in range(4):
        assert torch.equal(out[n, : keep[n]], x[n, : keep[n]])
        assert torch.count_nonzero(out[n, keep[n]:]) == 0
    assert torch.equal(x, before)  # input untouched
    assert out.data_ptr() != x.data_ptr()


def test_temporal_mask_ratio_zero_keeps_valid_frames() -> None:
    x, lens = padded_batch(3, 8, 4, seed=1)
    assert torch.equal(temporal_mask(x, lens, 0.0), x)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_temporal_mask_rejects_bad_ratio(ratio: float) -> None:
    x, lens = padded_batch(2, 8, 3, seed=0)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        temporal_mask(x, lens, ratio)


# ---- temporal jigsaw: exact frames -----------------------------------------------------------------------

def test_jigsaw_hand_example() -> None:
    # len 7, seg 3: L = 2, segments [1,2] [3,4] [5,6] (1-based frame values), tail frame 7, padding.
    x, lens = indexed_batch([7], 10)
    out, y = temporal_jigsaw(x, lens, 3, labels=torch.tensor([3]))  # perm (1, 2, 0)
    assert y.tolist() == [3]
    assert out[0, :, 0].tolist() == [3, 4, 5, 6, 1, 2, 7, 0, 0, 0]


def test_jigsaw_output_segment_k_holds_input_segment_perm_k() -> None:
    lengths = [7, 9, 16, 5, 12, 3, 16, 10]
    x, lens = indexed_batch(lengths, 16)
    table = permutation_table(3)
    out, y = temporal_jigsaw(x, lens, 3, torch.Generator().manual_seed(0))
    assert y.dtype == torch.long and ((y >= 0) & (y < 6)).all()
    for n, length in enumerate(lengths):
        seg = length // 3
        for k, p in enumerate(table[y[n]].tolist()):
            assert torch.equal(out[n, k * seg:(k + 1) * seg], x[n, p * seg:(p + 1) * seg])
        assert torch.equal(out[n, 3 * seg:], x[n, 3 * seg:])  # remainder and padding stay put
    assert torch.equal(out[:, :, 1], x[:, :, 1])  # frames never leave their sample


def test_jigsaw_permutes_whole_valid_frames_only() -> None:
    x, lens = padded_batch(6, 20, 4, seed=3, min_len=3)
    out, _ = temporal_jigsaw(x, lens, 3, torch.Generator().manual_seed(1))
    pad = ~valid_mask(lens, 20)
    assert torch.count_nonzero(out[pad]) == 0
    for n in range(6):  # the multiset of valid frames is unchanged
        a = out[n, : lens[n]].sum(0)
        b = x[n, : lens[n]].sum(0)
        assert torch.allclose(a, b, atol=1e-5)


def test_jigsaw_does_not_mutate_inputs_even_for_short_clips() -> None:
    x, lens = padded_batch(4, 12, 3, seed=2)
    lens[0] = 1  # len < seg_num: the reference wrote T into the caller's lengths here
    x_before, lens_before = x.clone(), lens.clone()
    temporal_jigsaw(x, lens, 3, torch.Generator().manual_seed(0))
    reference_jigsaw_loop(x, lens, 3, torch.Generator().manual_seed(0))
    assert torch.equal(x, x_before) and torch.equal(lens, lens_before)


def test_jigsaw_short_reference_cuts_whole_padded_clip() -> None:
    x, lens = indexed_batch([2], 9)  # L = 0 -> reference uses len = T = 9, L = 3
    out, y = temporal_jigsaw(x, lens, 3, labels=torch.tensor([5]))  # perm (2, 1, 0)
    assert y.tolist() == [5]
    assert out[0, :, 0].tolist() == [0, 0, 0, 0, 0, 0, 1, 2, 0]


def test_jigsaw_short_identity_keeps_clip_and_labels_zero() -> None:
    x, lens = indexed_batch([2, 9], 9)
    out, y = temporal_jigsaw(x, lens, 3, labels=torch.tensor([5, 5]), short="identity")
    assert y.tolist() == [0, 5]
    assert torch.equal(out[0], x[0])
    assert out[1, :, 0].tolist() == [7, 8, 9, 4, 5, 6, 1, 2, 3]


# ---- temporal jigsaw: seeding, labels, oracle ------------------------------------------------------------

def test_jigsaw_same_seed_same_output() -> None:
    x, lens = padded_batch(8, 16, 3, seed=4)
    a, ya = temporal_jigsaw(x, lens, 3, torch.Generator().manual_seed(7))
    b, yb = temporal_jigsaw(x, lens, 3, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and torch.equal(ya, yb)


def test_jigsaw_labels_cover_all_classes_uniformly() -> None:
    x, lens = padded_batch(600, 8, 1, seed=5)
    _, y = temporal_jigsaw(x, lens, 3, torch.Generator().manual_seed(0))
    counts = torch.bincount(y, minlength=6)
    assert counts.min() > 60 and counts.max() < 140  # 100 expected per class


@pytest.mark.parametrize("seg_num", [2, 3, 4, 5])
@pytest.mark.parametrize("short", ["reference", "identity"])
def test_vectorised_jigsaw_equals_loop_oracle(seg_num: int, short: str) -> None:
    x, lens = padded_batch(16, 24, 5, seed=seg_num)
    lens[:2] = torch.tensor([1, seg_num - 1])  # short clips included
    a, ya = temporal_jigsaw(x, lens, seg_num, torch.Generator().manual_seed(11), short=short)  # type: ignore[arg-type]
    b, yb = reference_jigsaw_loop(x, lens, seg_num, torch.Generator().manual_seed(11), short=short)  # type: ignore[arg-type]
    assert torch.equal(a, b) and torch.equal(ya, yb)


def test_jigsaw_rejects_bad_arguments() -> None:
    x, lens = padded_batch(2, 8, 3, seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in 0..5 for seg_num=3"):
        temporal_jigsaw(x, lens, 3, labels=torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="short must be one of"):
        temporal_jigsaw(x, lens, 3, short="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seg_num must be >= 2, got 1"):
        temporal_jigsaw(x, lens, 1)
    with pytest.raises(ValueError, match=r"lengths must be \[N\] = \[2\]"):
        temporal_jigsaw(x, lens[:1], 3)
    with pytest.raises(ValueError, match=r"x must be \[N, T, F\]"):
        temporal_jigsaw(x[0], lens, 3)
