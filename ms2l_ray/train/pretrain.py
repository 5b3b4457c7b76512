"""MS²L pretraining loop (paper §3; reference ``procedure.py``), plain PyTorch.

Every epoch re-seeds from ``(seed, epoch, rank)``, so a run resumed from an epoch-boundary checkpoint
replays the same batches, augmentations and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ms2l_ray.config import Config, to_dict
from ms2l_ray.data.container import SkeletonSet, Splits
from ms2l_ray.model.ms2l import MS2L, PretrainOutput, build_ms2l
from ms2l_ray.train.batches import eval_batches, padded_lengths, train_batches
from ms2l_ray.train.collectives import all_reduce_sum
from ms2l_ray.train.features import extract_features
from ms2l_ray.train.guard import NonFiniteGuard
from ms2l_ray.train.health import HealthNote, assess, embedding_stats
from ms2l_ray.train.knn import knn_accuracy
from ms2l_ray.train.loop import Fit, LoopContext, Progress
from ms2l_ray.train.optim import build_optimizer, clip_per_module
from ms2l_ray.train.precision import Precision
from ms2l_ray.train.probe_proxy import linear_probe_accuracy
from ms2l_ray.train.runtime import cpu_generator, derive_seed, seed_everything


@dataclass
class PretrainResult:
    """What pretraining returns: the trained model, per-epoch history, last metrics and health notes.

    The model is unwrapped, on its device; the pretext-task health notes are :func:`ms2l_ray.train.health.assess`
    of the history (empty when healthy).
    """

    model: MS2L
    history: list[dict[str, float]] = field(default_factory=list)
    health: list[HealthNote] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics (empty before any epoch ran)."""
        return self.history[-1] if self.history else {}


def new_model(cfg: Config, data: SkeletonSet, device: torch.device) -> MS2L:
    """Build the model with an init that depends on ``cfg.seed`` only (identical on every rank)."""
    seed_everything(derive_seed(cfg.seed, 0xC0DE))
    return build_ms2l(cfg.model, cfg.tasks, data.num_features).to(device)


def bucket_lengths(cfg: Config, data: SkeletonSet, idx: np.ndarray) -> np.ndarray | None:
    """Padded lengths of ``idx`` for the length-bucketed batch plans when ``data.bucketing`` is on, else None.

    None selects the random plans (:mod:`ms2l_ray.train.batches`).
    """
    return padded_lengths(data.lengths, idx, cfg.data.max_frames) if cfg.data.bucketing else None


@torch.no_grad()
def _validate(model: torch.nn.Module, cfg: Config, data: SkeletonSet, idx: np.ndarray,
              ctx: LoopContext, precision: Precision) -> dict[str, float]:
    """Mean pretext losses/accuracies on the validation part, with a fixed augmentation stream."""
    model.eval()
    gen = cpu_generator(derive_seed(cfg.seed, 0x7A1))
    sums: dict[str, float] = defaultdict(float)
    count = 0
    for b in eval_batches(idx, cfg.pretrain.batch_size, rank=ctx.rank, world_size=ctx.world_size,
                          lengths=bucket_lengths(cfg, data, idx)):
        if len(b) < 2:
            continue
        x, lengths, _ = data.batch(b, cfg.data.max_frames)
        with precision.autocast():
            out = model(x.to(ctx.device), lengths.to(ctx.device), gen)
        for k, v in {"loss": out.loss, **out.metrics}.items():
            sums[k] += float(v) * len(b)
        count += len(b)
    keys = sorted(sums)
    totals = all_reduce_sum(torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64))
    n = float(totals[-1])
    return {f"val_{k}": float(totals[i]) / n for i, k in enumerate(keys)} if n else {}


def knn_probe(model: MS2L, cfg: Config, data: SkeletonSet, splits: Splits, ctx: LoopContext,
              precision: Precision | None = None) -> dict[str, float]:
    """KNN top-1/top-5 on validation features against the training bank, and a linear probe on the same features.

    The two early-stopping proxies a search chooses between (``proxy: val_knn_top1`` or ``val_probe_top1``;
    :mod:`ms2l_ray.train.probe_proxy` says why the second exists). Plus the validation embeddings' spread
    (``val_emb_std_mean/min``, ``val_emb_dead_frac``, ``val_samples``) that the collapse check of
    :mod:`ms2l_ray.train.health` reads — the features are already extracted here.
    """
    model.eval()
    kw: dict[str, Any] = dict(batch_size=cfg.pretrain.batch_size, max_frames=cfg.data.max_frames, device=ctx.device,
                              rank=ctx.rank, world_size=ctx.world_size, bucketing=cfg.data.bucketing,
                              precision=precision or Precision.make(cfg.precision, ctx.device))
    bank, bank_y = extract_features(model.encode, data, splits.train, **kw)
    query, query_y = extract_features(model.encode, data, splits.val, **kw)
    acc = knn_accuracy(bank, bank_y, query, query_y, data.num_classes, cfg.evaluation.knn_k,
                       cfg.evaluation.knn_temperature)
    probe = linear_probe_accuracy(bank, bank_y, query, query_y, data.num_classes)
    spread = {f"val_{k}": v for k, v in embedding_stats(query).items()}
    return {"val_knn_top1": acc["top1"], "val_knn_top5": acc["top5"], "val_probe_top1": probe["top1"],
            "val_probe_top5": probe["top5"], **spread}


