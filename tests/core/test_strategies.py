"""The one strategy table: its derived views, and that the evaluation loop does what each row says."""

from __future__ import annotations

import pytest
import torch

from ms2l_ray import strategies
from ms2l_ray.config import STRATEGIES, ConfigError, load_config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.train.evaluate import evaluate
from ms2l_ray.train.loop import LoopContext
from ms2l_ray.train.pretrain import pretrain

QUIET = LoopContext(progress=False)


def test_derived_views_of_the_table() -> None:
    assert STRATEGIES is strategies.NAMES
    assert STRATEGIES == ("linear", "finetune", "semi", "supervised", "joint", "pretrain_joint", "knn")
    assert strategies.USES_PRETRAINED == ("linear", "finetune", "semi", "pretrain_joint", "knn")
    assert strategies.FROM_SCRATCH == ("supervised", "joint")
    assert [s.name for s in strategies.TABLE if s.frozen_encoder] == ["linear", "knn"]
    assert [s.name for s in strategies.TABLE if s.ssl_losses] == ["joint", "pretrain_joint"]
    assert [s.name for s in strategies.TABLE if s.partial_labels] == ["semi"]
    assert strategies.strategy("semi") is strategies.BY_NAME["semi"]
    with pytest.raises(KeyError, match=r"unknown evaluation strategy 'probe'; expected one of \['linear'"):
        strategies.strategy("probe")


def test_partial_label_row_drives_config_validation() -> None:
    with pytest.raises(ConfigError, match="must be < 1 for the semi-supervised strategy"):
        load_config("smoke", overrides=["evaluation.strategy=semi"])
    assert load_config("smoke", overrides=["evaluation.strategy=finetune"]).evaluation.label_fraction == 1.0


def test_from_scratch_rows_ignore_the_pretrained_encoder() -> None:
    """``pretrained=False`` rows: the same numbers with or without a pretrained encoder; a ``pretrained=True``
    row (finetune) changes with it."""
    cfg = load_config("smoke", overrides=["data.builtin_sequences=160", "evaluation.optim.epochs=1"])
    data, splits = load_dataset(cfg.data, cfg.seed)
    pre = pretrain(load_config("smoke", overrides=["data.builtin_sequences=160", "pretrain.epochs=1"]),
                   data, splits, QUIET).model
    with torch.no_grad():  # a clearly different encoder: any use of it would show in the numbers
        for p in pre.encoder.parameters():
            p.add_(0.5)
    for name in ("supervised", "finetune"):
        ev = load_config("smoke", overrides=["data.builtin_sequences=160", "evaluation.optim.epochs=1",
                                             f"evaluation.strategy={name}"])
        given, none = evaluate(ev, data, splits, pre, QUIET).history, evaluate(ev, data, splits, None, QUIET).history
        same = [h["train_loss"] for h in given] == [h["train_loss"] for h in none]
        assert same is (not strategies.strategy(name).pretrained), name
