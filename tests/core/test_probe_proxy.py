"""The linear-probe proxy: fits what the objective fits, deterministically, and sees what KNN misses."""

from __future__ import annotations

import math

import pytest
import torch

from ms2l_ray.train.knn import knn_accuracy
from ms2l_ray.train.probe_proxy import fit_linear_probe, linear_probe_accuracy


def _one_informative_dimension(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes apart along dimension 0 only (±0.5), under 49 dimensions of N(0, 3²) noise.

    A linear boundary on standardised features finds dimension 0; cosine neighbours are ruled by the noise.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 50, generator=g) * 3.0
    x[:, 0] = (y.float() * 2 - 1) * 0.5 + 0.05 * torch.randn(n, generator=g)
    return x, y


def test_the_probe_separates_what_knn_cannot() -> None:
    tx, ty = _one_informative_dimension(400, 0)
    vx, vy = _one_informative_dimension(200, 1)
    probe = linear_probe_accuracy(tx, ty, vx, vy, num_classes=2)
    knn = knn_accuracy(tx, ty, vx, vy, num_classes=2, k=20, temperature=0.07)
    assert probe["top1"] == 100.0 and probe["top5"] == 100.0
    assert knn["top1"] < 65.0  # near chance (50): the neighbours are decided by the noise dimensions


def test_the_fit_is_deterministic_and_uses_training_statistics_only() -> None:
    tx, ty = _one_informative_dimension(100, 0)
    vx, vy = _one_informative_dimension(60, 1)
    a = fit_linear_probe(tx, ty, 2)
    b = fit_linear_probe(tx, ty, 2)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    w, bias, mean, std = a
    assert torch.equal(mean, tx.mean(0)) and torch.allclose(std, tx.std(0, unbiased=False))
    assert w.shape == (50, 2) and bias.shape == (2,)
    assert int(w.abs().argmax(0)[1]) == 0  # the informative dimension carries the largest weight
    # shifting the validation features changes the score, not the fit: statistics come from training features
    assert linear_probe_accuracy(tx, ty, vx + 100.0, vy, 2)["top1"] == 50.0


def test_three_blobs_give_a_perfect_top1_and_top5_is_clipped_to_the_classes() -> None:
    g = torch.Generator().manual_seed(3)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    y = torch.arange(300) % 3
    x = centres[y] + 0.3 * torch.randn(300, 2, generator=g)
    assert linear_probe_accuracy(x[:200], y[:200], x[200:], y[200:], 3) == {"top1": 100.0, "top5": 100.0}


def test_empty_parts() -> None:
    x, y = _one_informative_dimension(10, 0)
    got = linear_probe_accuracy(x, y, x[:0], y[:0], 2)
    assert math.isnan(got["top1"]) and math.isnan(got["top5"])
    with pytest.raises(ValueError, match="non-empty training part"):
        fit_linear_probe(x[:0], y[:0], 2)


def test_a_large_training_part_is_subsampled_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    import ms2l_ray.train.probe_proxy as pp

    seen: list[int] = []
    real = pp.fit_linear_probe

    def spy(x: torch.Tensor, y: torch.Tensor, *args: object) -> tuple[torch.Tensor, ...]:
        seen.append(len(x))
        return real(x, y, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pp, "fit_linear_probe", spy)
    monkeypatch.setattr(pp, "PROBE_MAX_TRAIN", 64)
    tx, ty = _one_informative_dimension(1000, 0)
    vx, vy = _one_informative_dimension(100, 1)
    assert pp.linear_probe_accuracy(tx, ty, vx, vy, 2)["top1"] == 100.0 and seen == [64]