def _step_plan(cfg: Config, data: SkeletonSet, splits: Splits, ctx: LoopContext) -> tuple[np.ndarray | None, int]:
    """The training part's padded lengths (length-bucketed plans, else None) and this rank's steps per epoch.

    A training part too small for one batch raises here, before any epoch.
    """
    lengths = bucket_lengths(cfg, data, splits.train)
    n_steps = len(train_batches(splits.train, cfg.pretrain.batch_size, seed=cfg.seed, epoch=0, rank=ctx.rank,
                                world_size=ctx.world_size, lengths=lengths))
    if n_steps == 0:
        raise ValueError(f"training part has {len(splits.train)} samples: too few for batch size "
                         f"{cfg.pretrain.batch_size}")
    return lengths, n_steps


def _restore(resume: dict[str, Any], fit: Fit, precision: Precision,
             ctx: LoopContext) -> tuple[int, list[dict[str, float]]]:
    """Load a ``make_state()`` checkpoint; return the first epoch still to run and the history so far.

    The epoch re-seeding of :func:`_train_epoch` makes the continued run replay what an uninterrupted one
    would have done, so the weights, optimiser moments, schedule and loss scale are all that is restored.
    """
    fit.model.load_state_dict(resume["model"])
    fit.opt.load_state_dict(resume["optimizer"])
    fit.sched.load_state_dict(resume["scheduler"])
    precision.load_state_dict(resume.get("scaler"))
    start = int(resume["epoch"]) + 1
    ctx.say(f"[pretrain] resuming after epoch {start}")
    return start, list(resume["history"])


def _step_terms(out: PretrainOutput) -> dict[str, torch.Tensor]:
    """The step's total loss first, then each pretext task's loss (what the non-finite guard names)."""
    return {"loss": out.loss, **{k: v for k, v in out.metrics.items() if k.endswith("_loss")}}


def _train_epoch(cfg: Config, fit: Fit, data: SkeletonSet, batches: list[np.ndarray], epoch: int, ctx: LoopContext,
                 precision: Precision, progress: Progress) -> tuple[dict[str, float], int]:
    """One epoch of the summed MS²L losses (arXiv:2010.05599 §3: motion prediction, jigsaw, contrastive).

    Runs over this rank's batches; returns the sample-weighted sums of the step metrics and the samples counted.

    Re-seeded from ``(seed, epoch, rank)`` so a resumed run replays the same masks, jigsaw orders and dropout.
    A step the guard skips is neither applied nor counted in the means.
    """
    seed_everything(derive_seed(cfg.seed, epoch, ctx.rank, 1))
    gen = cpu_generator(derive_seed(cfg.seed, epoch, ctx.rank, 2))
    fit.wrapped.train()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    progress.restart_epoch_clock()
    for step, b in enumerate(batches):
        x, lengths, _ = data.batch(b, cfg.data.max_frames)
        with precision.autocast():
            out = fit.wrapped(x.to(ctx.device), lengths.to(ctx.device), gen)
        fit.opt.zero_grad(set_to_none=True)
        if not fit.guard.ok(epoch, step, _step_terms(out)):
            continue
        precision.backward(out.loss)
        precision.step(fit.opt, lambda: clip_per_module(fit.model.children(), cfg.pretrain.grad_clip))
        values = {"loss": float(out.loss.detach()), **{k: float(v.detach()) for k, v in out.metrics.items()}}
        for k, v in values.items():
            sums[k] += v * len(b)
        seen += len(b)
        progress.step(epoch, step, values)
    return sums, seen


def _epoch_metrics(sums: dict[str, float], seen: int, epoch: int, lr: float, elapsed: float, ctx: LoopContext,
                   precision: Precision) -> dict[str, float]:
    """The epoch's training metrics: ``train_*`` means, ``epoch``, ``lr``, time, throughput and precision.

    The ``lr`` is the epoch's, throughput is clips per second over all ranks, the precision the resolved one.
    """
    metrics = {f"train_{k}": v / seen for k, v in sums.items()}
    metrics.update(epoch=float(epoch + 1), lr=lr, epoch_time_s=elapsed,
                   throughput_seq_s=seen * ctx.world_size / max(elapsed, 1e-9), **precision.metrics())
    return metrics


