"""Evaluation strategies of the paper (§4.3) plus KNN, in plain PyTorch.

- ``linear``: frozen encoder, linear classifier on pooled features (features cached once).
- ``finetune``: pretrained encoder and classifier trained together.
- ``semi``: fine-tuning with a stratified ``label_fraction`` of the training labels (1 %, 10 %, ...).
- ``supervised``: randomly initialised encoder trained with labels only.
- ``joint``: fresh model trained on cross-entropy + the MS²L losses together.
- ``pretrain_joint``: pretrained model, then joint training.
- ``knn``: weighted KNN on frozen features, no training.

Model selection uses the validation part (held out of training); the test part is evaluated once, with
the weights of the best validation epoch, and reported only (:func:`_select_on_val`). What each strategy
starts from and trains is the table in :mod:`ms2l_ray.strategies`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ms2l_ray.config import Config, OptimConfig
from ms2l_ray.data.container import SkeletonSet, Splits, label_subset
from ms2l_ray.model.heads import LinearClassifier
from ms2l_ray.model.ms2l import MS2L
from ms2l_ray.strategies import Strategy, strategy
from ms2l_ray.train.batches import eval_batches, train_batches
from ms2l_ray.train.classifier import ClassifierModel, ClassifierOutput
from ms2l_ray.train.collectives import all_reduce_sum
from ms2l_ray.train.features import extract_features
from ms2l_ray.train.guard import NonFiniteGuard
from ms2l_ray.train.knn import knn_accuracy, knn_logits
from ms2l_ray.train.loop import Fit, LoopContext, Progress, unwrap
from ms2l_ray.train.metrics import confusion_matrix, topk_correct
from ms2l_ray.train.optim import build_optimizer, clip_per_module
from ms2l_ray.train.precision import Precision
from ms2l_ray.train.pretrain import bucket_lengths, new_model
from ms2l_ray.train.runtime import cpu_generator, derive_seed, seed_everything


@dataclass
class EvalResult:
    """Final metrics (``val_top1`` … ``test_top5``, ``best_epoch``), per-epoch history, test confusion matrix."""

    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    confusion: np.ndarray | None = None
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
    """Percentages and confusion summed over the ranks: each rank scored a disjoint shard of the part."""
    hits, cm = all_reduce_sum(hits), all_reduce_sum(cm)
    return _percentages(hits, prefix), cm


@torch.no_grad()
def _evaluate_model(model: nn.Module, cfg: Config, data: SkeletonSet, idx: np.ndarray, ctx: LoopContext,
                    prefix: str, precision: Precision) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1/top-5 of the classifier on the ``idx`` part (``prefix_top1`` …) and its confusion matrix."""
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
    """:func:`extract_features` keywords from the config.

    They select length-sorted batches (``data.bucketing``) and the run's precision (autocast of the frozen
    encoder).
    """
    return {"bucketing": cfg.data.bucketing, "precision": Precision.make(cfg.precision, ctx.device)}


def _finish(best: dict[str, float], history: list[dict[str, float]], cm: torch.Tensor,
            model: nn.Module | None) -> EvalResult:
    """The result with the test confusion matrix as numpy (what the artifacts writer takes)."""
    return EvalResult(metrics=best, history=history, confusion=cm.numpy(), model=model)


def _knn(cfg: Config, data: SkeletonSet, splits: Splits, train_idx: np.ndarray, ms2l: MS2L,
         ctx: LoopContext) -> EvalResult:
    """Weighted KNN of validation and test features against the training bank (:mod:`ms2l_ray.train.knn`).

    No training at all, so it shows what the frozen features separate by themselves.
    """
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

    The paper's linear evaluation (arXiv:2010.05599 §4.3) trains a linear classifier on the frozen encoder.
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
    choice = _choose_probe(cfg, raw, scaled, data.num_classes, ctx)
    feats = scaled if choice.standardize else raw
    best, clf, history = _fit_probe(cfg, feats, choice.lr, data.num_classes, ctx, hooks=True)
    test, cm = _score_probe(clf, feats, "test", data.num_classes, ctx)
    best.update(test)
    best.update(probe_lr=choice.lr, probe_standardized=float(choice.standardize))
    if choice.standardize:
        fold_standardizer(clf, mean, std)
    return _finish(best, history, cm, clf)


