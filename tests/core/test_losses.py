"""The three losses against hand-computed values and naive reference formulas; symmetry and error paths."""

from __future__ import annotations

import math

import pytest
import torch

from ms2l_ray.pretext.losses import (
    ContrastiveLoss,
    JigsawLoss,
    MotionLoss,
    contrastive_logits,
    contrastive_loss,
    jigsaw_accuracy,
    jigsaw_loss,
    motion_loss,
)

# ---- motion ----------------------------------------------------------------------------------------------


def test_motion_loss_hand_value_ignores_prediction_in_padding() -> None:
    pred = torch.tensor([[[1.0], [2.0], [5.0]]])  # frame 2 is padding (len 2): its 5.0 must be ignored
    target = torch.tensor([[[0.0], [1.0], [0.0]]])
    # ((1-0)^2 + (2-1)^2 + 0) / (N*T*F = 3)
    assert motion_loss(pred, target, torch.tensor([2])).item() == pytest.approx(2 / 3)
    assert MotionLoss()(pred, target, torch.tensor([3])).item() == pytest.approx((1 + 1 + 25) / 3)


def test_motion_loss_mean_over_all_elements_two_samples() -> None:
    pred = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[2.0, 0.0], [9.0, 9.0]]])
    target = torch.zeros(2, 2, 2)
    # sample 0: 4 ones -> 4; sample 1 (len 1): 4 + 0 -> 4; total 8 over 8 elements
    assert motion_loss(pred, target, torch.tensor([2, 1])).item() == pytest.approx(1.0)


def test_motion_loss_zero_for_perfect_prediction_and_gradient_only_on_valid_frames() -> None:
    target = torch.randn(2, 4, 3) * torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).unsqueeze(-1)
    pred = target.clone().requires_grad_(True)
    loss = motion_loss(pred + 0.0, target, torch.tensor([2, 4]))
    assert loss.item() == 0.0
    (motion_loss(pred + 1.0, target, torch.tensor([2, 4]))).backward()
    assert pred.grad is not None
    assert torch.count_nonzero(pred.grad[0, 2:]) == 0 and torch.count_nonzero(pred.grad[0, :2]) == 6


def test_motion_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"prediction and target must both be \[N, T, F\]"):
        motion_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.tensor([3, 3]))
    with pytest.raises(ValueError, match=r"lengths must be \[N\] = \[2\]"):
        motion_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.tensor([3]))


# ---- jigsaw ----------------------------------------------------------------------------------------------


def test_jigsaw_loss_and_accuracy_hand_values() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(3))) / 3
    assert jigsaw_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert jigsaw_accuracy(logits, labels).item() == pytest.approx(2 / 3)


def test_jigsaw_module_checks_classes() -> None:
    loss_fn = JigsawLoss(3)
    assert loss_fn.num_classes == 6
    loss, acc = loss_fn(torch.zeros(4, 6), torch.tensor([0, 1, 2, 5]))
    # uniform logits: loss ln 6; argmax is class 0 for every row, and one label in four is 0
    assert loss.item() == pytest.approx(math.log(6)) and acc.item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"seg_num! = 6 columns, got shape \(4, 5\)"):
        loss_fn(torch.zeros(4, 5), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="seg_num must be >= 2, got 1"):
        JigsawLoss(1)
    with pytest.raises(ValueError, match=r"labels must be \[N\] = \[4\]"):
        jigsaw_loss(torch.zeros(4, 6), torch.tensor([0, 1]))


# ---- contrastive -----------------------------------------------------------------------------------------


