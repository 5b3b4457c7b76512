"""Evaluation strategies of the paper (§4.3) plus KNN, in plain PyTorch.

- ``linear``: frozen encoder, linear classifier on pooled features (features cached once).
- ``finetune``: pretrained encoder and classifier trained together.
- ``semi``: fine-tuning with a stratified ``label_fraction`` of the training labels (1 %, 10 %, ...).
- ``supervised``: randomly initialised encoder trained with labels only.
- ``joint``: fresh model trained on cross-entropy + the MS²L losses together.
- ``pretrain_joint``: pretrained model, then joint training.
- ``knn``: weighted KNN on frozen features, no training.

Model selection uses the validation part (held out of training); the test part is evaluated once, with
the weights of the best validation epoch, and reported only.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ms2l_ray.config import Config, to_dict
from ms2l_ray.data.container import SkeletonSet, Splits, label_subset
from ms2l_ray.model.heads import LinearClassifier
from ms2l_ray.model.ms2l import MS2L
from ms2l_ray.train.batches import eval_batches, train_batches
from ms2l_ray.train.classifier import ClassifierModel
from ms2l_ray.train.collectives import all_reduce_sum
from ms2l_ray.train.features import extract_features
from ms2l_ray.train.guard import NonFiniteGuard
from ms2l_ray.train.knn import knn_accuracy, knn_logits
from ms2l_ray.train.loop import LoopContext, Progress, unwrap
from ms2l_ray.train.metrics import confusion_matrix, per_class_accuracy, topk_correct
from ms2l_ray.train.optim import build_optimizer, clip_per_module
from ms2l_ray.train.precision import Precision
from ms2l_ray.train.pretrain import bucket_lengths, new_model
from ms2l_ray.train.runtime import cpu_generator, derive_seed, seed_everything

NEEDS_PRETRAINED = ("linear", "finetune", "semi", "pretrain_joint", "knn")


@dataclass
class EvalResult:
    """Final metrics (``val_top1`` … ``test_top5``, ``best_epoch``), per-epoch history, test confusion matrix."""

    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    confusion: np.ndarray | None = None
    per_class: np.ndarray | None = None
    model: nn.Module | None = None


def _scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hits tensor [top1, top5, n], confusion [K, K]) for one batch."""
    hits = topk_correct(logits, labels)
    cm = confusion_matrix(logits.argmax(1).cpu(), labels.cpu(), num_classes)
    return torch.tensor([hits[1], hits[5], len(labels)], dtype=torch.float64), cm


def _percentages(hits: torch.Tensor, prefix: str) -> dict[str, float]:
    """``{prefix_top1, prefix_top5}`` in % from a ``[top1, top5, n]`` hits tensor (0 when n = 0)."""
    n = max(float(hits[2]), 1.0)
    return {f"{prefix}_top1": 100.0 * float(hits[0]) / n, f"{prefix}_top5": 100.0 * float(hits[1]) / n}


def _summarise(hits: torch.Tensor, cm: torch.Tensor, prefix: str) -> tuple[dict[str, float], torch.Tensor]:
    hits, cm = all_reduce_sum(hits), all_reduce_sum(cm)
    return _percentages(hits, prefix), cm


@torch.no_grad()
def _evaluate_model(model: nn.Module, cfg: Config, data: SkeletonSet, idx: np.ndarray, ctx: LoopContext,
                    prefix: str, precision: Precision) -> tuple[dict[str, float], torch.Tensor]:
    model.eval()
    hits = torch.zeros(3, dtype=torch.float64)
    cm = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
    for b in eval_batches(idx, cfg.evaluation.optim.batch_size, rank=ctx.rank, world_size=ctx.world_size,
                          lengths=bucket_lengths(cfg, data, idx)):  # sums and counts: batch order is free
        x, lengths, y = data.batch(b, cfg.data.max_frames)
        with precision.autocast():
            logits = model(x.to(ctx.device), lengths.to(ctx.device)).logits
        h, c = _scores(logits.float().cpu(), y, data.num_classes)
        hits, cm = hits + h, cm + c
    return _summarise(hits, cm, prefix)


