"""The evaluation strategies, defined once: what each one starts from, trains and needs.

The paper (MS²L, arXiv:2010.05599, §4.3) evaluates a pretrained encoder four ways — linear evaluation,
fine-tuning, semi-supervised fine-tuning and joint training of the pretext tasks with the classifier — and
compares them with a supervised encoder trained from scratch; this platform adds pretrain-then-joint and
KNN. The config validator (``config.STRATEGIES``), the evaluation loop (:mod:`ms2l_ray.train.evaluate`) and
the experiment runner (``studies``, which pretrains only when an evaluation uses the encoder) all read this
table, so a strategy's meaning cannot drift between them. Pure data: no torch import, so the config layer
validates strategy names cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Trains = Literal["nothing", "probe", "encoder"]
"""What gradient steps update: nothing (KNN), a linear probe on the frozen encoder, or the encoder too."""


@dataclass(frozen=True)
class Strategy:
    """One evaluation strategy.

    Attributes:
        name: the ``evaluation.strategy`` value.
        pretrained: starts from the pretrained encoder when one is given (a random one otherwise, the usual
            baseline); False for the from-scratch strategies, which ignore any pretrained encoder.
        trains: what the strategy trains (:data:`Trains`); ``"nothing"`` and ``"probe"`` freeze the encoder.
        ssl_losses: the MS²L pretext losses are trained alongside the cross-entropy (joint training).
        partial_labels: uses a stratified ``label_fraction < 1`` of the training labels (semi-supervised).
    """

    name: str
    pretrained: bool
    trains: Trains
    ssl_losses: bool = False
    partial_labels: bool = False

    @property
    def frozen_encoder(self) -> bool:
        """Whether the encoder's weights stay as given (linear probe, KNN)."""
        return self.trains != "encoder"


TABLE: tuple[Strategy, ...] = (
    Strategy("linear", pretrained=True, trains="probe"),
    Strategy("finetune", pretrained=True, trains="encoder"),
    Strategy("semi", pretrained=True, trains="encoder", partial_labels=True),
    Strategy("supervised", pretrained=False, trains="encoder"),
    Strategy("joint", pretrained=False, trains="encoder", ssl_losses=True),
    Strategy("pretrain_joint", pretrained=True, trains="encoder", ssl_losses=True),
    Strategy("knn", pretrained=True, trains="nothing"),
)
"""Every strategy, in the order the CLI and the docs list them."""

BY_NAME: dict[str, Strategy] = {s.name: s for s in TABLE}

NAMES: tuple[str, ...] = tuple(s.name for s in TABLE)
"""Every strategy name (``config.STRATEGIES``)."""

USES_PRETRAINED: tuple[str, ...] = tuple(s.name for s in TABLE if s.pretrained)
"""Strategies that start from the pretrained encoder when one is given."""

FROM_SCRATCH: tuple[str, ...] = tuple(s.name for s in TABLE if not s.pretrained)
"""Strategies that build a fresh encoder: an experiment made only of these needs no pretraining."""


def strategy(name: str) -> Strategy:
    """The table row for ``name``; a ``KeyError`` naming the known strategies otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown evaluation strategy {name!r}; expected one of {list(NAMES)}") from None
