"""A linear probe fitted on the features the KNN probe already extracted: the alternative early-stopping proxy.

Why: a search's objective is the validation top-1 of a linear classifier on frozen features (the paper's linear
protocol, §4.2), while ASHA cuts on a proxy measured during pretraining. The KNN proxy ranked trials no better
than chance at the quick sizes (Spearman ρ ≈ 0, ``benchmarks/search_efficiency.py``): nearest neighbours under
cosine similarity reward a different geometry than a linear boundary does. This proxy fits the objective's own
model family on the cached training features and scores validation: ``val_probe_top1`` / ``val_probe_top5``.

The fit: features standardised with training statistics only, multinomial logistic regression from zero weights
by full-batch L-BFGS (strong-Wolfe line search) for a fixed number of iterations with a small L2 penalty. There is
no randomness, so the value is reproducible, and no learning rate to pick. It costs a few matrix products per
iteration on features already in memory — milliseconds at the quick sizes, seconds at NTU's, where the fit uses an
even-strided subset of at most :data:`PROBE_MAX_TRAIN` training features (the same subset every time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ms2l_ray.train.metrics import topk_correct

PROBE_ITERS = 100  # L-BFGS iterations: the fit has converged to ~1e-4 in loss by then at the sizes we use
PROBE_L2 = 1e-4  # penalty on the weights: keeps separable data (few clips, wide features) from diverging
PROBE_MAX_TRAIN = 8192  # training features the fit uses at most (an even stride): NTU-120's 63k would cost minutes


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, iters: int = PROBE_ITERS,
                     l2: float = PROBE_L2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit ``softmax((x - mean) / std @ W + b)`` on ``(x, y)``; returns ``(W, b, mean, std)``.

    Shape:
        x: ``[N, H]`` float; y: ``[N]`` class indices in ``[0, num_classes)``.
    """
    if len(x) == 0:
        raise ValueError("the linear probe needs a non-empty training part")
    x = x.float()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1], num_classes, device=z.device, requires_grad=True)
    b = torch.zeros(num_classes, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                          num_classes: int, iters: int = PROBE_ITERS, l2: float = PROBE_L2) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) on ``val`` of the probe fitted on ``train`` (NaN without validation samples)."""
    if len(val_x) == 0:
        return {"top1": float("nan"), "top5": float("nan")}
    if len(train_x) > PROBE_MAX_TRAIN:
        keep = torch.linspace(0, len(train_x) - 1, PROBE_MAX_TRAIN, device=train_x.device).long()
        train_x, train_y = train_x[keep], train_y[keep]
    w, b, mean, std = fit_linear_probe(train_x, train_y, num_classes, iters, l2)
    logits = ((val_x.float() - mean) / std) @ w + b
    hits = topk_correct(logits, val_y)
    return {"top1": 100.0 * hits[1] / len(val_x), "top5": 100.0 * hits[5] / len(val_x)}