def feature_options(cfg: Config, ctx: LoopContext) -> dict[str, Any]:
    """:func:`extract_features` keywords from the config: length-sorted batches (``data.bucketing``) and the
    run's precision (autocast of the frozen encoder)."""
    return {"bucketing": cfg.data.bucketing, "precision": Precision.make(cfg.precision, ctx.device)}


def _finish(best: dict[str, float], history: list[dict[str, float]], cm: torch.Tensor,
            model: nn.Module | None) -> EvalResult:
    return EvalResult(metrics=best, history=history, confusion=cm.numpy(),
                      per_class=per_class_accuracy(cm).numpy(), model=model)


def _knn(cfg: Config, data: SkeletonSet, splits: Splits, train_idx: np.ndarray, ms2l: MS2L,
         ctx: LoopContext) -> EvalResult:
    ms2l.eval()
    kw: dict[str, Any] = dict(batch_size=cfg.evaluation.optim.batch_size, max_frames=cfg.data.max_frames,
                              device=ctx.device, rank=ctx.rank, world_size=ctx.world_size,
                              **feature_options(cfg, ctx))
    bank, bank_y = extract_features(ms2l.encode, data, train_idx, **kw)
    metrics: dict[str, float] = {"best_epoch": 0.0}
    cm = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
    for part in ("val", "test"):
        q, qy = extract_features(ms2l.encode, data, splits.get(part), **kw)
        acc = knn_accuracy(bank, bank_y, q, qy, data.num_classes, cfg.evaluation.knn_k, cfg.evaluation.knn_temperature)
        metrics.update({f"{part}_top1": acc["top1"], f"{part}_top5": acc["top5"]})
        if part == "test" and len(q):
            pred = knn_logits(bank, bank_y, q, data.num_classes, cfg.evaluation.knn_k,
                              cfg.evaluation.knn_temperature).argmax(1)
            cm = confusion_matrix(pred, qy, data.num_classes)
    return _finish(metrics, [dict(metrics, epoch=1.0)], cm, None)


@dataclass(frozen=True)
class ProbeChoice:
    """One linear-probe setting: learning rate and whether features are standardised."""

    lr: float
    standardize: bool


def probe_grid(cfg: Config) -> list[ProbeChoice]:
    """The probe settings tried for one encoder: ``evaluation.lr_grid`` (or ``optim.lr``) × standardisation.

    Why a grid: a frozen encoder's feature scale depends on its pretraining (a random encoder, a motion-
    prediction encoder and a contrastive one differ by orders of magnitude), so a single fixed probe lr
    compares a well-probed encoder with a badly probed one (REFERENCE.md §2b: careful evaluations pick the
    probe's lr per encoder on held-out data). The grid order is the tie-break order.
    """
    ev = cfg.evaluation
    lrs = list(ev.lr_grid) or [ev.optim.lr]
    modes = {"off": [False], "on": [True], "select": [False, True]}[ev.standardize]
    return [ProbeChoice(lr, st) for st in modes for lr in lrs]