Features = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _choose_probe(cfg: Config, raw: Features, scaled: Features, num_classes: int, ctx: LoopContext) -> ProbeChoice:
    """The :func:`probe_grid` setting with the best validation top-1 (first best in grid order).

    Only validation decides: these probes never see the test split, so picking among them keeps test
    evaluated once. A one-setting grid trains nothing here.
    """
    grid = probe_grid(cfg)
    if len(grid) == 1:
        return grid[0]
    scores = []
    for c in grid:
        best, _, _ = _fit_probe(cfg, scaled if c.standardize else raw, c.lr, num_classes, ctx, hooks=False)
        scores.append(best["val_top1"])
        ctx.say(f"[linear] probe lr={c.lr:g} standardize={c.standardize}: val_top1={best['val_top1']:.2f}")
    return grid[int(np.argmax(scores))]


def _score_probe(clf: nn.Module, feats: Features, part: str, num_classes: int,
                 ctx: LoopContext) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1/top-5 and confusion matrix of the probe on one part's cached features."""
    f, y = feats[part]
    with torch.no_grad():
        logits = clf(f.to(ctx.device)).float().cpu() if len(f) else torch.zeros(0, num_classes)
    h, c = _scores(logits, y, num_classes)
    return _percentages(h, part), c


def _close_epoch(fit: Fit, epoch: int, total: float, seen: int) -> dict[str, float]:
    """End an epoch (:meth:`Fit.close_epoch`); its ``epoch``/``train_loss``/``lr`` metrics.

    ``lr`` is read after the schedule step, the rate the next epoch will use (as these strategies always
    reported it; pretraining reports the rate the epoch used).
    """
    fit.close_epoch(epoch)
    return {"epoch": float(epoch + 1), "train_loss": total / max(seen, 1), "lr": fit.opt.param_groups[0]["lr"]}