def naive_view_loss(z: list[list[float]], zbar: list[list[float]], tau: float) -> tuple[float, float]:
    """The reference formula with explicit loops over rows and columns (no tensors)."""

    def unit(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(a * a for a in v))
        return [a / norm for a in v]

    def dot(a: list[float], b: list[float]) -> float:
        return sum(p * q for p, q in zip(a, b, strict=True))

    xs, ys, n = [unit(v) for v in z], [unit(v) for v in zbar], len(z)
    loss, hits = 0.0, 0
    for r in range(2 * n):
        row = []
        for c in range(2 * n):
            i, j = r % n, c % n
            if r < n:  # [X·Yᵀ, X·Xᵀ]
                s = dot(xs[i], ys[j]) if c < n else (-1.0 if i == j else dot(xs[i], xs[j]))
            else:  # [Y·Yᵀ, Y·Xᵀ]
                s = (-1.0 if i == j else dot(ys[i], ys[j])) if c < n else dot(ys[i], xs[j])
            row.append(s / tau)
        lse = math.log(sum(math.exp(v) for v in row))
        loss += lse - row[r]
        hits += int(max(range(2 * n), key=lambda c: row[c]) == r)
    return loss / (2 * n), hits / (2 * n)


def test_contrastive_matches_naive_loops_on_three_views() -> None:
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    zbar = (views[0] + views[1] + views[2]) / 3
    tau = 0.9
    per_view = [naive_view_loss(v.tolist(), zbar.tolist(), tau) for v in views]
    loss, acc = contrastive_loss(views, tau)
    assert loss.item() == pytest.approx(sum(p[0] for p in per_view) / 3, rel=1e-10)
    assert acc.item() == pytest.approx(sum(p[1] for p in per_view) / 3)


def test_contrastive_single_sample_closed_form() -> None:
    # N = 1, one view => X = Y: S = [[1, -1], [-1, 1]] / τ, loss = log(1 + exp(-2/τ)) for both rows.
    z = torch.tensor([[3.0, 4.0]])
    loss, acc = contrastive_loss([z], temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-4)), rel=1e-5)
    assert acc.item() == 1.0


def test_contrastive_logits_block_layout() -> None:
    g = torch.Generator().manual_seed(1)
    z, zbar = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    s = contrastive_logits(z, zbar, temperature=2.0)
    x, y = torch.nn.functional.normalize(z, dim=1), torch.nn.functional.normalize(zbar, dim=1)
    assert s.shape == (6, 6)
    for i in range(3):
        assert s[i, i].item() == pytest.approx((x[i] @ y[i]).item() / 2)  # row i < N: target is X_i·Y_i
        assert s[3 + i, 3 + i].item() == pytest.approx((y[i] @ x[i]).item() / 2)  # row N+i: target Y_i·X_i
        assert s[i, 3 + i].item() == -0.5 and s[3 + i, i].item() == -0.5  # self-similarities set to -1, then /τ
    assert torch.allclose(s[:3, 3:], s[:3, 3:].t())  # X·Xᵀ symmetric
    assert torch.allclose(s[3:, 3:], s[:3, :3].t())  # Y·Xᵀ = (X·Yᵀ)ᵀ


def test_contrastive_symmetries() -> None:
    g = torch.Generator().manual_seed(2)
    views = [torch.randn(4, 5, generator=g) for _ in range(3)]
    loss, _ = contrastive_loss(views, 0.9)
    perm = torch.tensor([2, 0, 3, 1])
    assert contrastive_loss([v[perm] for v in views], 0.9)[0].item() == pytest.approx(loss.item(), rel=1e-5)
    assert contrastive_loss(views[::-1], 0.9)[0].item() == pytest.approx(loss.item(), rel=1e-5)
    assert contrastive_loss([3.0 * v for v in views], 0.9)[0].item() == pytest.approx(loss.item(), rel=1e-5)


def test_contrastive_gradient_reaches_every_view_and_falls_for_identical_views() -> None:
    g = torch.Generator().manual_seed(3)
    views = [torch.randn(4, 5, generator=g).requires_grad_(True) for _ in range(3)]
    loss, _ = ContrastiveLoss(0.9)(views)
    loss.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in views)
    same = views[0].detach()
    assert contrastive_loss([same, same, same], 0.9)[0] < loss


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_contrastive_rejects_bad_temperature(tau: float) -> None:
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        ContrastiveLoss(tau)


def test_contrastive_rejects_bad_views() -> None:
    with pytest.raises(ValueError, match="at least one view"):
        contrastive_loss([], 0.9)
    with pytest.raises(ValueError, match="same"):
        contrastive_loss([torch.zeros(2, 3), torch.zeros(3, 3)], 0.9)