def standardizer(train_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the *training* features only (std floored at 1e-6 for dead dimensions)."""
    mean = train_features.mean(dim=0)  # [H]
    std = train_features.std(dim=0, unbiased=False).clamp_min(1e-6)  # [H]
    return mean, std


def fold_standardizer(clf: LinearClassifier, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Rewrite ``clf`` in place so that on raw features it computes what it computed on ``(f − mean) / std``.

    ``W (f − μ)/σ + b = (W/σ) f + (b − (W/σ) μ)``: the returned classifier then needs no separate transform.
    """
    with torch.no_grad():
        w = clf.fc.weight / std.to(clf.fc.weight)  # [K, H]
        clf.fc.bias.sub_(w @ mean.to(w))
        clf.fc.weight.copy_(w)


def _linear(cfg: Config, data: SkeletonSet, splits: Splits, train_idx: np.ndarray, ms2l: MS2L,
            ctx: LoopContext) -> EvalResult:
    """Linear protocol on cached frozen features (identical updates to re-encoding every epoch).

    Every setting of :func:`probe_grid` trains a probe with model selection on validation; the setting with
    the best validation top-1 is retrained with the job's hooks (deterministic: the same run again) and
    only its best-validation weights see the test split.
    """
    ms2l.eval()
    o = cfg.evaluation.optim
    kw: dict[str, Any] = dict(batch_size=o.batch_size, max_frames=cfg.data.max_frames, device=ctx.device,
                              rank=ctx.rank, world_size=ctx.world_size, **feature_options(cfg, ctx))
    raw = {p: extract_features(ms2l.encode, data, idx, **kw)
           for p, idx in (("train", train_idx), ("val", splits.val), ("test", splits.test))}
    mean, std = standardizer(raw["train"][0])
    scaled = {p: ((f - mean) / std, y) for p, (f, y) in raw.items()}
    grid = probe_grid(cfg)
    choice = grid[0]
    if len(grid) > 1:
        scores = []
        for c in grid:
            best, _, _ = _fit_probe(cfg, scaled if c.standardize else raw, c.lr, data.num_classes, ctx, hooks=False)
            scores.append(best["val_top1"])
            ctx.say(f"[linear] probe lr={c.lr:g} standardize={c.standardize}: val_top1={best['val_top1']:.2f}")
        choice = grid[int(np.argmax(scores))]  # first best in grid order
    feats = scaled if choice.standardize else raw
    best, clf, history = _fit_probe(cfg, feats, choice.lr, data.num_classes, ctx, hooks=True)
    test, cm = _score_probe(clf, feats, "test", data.num_classes, ctx)
    best.update(test)
    best.update(probe_lr=choice.lr, probe_standardized=float(choice.standardize))
    if choice.standardize:
        fold_standardizer(clf, mean, std)
    return _finish(best, history, cm, clf)


Features = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _score_probe(clf: nn.Module, feats: Features, part: str, num_classes: int,
                 ctx: LoopContext) -> tuple[dict[str, float], torch.Tensor]:
    f, y = feats[part]
    with torch.no_grad():
        logits = clf(f.to(ctx.device)).float().cpu() if len(f) else torch.zeros(0, num_classes)
    h, c = _scores(logits, y, num_classes)
    return _percentages(h, part), c


def _fit_probe(cfg: Config, feats: Features, lr: float, num_classes: int, ctx: LoopContext,
               hooks: bool) -> tuple[dict[str, float], LinearClassifier, list[dict[str, float]]]:
    """Train one probe at ``lr``; return the best-validation metrics, the classifier at that epoch, history."""
    o = dataclasses.replace(cfg.evaluation.optim, lr=lr)
    seed_everything(derive_seed(cfg.seed, 0x11EA))
    clf = LinearClassifier(feats["train"][0].shape[1], num_classes).to(ctx.device)
    wrapped = ctx.wrap_model(clf)
    opt, sched = build_optimizer(clf.parameters(), o)
    pos = np.arange(len(feats["train"][0]))
    best: dict[str, float] = {}
    best_state = copy.deepcopy(clf.state_dict())
    history: list[dict[str, float]] = []
    n_steps = len(train_batches(pos, o.batch_size, seed=cfg.seed, epoch=0, rank=ctx.rank, world_size=ctx.world_size,
                                min_batch=1))
    guard = NonFiniteGuard(f"linear probe (lr={lr:g})", o.nonfinite_patience, "evaluation.optim.nonfinite_patience",
                           n_steps, ctx.say)
    for epoch in range(o.epochs):
        seed_everything(derive_seed(cfg.seed, epoch, ctx.rank, 3))
        wrapped.train()
        total, seen = 0.0, 0
        for step, b in enumerate(train_batches(pos, o.batch_size, seed=cfg.seed, epoch=epoch, rank=ctx.rank,
                                               world_size=ctx.world_size, min_batch=1)):
            f, y = feats["train"][0][b].to(ctx.device), feats["train"][1][b].to(ctx.device)
            loss = F.cross_entropy(wrapped(f), y)
            opt.zero_grad(set_to_none=True)
            if not guard.ok(epoch, step, {"cross_entropy": loss}):
                continue
            loss.backward()
            clip_per_module([clf], o.grad_clip)
            opt.step()
            total, seen = total + float(loss.detach()) * len(b), seen + len(b)
        guard.end_epoch(epoch)
        sched.step()
        m = {"epoch": float(epoch + 1), "train_loss": total / max(seen, 1), "lr": opt.param_groups[0]["lr"]}
        m.update(_score_probe(clf, feats, "val", num_classes, ctx)[0])
        history.append(m)
        if hooks:
            _hook(ctx, epoch, m, clf, opt, sched, history, cfg, best)
        if not best or m["val_top1"] > best["val_top1"]:
            best = {"val_top1": m["val_top1"], "val_top5": m["val_top5"], "best_epoch": float(epoch + 1)}
            best_state = copy.deepcopy(clf.state_dict())
    clf.load_state_dict(best_state)
    return best, clf, history


def _hook(ctx: LoopContext, epoch: int, metrics: dict[str, float], model: nn.Module, opt: torch.optim.Optimizer,
          sched: Any, history: list[dict[str, float]], cfg: Config, best: dict[str, float]) -> None:
    def make_state() -> dict[str, Any]:
        return copy.deepcopy({"kind": "evaluate", "epoch": epoch, "model": model.state_dict(),
                              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "history": list(history), "config": to_dict(cfg), "best": dict(best)})

    for hook in ctx.hooks:
        hook(epoch, metrics, make_state)


def _train_classifier(cfg: Config, data: SkeletonSet, splits: Splits, train_idx: np.ndarray, ms2l: MS2L,
                      ctx: LoopContext) -> EvalResult:
    """Fine-tune / semi / supervised / joint: the encoder trains with the classifier."""
    strategy, o = cfg.evaluation.strategy, cfg.evaluation.optim
    joint = strategy in ("joint", "pretrain_joint")
    seed_everything(derive_seed(cfg.seed, 0x11EA))
    model = ClassifierModel(ms2l, LinearClassifier(cfg.model.hidden_size, data.num_classes), joint).to(ctx.device)
    wrapped = ctx.wrap_model(model)
    opt, sched = build_optimizer(model.parameters(), o)
    precision = Precision.make(cfg.precision, ctx.device)
    best: dict[str, float] = {}
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    train_lengths = bucket_lengths(cfg, data, train_idx)
    n_steps = len(train_batches(train_idx, o.batch_size, seed=cfg.seed, epoch=0, rank=ctx.rank,
                                world_size=ctx.world_size, lengths=train_lengths))
    if n_steps == 0:
        raise ValueError(f"{len(train_idx)} labelled training samples: too few for batch size {o.batch_size}")
    progress = Progress(ctx, o.epochs, n_steps, cfg.log_every, strategy)
    guard = NonFiniteGuard(strategy, o.nonfinite_patience, "evaluation.optim.nonfinite_patience", n_steps, ctx.say)
    for epoch in range(o.epochs):
        seed_everything(derive_seed(cfg.seed, epoch, ctx.rank, 4))
        gen = cpu_generator(derive_seed(cfg.seed, epoch, ctx.rank, 5))
        wrapped.train()
        total, seen, t0 = 0.0, 0, time.perf_counter()
        progress.restart_epoch_clock()
        for step, b in enumerate(train_batches(train_idx, o.batch_size, seed=cfg.seed, epoch=epoch, rank=ctx.rank,
                                               world_size=ctx.world_size, lengths=train_lengths)):
            x, lengths, y = data.batch(b, cfg.data.max_frames)
            with precision.autocast():
                out = wrapped(x.to(ctx.device), lengths.to(ctx.device), gen)
            ce = F.cross_entropy(out.logits.float(), y.to(ctx.device))  # fp32 loss (no-op cast under fp32)
            loss = ce if out.ssl is None else ce + out.ssl.loss
            ssl_terms = {} if out.ssl is None else {k: v for k, v in out.ssl.metrics.items() if k.endswith("_loss")}
            opt.zero_grad(set_to_none=True)
            if not guard.ok(epoch, step, {"loss": loss, "cross_entropy": ce, **ssl_terms}):
                continue
            precision.backward(loss)
            precision.step(opt, lambda: clip_per_module(unwrap(wrapped).children(), o.grad_clip))
            total, seen = total + float(loss.detach()) * len(b), seen + len(b)
            progress.step(epoch, step, {"loss": float(loss.detach())})
        guard.end_epoch(epoch)
        sched.step()
        m = {"epoch": float(epoch + 1), "train_loss": total / max(seen, 1), "lr": opt.param_groups[0]["lr"],
             "throughput_seq_s": seen * ctx.world_size / max(time.perf_counter() - t0, 1e-9)}
        m.update(_evaluate_model(model, cfg, data, splits.val, ctx, "val", precision)[0])
        history.append(m)
        ctx.say(f"[{strategy}] epoch {epoch + 1}/{o.epochs} loss={m['train_loss']:.4f} val_top1={m['val_top1']:.2f}")
        _hook(ctx, epoch, m, model, opt, sched, history, cfg, best)
        if not best or m["val_top1"] > best["val_top1"]:
            best = {"val_top1": m["val_top1"], "val_top5": m["val_top5"], "best_epoch": float(epoch + 1)}
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test, cm = _evaluate_model(model, cfg, data, splits.test, ctx, "test", precision)
    best.update(test)
    return _finish(best, history, cm, model)


def evaluate(cfg: Config, data: SkeletonSet, splits: Splits, pretrained: MS2L | None,
             ctx: LoopContext | None = None) -> EvalResult:
    """Run ``cfg.evaluation.strategy``; ``pretrained`` is None for a randomly initialised encoder.

    Strategies that start from scratch (``supervised``, ``joint``) ignore ``pretrained``; the ones in
    ``NEEDS_PRETRAINED`` fall back to a random encoder when given None (the usual baseline).
    """
    ctx = ctx or LoopContext()
    strategy = cfg.evaluation.strategy
    train_idx = label_subset(splits.train, data.labels, cfg.evaluation.label_fraction, derive_seed(cfg.seed, 0x5E31))
    if strategy in NEEDS_PRETRAINED and pretrained is not None:
        ms2l = copy.deepcopy(pretrained).to(ctx.device)
    else:
        ms2l = new_model(cfg, data, ctx.device)
    ctx.say(f"[{strategy}] {len(train_idx)} labelled training samples "
            f"({'pretrained' if pretrained is not None and strategy in NEEDS_PRETRAINED else 'random'} encoder)")
    if strategy == "knn":
        result = _knn(cfg, data, splits, train_idx, ms2l, ctx)
    elif strategy == "linear":
        for p in ms2l.parameters():
            p.requires_grad_(False)
        result = _linear(cfg, data, splits, train_idx, ms2l, ctx)
    else:
        result = _train_classifier(cfg, data, splits, train_idx, ms2l, ctx)
    result.metrics["train_labelled"] = float(len(train_idx))
    result.metrics.update(Precision.make(cfg.precision, ctx.device).metrics())  # the resolved precision
    return result