def _knn_due(cfg: Config, splits: Splits, epoch: int) -> bool:
    """Whether this epoch runs the KNN probe: every ``knn_every`` epochs and always the last one.

    So every run reports the early-stopping proxy (needs a validation part).
    """
    last = epoch + 1 == cfg.pretrain.epochs
    return bool(len(splits.val)) and (last or bool(cfg.knn_every and (epoch + 1) % cfg.knn_every == 0))


def _report_health(history: list[dict[str, float]], cfg: Config, ctx: LoopContext) -> list[HealthNote]:
    """Assess the pretext tasks over the history and say what was found (or that nothing was)."""
    health = assess(history, cfg)
    for note in health:
        ctx.say(f"[health] {note.task} ({note.kind}): {note.message}")
    if not health:
        ctx.say("[health] pretext tasks look healthy (no chance-level, trivial, scale or collapse findings)")
    return health


def pretrain(cfg: Config, data: SkeletonSet, splits: Splits, ctx: LoopContext | None = None,
             resume: dict[str, Any] | None = None) -> PretrainResult:
    """Pretrain MS²L on the training part (labels unused) and report per-epoch metrics to the hooks.

    The pretext tasks of arXiv:2010.05599 §3 train together from one encoder; every epoch also scores the
    pretext losses on validation and, per :func:`_knn_due`, the KNN probe.

    Args:
        cfg: the run's config (model, ``pretrain`` schedule, pretext-task weights, precision, seed).
        data: the skeleton set; its labels serve only the KNN probe, never the pretext losses.
        splits: ``train`` is trained on, ``val`` scores the pretext losses and the KNN probe.
        ctx: rank, device, DDP wrapping and epoch hooks (default: one CPU process, no hooks).
        resume: a checkpoint dict from a hook's ``make_state()``; training continues after its epoch.
    """
    ctx = ctx or LoopContext()
    model = new_model(cfg, data, ctx.device)
    wrapped = ctx.wrap_model(model)
    opt, sched = build_optimizer(model.parameters(), cfg.pretrain)
    precision = Precision.make(cfg.precision, ctx.device)
    epochs, o = cfg.pretrain.epochs, cfg.pretrain
    train_lengths, n_steps = _step_plan(cfg, data, splits, ctx)
    progress = Progress(ctx, epochs, n_steps, cfg.log_every, "pretrain")
    guard = NonFiniteGuard("pretrain", o.nonfinite_patience, "pretrain.nonfinite_patience", n_steps, ctx.say)
    fit = Fit(model, wrapped, opt, sched, guard)
    start, history = _restore(resume, fit, precision, ctx) if resume is not None else (0, [])
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        batches = train_batches(splits.train, o.batch_size, seed=cfg.seed, epoch=epoch, rank=ctx.rank,
                                world_size=ctx.world_size, lengths=train_lengths)
        sums, seen = _train_epoch(cfg, fit, data, batches, epoch, ctx, precision, progress)
        lr = fit.close_epoch(epoch)
        metrics = _epoch_metrics(sums, seen, epoch, lr, time.perf_counter() - t0, ctx, precision)
        metrics.update(_validate(wrapped, cfg, data, splits.val, ctx, precision))
        if _knn_due(cfg, splits, epoch):
            metrics.update(knn_probe(model, cfg, data, splits, ctx, precision))
        history.append(metrics)
        _report_epoch(ctx, epoch, metrics, fit, history, cfg, data, precision)
    return PretrainResult(model=model, history=history, health=_report_health(history, cfg, ctx))


def _report_epoch(ctx: LoopContext, epoch: int, metrics: dict[str, float], fit: Fit, history: list[dict[str, float]],
                  cfg: Config, data: SkeletonSet, precision: Precision) -> None:
    """Log the epoch's line and hand the epoch to the hooks with a lazy checkpoint.

    The checkpoint holds what :func:`_restore` needs to resume after this epoch.
    """
    ctx.say(f"[pretrain] epoch {epoch + 1}/{cfg.pretrain.epochs} " + " ".join(
        f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith(("train_", "val_"))))

    def make_state() -> dict[str, Any]:
        # Deep copies: state_dict() aliases live tensors that the next step would overwrite.
        return copy.deepcopy({"kind": "pretrain", "epoch": epoch, "model": fit.model.state_dict(),
                              "optimizer": fit.opt.state_dict(), "scheduler": fit.sched.state_dict(),
                              "history": list(history), "config": to_dict(cfg),
                              "num_features": data.num_features, "scaler": precision.state_dict()})

    for hook in ctx.hooks:
        hook(epoch, metrics, make_state)
