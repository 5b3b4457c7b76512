"""Pretext-task health: flags a pretraining run whose self-supervised signal is likely useless.

A multi-task pretraining run can "succeed" (losses fall, no error) while one task teaches the encoder
nothing: a jigsaw head stuck at chance, a contrastive task solved before it could shape the features, one
loss term so small next to another that its gradient is noise, or an encoder whose pooled features have
collapsed to (nearly) one point. None of these shows in a final accuracy table, so every pretraining run is
judged from its own per-epoch history and the notes travel with the result (``PretrainResult.health``, the
MLflow ``health`` tag, ``ms2l report``).

:func:`assess` is pure: history in, notes out. It judges only active tasks (weight > 0), on the
validation metrics of the last epoch when there are any (they use a fixed augmentation stream and are
not averaged over a changing model), else on the training metrics. :func:`embedding_stats` computes the
``val_emb_*`` metrics that the collapse check reads; pretraining logs them with its last-epoch KNN probe.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch

#: Binomial standard errors within which a validation accuracy counts as "no better than chance": the band
#: is chance + 2·sqrt(p(1 − p)/n) with p = 1/k! and n the validation size, one-sided, so a task that truly
#: sits at chance is flagged ~97.5 % of the time. It scales with the validation set: the quick grid's 117
#: validation clips give chance 0.167 + 0.069, the small preset's 298 give + 0.043, a smoke run's 10 give
#: + 0.236 — so wide that there only the loss criterion below is informative.
CHANCE_SE = 2.0

#: Relative distance of the jigsaw loss from ``ln k!`` (the cross-entropy of a uniform prediction over k!
#: permutations) within which the task counts as stuck. 3 % of ln 6 ≈ 0.054 nats: a head whose loss stays
#: that close to uniform after training has learned almost nothing. Used on its own when the validation
#: size (and hence the accuracy band) is unknown.
CHANCE_LOSS_REL = 0.03

#: Accuracy at the first epoch at or above which a task is "solved from the start": its loss is then
#: near zero for the rest of training and it stops shaping the encoder (with the built-in data and small
#: batches the contrastive views share most frames, so instance discrimination can be trivial).
TRIVIAL_ACC = 0.99

#: Largest tolerated ratio between the largest and the smallest active *weighted* loss term (w·L). Adam
#: normalises the update of each parameter by its gradient scale, but all tasks share the encoder: two
#: orders of magnitude apart, the small term's gradient is noise on the shared weights, and the run is
#: effectively single-task (the weights, not the task, decided it). The quick grid's "all" cell ends at
#: 14× (contrastive 4.2 vs motion 0.29, weights 1), which is not flagged.
SCALE_RATIO = 100.0

#: Mean per-dimension std of the pooled validation embeddings below which the encoder has collapsed:
#: every clip maps to (nearly) the same point. GRU outputs are tanh-bounded in (-1, 1) and the pooled
#: validation features of the quick grid's cells (8 epochs, hidden 64) measured 0.11–0.27, so 1e-3 is two
#: orders of magnitude below a working encoder.
COLLAPSE_STD = 1e-3

#: A dimension is "dead" when its std is below this fraction of the mean std over dimensions (relative,
#: so it does not depend on the feature scale): it carries no information about the clip.
DEAD_DIM_REL = 1e-3

#: Fraction of dead dimensions at or above which the embedding is flagged as partially collapsed: a
#: quarter of the representation constant across clips wastes capacity that linear evaluation pays for.
DEAD_FRACTION = 0.25

CHANCE, TRIVIAL, SCALE, COLLAPSE = "chance", "trivial", "scale", "collapse"
TASKS = ("motion", "jigsaw", "contrastive")
ACCURACY_TASKS = ("jigsaw", "contrastive")  # tasks that log ``<task>_acc``


@dataclass(frozen=True)
class HealthNote:
    """One finding of the pretext-task health check.

    ``task``: motion | jigsaw | contrastive | encoder; ``kind``: chance | trivial | scale | collapse;
    ``message``: one human-readable line with the numbers behind it.
    """

    task: str
    kind: str
    message: str


def embedding_stats(features: torch.Tensor) -> dict[str, float]:
    """Spread of pooled embeddings ``[N, H]``: ``emb_std_mean``, ``emb_std_min``, ``emb_dead_frac``, ``samples``.

    Per-dimension population std over the N clips; a dimension is dead when its std is below
    :data:`DEAD_DIM_REL` × the mean std. Empty dict for fewer than 2 clips (no spread to measure).
    """
    if features.dim() != 2 or features.shape[0] < 2 or features.shape[1] == 0:
        return {}
    std = features.double().std(dim=0, correction=0)
    mean = float(std.mean())
    dead = float((std < DEAD_DIM_REL * mean).double().mean()) if mean > 0 else 1.0
    return {"emb_std_mean": mean, "emb_std_min": float(std.min()), "emb_dead_frac": dead,
            "samples": float(features.shape[0])}


def _weights(cfg: Any) -> dict[str, float]:
    t = cfg.tasks
    return {"motion": float(t.motion_weight), "jigsaw": float(t.jigsaw_weight),
            "contrastive": float(t.contrastive_weight)}


def _pick(epoch: dict[str, float], key: str) -> tuple[str, float] | None:
    """(split, value) of ``key``: validation if the epoch has it, else training."""
    for split in ("val", "train"):
        value = epoch.get(f"{split}_{key}")
        if value is not None and math.isfinite(value):
            return split, float(value)
    return None


def _chance(last: dict[str, float], segments: int) -> HealthNote | None:
    classes = math.factorial(segments)
    chance_acc, chance_loss = 1.0 / classes, math.log(classes)
    acc, loss = _pick(last, "jigsaw_acc"), _pick(last, "jigsaw_loss")
    reasons = []
    n = last.get("val_samples")
    if acc is not None and acc[0] == "val" and n:
        band = CHANCE_SE * math.sqrt(chance_acc * (1 - chance_acc) / n)
        if acc[1] <= chance_acc + band:
            reasons.append(f"{acc[0]} accuracy {acc[1]:.3f} ≤ chance 1/{classes} = {chance_acc:.3f} + "
                           f"{CHANCE_SE:g} SE ({band:.3f}, n = {n:.0f})")
    if loss is not None and abs(loss[1] - chance_loss) <= CHANCE_LOSS_REL * chance_loss:
        reasons.append(f"{loss[0]} loss {loss[1]:.3f} within {100 * CHANCE_LOSS_REL:g} % of ln {segments}! "
                       f"= {chance_loss:.3f}")
    if not reasons:
        return None
    return HealthNote("jigsaw", CHANCE, "jigsaw stuck at chance at the last epoch: " + "; ".join(reasons))


def _trivial(first: dict[str, float], task: str) -> HealthNote | None:
    """The ``trivial`` note when epoch 1 shows ``task`` solved from initialisation, else None.

    Judged on the *training* accuracy of epoch 1: it averages over the epoch's steps from the untrained
    model on, so ≈ 1 there means the task was solved from initialisation — the signal its gradient sees.
    (Validation after epoch 1 can read lower for a reason unrelated to difficulty: eval-mode BatchNorm uses
    running statistics that a few steps have not settled.) Falls back to validation without training keys.
    """
    acc = next(((split, first[f"{split}_{task}_acc"]) for split in ("train", "val")
                if math.isfinite(first.get(f"{split}_{task}_acc", math.nan))), None)
    if acc is None or acc[1] < TRIVIAL_ACC:
        return None
    return HealthNote(task, TRIVIAL, f"{task} solved from the first epoch: {acc[0]} accuracy {acc[1]:.3f} ≥ "
                                     f"{TRIVIAL_ACC:g} at epoch 1 (the task barely shapes the encoder)")


def _scale(last: dict[str, float], weights: dict[str, float]) -> HealthNote | None:
    terms: dict[str, tuple[str, float]] = {}
    for task, w in weights.items():
        loss = _pick(last, f"{task}_loss") if w > 0 else None
        if loss is not None:
            terms[task] = (loss[0], w * loss[1])
    if len(terms) < 2:
        return None
    big = max(terms, key=lambda k: terms[k][1])
    small = min(terms, key=lambda k: terms[k][1])
    hi, lo = terms[big][1], terms[small][1]
    if lo > 0 and hi / lo <= SCALE_RATIO:
        return None
    ratio = f"{hi / lo:.0f}×" if lo > 0 else "unbounded"
    return HealthNote(small, SCALE, f"loss scales differ: weighted {big} term {hi:.4g} vs {small} {lo:.4g} "
                                    f"({ratio} > {SCALE_RATIO:g}×, {terms[small][0]}, last epoch); "
                                    f"rebalance tasks.{small}_weight")


def _collapse(last: dict[str, float]) -> list[HealthNote]:
    mean, dead = last.get("val_emb_std_mean"), last.get("val_emb_dead_frac")
    notes = []
    if mean is not None and not mean >= COLLAPSE_STD:  # also catches NaN
        notes.append(HealthNote("encoder", COLLAPSE, f"collapsed features: mean per-dimension std of the pooled "
                                                     f"validation embeddings {mean:.2e} < {COLLAPSE_STD:g}"))
    elif dead is not None and dead >= DEAD_FRACTION:
        notes.append(HealthNote("encoder", COLLAPSE, f"partially collapsed features: {100 * dead:.0f} % of "
                                                     f"embedding dimensions have std < {DEAD_DIM_REL:g} × the mean "
                                                     f"std ({mean:.3g})"))
    return notes


def assess(history: list[dict[str, float]], cfg: Any) -> list[HealthNote]:
    """Health notes of one pretraining run (empty when nothing looks wrong).

    Args:
        history: per-epoch metrics as :func:`ms2l_ray.train.pretrain.pretrain` records them
            (``train_``/``val_`` + ``motion_loss``, ``jigsaw_loss``, ``jigsaw_acc``, ``contrastive_loss``,
            ``contrastive_acc``; ``val_emb_std_mean``, ``val_emb_dead_frac``, ``val_samples`` at KNN epochs).
        cfg: the run's :class:`~ms2l_ray.config.Config` (task weights, jigsaw segments).
    """
    if not history:
        return []
    weights = _weights(cfg)
    first, last = history[0], history[-1]
    notes: list[HealthNote] = []
    if weights["jigsaw"] > 0:
        note = _chance(last, int(cfg.tasks.jigsaw_segments))
        if note:
            notes.append(note)
    for task in ACCURACY_TASKS:
        note = _trivial(first, task) if weights[task] > 0 else None
        if note:
            notes.append(note)
    note = _scale(last, weights)
    if note:
        notes.append(note)
    return notes + _collapse(last)


def health_tag(notes: list[HealthNote]) -> str:
    """The MLflow ``health`` tag: a JSON list of the notes' messages (``[]`` when healthy).

    At most one note per check and task (≤ 6, each well under 300 characters), so the tag stays far below
    MLflow's tag length limit.
    """
    return json.dumps([n.message for n in notes], ensure_ascii=False)


def parse_health_tag(value: str | None) -> list[str] | None:
    """Messages of a ``health`` tag; ``None`` when the run has none (older runs) or it does not parse."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return [str(m) for m in parsed] if isinstance(parsed, list) else None