def _select_on_val(model: nn.Module, epochs: int, train_epoch: Callable[[int], dict[str, float]],
                   validate: Callable[[], dict[str, float]],
                   report: Callable[[int, dict[str, float]], None]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Train ``epochs`` epochs and leave ``model`` at its best validation top-1 epoch.

    The shared "select on validation, test once" skeleton of the linear probe and the classifier strategies.
    The paper reports test accuracy (arXiv:2010.05599 §4.3); picking the epoch on a validation part held out
    of training, then scoring test once with those weights, keeps the test split out of model selection.
    Returns the best epoch's ``val_top1``/``val_top5``/``best_epoch`` and the per-epoch history; ties keep
    the earlier epoch. ``report`` sees every epoch's metrics before the selection does.
    """
    best: dict[str, float] = {}
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        m = train_epoch(epoch)
        m.update(validate())
        history.append(m)
        report(epoch, m)
        if not best or m["val_top1"] > best["val_top1"]:
            best = {"val_top1": m["val_top1"], "val_top5": m["val_top5"], "best_epoch": float(epoch + 1)}
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return best, history


def _hooks(ctx: LoopContext, model: nn.Module) -> Callable[[int, dict[str, float]], None]:
    """Report an epoch to the job's hooks; the state offered is the model's weights at that epoch.

    Evaluation is not resumed from a checkpoint (a rerun starts again from the encoder, in minutes), so the
    hooks get no optimiser or history state; the weights let a hook check where the loop really ran.
    """
    def report(epoch: int, metrics: dict[str, float]) -> None:
        def make_state() -> dict[str, Any]:
            return copy.deepcopy({"kind": "evaluate", "epoch": epoch, "model": model.state_dict()})

        for hook in ctx.hooks:
            hook(epoch, metrics, make_state)

    return report


def _fit_probe(cfg: Config, feats: Features, lr: float, num_classes: int, ctx: LoopContext,
               hooks: bool) -> tuple[dict[str, float], LinearClassifier, list[dict[str, float]]]:
    """Train one probe at ``lr``; return the best-validation metrics, the classifier at that epoch, history."""
    o = dataclasses.replace(cfg.evaluation.optim, lr=lr)
    seed_everything(derive_seed(cfg.seed, 0x11EA))
    clf = LinearClassifier(feats["train"][0].shape[1], num_classes).to(ctx.device)
    wrapped = ctx.wrap_model(clf)
    opt, sched = build_optimizer(clf.parameters(), o)
    pos = np.arange(len(feats["train"][0]))
    n_steps = len(train_batches(pos, o.batch_size, seed=cfg.seed, epoch=0, rank=ctx.rank, world_size=ctx.world_size,
                                min_batch=1))
    guard = NonFiniteGuard(f"linear probe (lr={lr:g})", o.nonfinite_patience, "evaluation.optim.nonfinite_patience",
                           n_steps, ctx.say)
    fit = Fit(clf, wrapped, opt, sched, guard)
    best, history = _select_on_val(
        clf, o.epochs, lambda epoch: _probe_epoch(cfg, o, fit, feats["train"], pos, epoch, ctx),
        lambda: _score_probe(clf, feats, "val", num_classes, ctx)[0],
        _hooks(ctx, clf) if hooks else lambda epoch, m: None)
    return best, clf, history


def _probe_epoch(cfg: Config, o: OptimConfig, fit: Fit, train: tuple[torch.Tensor, torch.Tensor], pos: np.ndarray,
                 epoch: int, ctx: LoopContext) -> dict[str, float]:
    """One epoch of cross-entropy on the cached training features ``pos`` (this rank's shard of the batches)."""
    seed_everything(derive_seed(cfg.seed, epoch, ctx.rank, 3))
    fit.wrapped.train()
    total, seen = 0.0, 0
    for step, b in enumerate(train_batches(pos, o.batch_size, seed=cfg.seed, epoch=epoch, rank=ctx.rank,
                                           world_size=ctx.world_size, min_batch=1)):
        f, y = train[0][b].to(ctx.device), train[1][b].to(ctx.device)
        loss = F.cross_entropy(fit.wrapped(f), y)
        fit.opt.zero_grad(set_to_none=True)
        if not fit.guard.ok(epoch, step, {"cross_entropy": loss}):
            continue
        loss.backward()
        clip_per_module([fit.model], o.grad_clip)
        fit.opt.step()
        total, seen = total + float(loss.detach()) * len(b), seen + len(b)
    return _close_epoch(fit, epoch, total, seen)


def _classifier_losses(out: ClassifierOutput, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``loss`` first, then its terms: cross-entropy (in fp32), plus the MS²L pretext losses under joint training.

    Under joint training the paper trains the self-supervised tasks alongside the classifier (arXiv:2010.05599
    §4.3, "joint training").
    """
    ce = F.cross_entropy(out.logits.float(), y)  # fp32 loss (no-op cast under fp32)
    if out.ssl is None:
        return {"loss": ce, "cross_entropy": ce}
    terms = {k: v for k, v in out.ssl.metrics.items() if k.endswith("_loss")}
    return {"loss": ce + out.ssl.loss, "cross_entropy": ce, **terms}


def _classifier_epoch(cfg: Config, fit: Fit, data: SkeletonSet, train_idx: np.ndarray,
                      train_lengths: np.ndarray | None, epoch: int, ctx: LoopContext, precision: Precision,
                      progress: Progress) -> dict[str, float]:
    """One epoch of the encoder + classifier on this rank's shard; adds the epoch's throughput (clips/s).

    ``train_lengths``: :func:`bucket_lengths` of ``train_idx``, computed once per job.
    """
    o = cfg.evaluation.optim
    seed_everything(derive_seed(cfg.seed, epoch, ctx.rank, 4))
    gen = cpu_generator(derive_seed(cfg.seed, epoch, ctx.rank, 5))
    fit.wrapped.train()
    total, seen, t0 = 0.0, 0, time.perf_counter()
    progress.restart_epoch_clock()
    for step, b in enumerate(train_batches(train_idx, o.batch_size, seed=cfg.seed, epoch=epoch, rank=ctx.rank,
                                           world_size=ctx.world_size, lengths=train_lengths)):
        x, lengths, y = data.batch(b, cfg.data.max_frames)
        with precision.autocast():
            out = fit.wrapped(x.to(ctx.device), lengths.to(ctx.device), gen)
        terms = _classifier_losses(out, y.to(ctx.device))
        fit.opt.zero_grad(set_to_none=True)
        if not fit.guard.ok(epoch, step, terms):
            continue
        precision.backward(terms["loss"])
        precision.step(fit.opt, lambda: clip_per_module(unwrap(fit.wrapped).children(), o.grad_clip))
        total, seen = total + float(terms["loss"].detach()) * len(b), seen + len(b)
        progress.step(epoch, step, {"loss": float(terms["loss"].detach())})
    m = _close_epoch(fit, epoch, total, seen)
    m["throughput_seq_s"] = seen * ctx.world_size / max(time.perf_counter() - t0, 1e-9)
    return m


def _train_classifier(cfg: Config, data: SkeletonSet, splits: Splits, train_idx: np.ndarray, ms2l: MS2L,
                      ctx: LoopContext) -> EvalResult:
    """Fine-tune / semi / supervised / joint: the encoder trains with the classifier (arXiv:2010.05599 §4.3)."""
    row, o = strategy(cfg.evaluation.strategy), cfg.evaluation.optim
    seed_everything(derive_seed(cfg.seed, 0x11EA))
    model = ClassifierModel(ms2l, LinearClassifier(cfg.model.hidden_size, data.num_classes), row.ssl_losses)
    model = model.to(ctx.device)
    wrapped = ctx.wrap_model(model)
    opt, sched = build_optimizer(model.parameters(), o)
    precision = Precision.make(cfg.precision, ctx.device)
    train_lengths = bucket_lengths(cfg, data, train_idx)
    n_steps = len(train_batches(train_idx, o.batch_size, seed=cfg.seed, epoch=0, rank=ctx.rank,
                                world_size=ctx.world_size, lengths=train_lengths))
    if n_steps == 0:
        raise ValueError(f"{len(train_idx)} labelled training samples: too few for batch size {o.batch_size}")
    progress = Progress(ctx, o.epochs, n_steps, cfg.log_every, row.name)
    guard = NonFiniteGuard(row.name, o.nonfinite_patience, "evaluation.optim.nonfinite_patience", n_steps, ctx.say)
    fit = Fit(model, wrapped, opt, sched, guard)
    hooks = _hooks(ctx, model)

    def report(epoch: int, m: dict[str, float]) -> None:
        ctx.say(f"[{row.name}] epoch {epoch + 1}/{o.epochs} loss={m['train_loss']:.4f} val_top1={m['val_top1']:.2f}")
        hooks(epoch, m)

    def train_epoch(epoch: int) -> dict[str, float]:
        return _classifier_epoch(cfg, fit, data, train_idx, train_lengths, epoch, ctx, precision, progress)

    best, history = _select_on_val(
        model, o.epochs, train_epoch, lambda: _evaluate_model(model, cfg, data, splits.val, ctx, "val", precision)[0],
        report)
    test, cm = _evaluate_model(model, cfg, data, splits.test, ctx, "test", precision)
    best.update(test)
    return _finish(best, history, cm, model)


def _starting_model(cfg: Config, data: SkeletonSet, row: Strategy, pretrained: MS2L | None,
                    ctx: LoopContext) -> MS2L:
    """A copy of ``pretrained`` for the strategies that start from it, else a fresh seeded model."""
    if row.pretrained and pretrained is not None:
        return copy.deepcopy(pretrained).to(ctx.device)
    return new_model(cfg, data, ctx.device)


def evaluate(cfg: Config, data: SkeletonSet, splits: Splits, pretrained: MS2L | None,
             ctx: LoopContext | None = None) -> EvalResult:
    """Run ``cfg.evaluation.strategy``; ``pretrained`` is None for a randomly initialised encoder.

    Strategies that start from scratch (``supervised``, ``joint``) ignore ``pretrained``; the others fall
    back to a random encoder when given None (the usual baseline). :mod:`ms2l_ray.strategies`.
    """
    ctx = ctx or LoopContext()
    row = strategy(cfg.evaluation.strategy)
    train_idx = label_subset(splits.train, data.labels, cfg.evaluation.label_fraction, derive_seed(cfg.seed, 0x5E31))
    ms2l = _starting_model(cfg, data, row, pretrained, ctx)
    ctx.say(f"[{row.name}] {len(train_idx)} labelled training samples "
            f"({'pretrained' if pretrained is not None and row.pretrained else 'random'} encoder)")
    if row.trains == "nothing":
        result = _knn(cfg, data, splits, train_idx, ms2l, ctx)
    elif row.trains == "probe":
        ms2l.requires_grad_(False)
        result = _linear(cfg, data, splits, train_idx, ms2l, ctx)
    else:
        result = _train_classifier(cfg, data, splits, train_idx, ms2l, ctx)
    result.metrics["train_labelled"] = float(len(train_idx))
    result.metrics.update(Precision.make(cfg.precision, ctx.device).metrics())  # the resolved precision
    return result
