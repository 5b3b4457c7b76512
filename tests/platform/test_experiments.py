"""Every shipped experiment file loads and resolves to a valid config for each of its evaluations."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import EXPERIMENTS

from ms2l_ray.config import apply_delta, load_config
from ms2l_ray.studies.experiment import load_experiment

SHIPPED = sorted(EXPERIMENTS.glob("*.yaml"))


def test_the_shipped_experiments_are_found() -> None:
    assert {p.stem for p in SHIPPED} >= {"small", "smoke", "nw-ucla"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_experiment_resolves(path: Path) -> None:
    exp = load_experiment(path)
    cfg = apply_delta(load_config(exp.preset), exp.config, str(path))
    resolved = [ev.apply(cfg) for ev in exp.evaluations]
    assert [c.evaluation.strategy for c in resolved] == [ev.strategy for ev in exp.evaluations]


def test_nw_ucla_experiment_is_the_paper_scale_protocol() -> None:
    exp = load_experiment(EXPERIMENTS / "nw-ucla.yaml")
    cfg = apply_delta(load_config(exp.preset), exp.config)
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.tasks.jigsaw_segments, cfg.tasks.temperature) == (
        600, 2, 3, 0.9)
    assert (cfg.pretrain.epochs, cfg.pretrain.batch_size, cfg.pretrain.lr, cfg.data.split) == (60, 256, 1e-3, "ucla")
    assert [ev.label for ev in exp.evaluations] == ["linear", "semi_0.1", "finetune", "supervised"]
