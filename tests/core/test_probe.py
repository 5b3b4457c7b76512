"""The fair linear probe: a per-encoder lr × standardisation grid chosen on validation (issue 16, item 6)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ms2l_ray.config import Config, ConfigError, load_config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.model.heads import LinearClassifier
from ms2l_ray.train.evaluate import ProbeChoice, evaluate, fold_standardizer, probe_grid, standardizer
from ms2l_ray.train.loop import LoopContext

QUIET = LoopContext(progress=False)


def smoke(**evaluation: object) -> Config:
    cfg = load_config("smoke", overrides=["data.builtin_sequences=160"])
    return dataclasses.replace(cfg, evaluation=dataclasses.replace(cfg.evaluation, **evaluation))  # type: ignore[arg-type]


def test_probe_grid_order_is_the_tie_break_order() -> None:
    assert probe_grid(smoke()) == [ProbeChoice(smoke().evaluation.optim.lr, False)]
    assert probe_grid(smoke(lr_grid=[0.1, 0.01], standardize="select")) == [
        ProbeChoice(0.1, False), ProbeChoice(0.01, False), ProbeChoice(0.1, True), ProbeChoice(0.01, True)]
    assert probe_grid(smoke(lr_grid=[0.5], standardize="on")) == [ProbeChoice(0.5, True)]


def test_standardizer_uses_the_given_features_only_and_floors_dead_dimensions() -> None:
    train = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    mean, std = standardizer(train)
    assert mean.tolist() == [2.0, 5.0]
    assert std.tolist() == pytest.approx([1.0, 1e-6])


def test_folded_standardizer_computes_the_same_logits_on_raw_features() -> None:
    torch.manual_seed(0)
    raw = torch.randn(12, 5) * torch.tensor([10.0, 0.1, 1.0, 3.0, 0.5]) + 4.0
    mean, std = standardizer(raw)
    clf = LinearClassifier(5, 3)
    expected = clf((raw - mean) / std)
    fold_standardizer(clf, mean, std)
    assert torch.allclose(clf(raw), expected, atol=1e-5)


def test_config_rejects_bad_probe_fields_by_dotted_key() -> None:
    with pytest.raises(ConfigError, match=r"evaluation.lr_grid: every learning rate must be finite and > 0"):
        load_config("smoke", overrides=["evaluation.lr_grid=[0.1, -1]"])
    with pytest.raises(ConfigError, match=r"evaluation.lr_grid: expected a list of numbers, got str 'fast'"):
        load_config("smoke", overrides=["evaluation.lr_grid=fast"])
    with pytest.raises(ConfigError, match=r"evaluation.standardize: must be one of \('off', 'on', 'select'\)"):
        load_config("smoke", overrides=["evaluation.standardize=maybe"])
    assert load_config("smoke", overrides=["evaluation.lr_grid=[1, 0.1]"]).evaluation.lr_grid == [1.0, 0.1]


def test_grid_probe_keeps_the_best_validation_setting_and_records_it() -> None:
    base = smoke()
    data, splits = load_dataset(base.data, base.seed)
    singles = {}
    for lr in (1e-4, 0.1):
        for st in (False, True):
            r = evaluate(smoke(lr_grid=[lr], standardize="on" if st else "off"), data, splits, None, QUIET)
            singles[(lr, st)] = r.metrics
    grid = evaluate(smoke(lr_grid=[1e-4, 0.1], standardize="select"), data, splits, None, QUIET).metrics
    order = [(1e-4, False), (0.1, False), (1e-4, True), (0.1, True)]
    vals = [singles[k]["val_top1"] for k in order]
    chosen = order[vals.index(max(vals))]  # first best in grid order
    assert (grid["probe_lr"], bool(grid["probe_standardized"])) == chosen
    for key in ("val_top1", "test_top1", "best_epoch"):
        assert grid[key] == singles[chosen][key]


def test_default_probe_is_the_reference_probe() -> None:
    """No grid: the configured optimiser on raw features, exactly as before the grid existed."""
    cfg = smoke()
    data, splits = load_dataset(cfg.data, cfg.seed)
    a = evaluate(cfg, data, splits, None, QUIET).metrics
    b = evaluate(smoke(lr_grid=[cfg.evaluation.optim.lr], standardize="off"), data, splits, None, QUIET).metrics
    assert a == b
    assert a["probe_lr"] == cfg.evaluation.optim.lr and a["probe_standardized"] == 0.0
