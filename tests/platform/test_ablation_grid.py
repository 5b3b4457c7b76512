"""Ablation grids as data (no Ray): every shipped grid validates, bad grids fail naming file and key, CLI
overrides and baselines resolve per cell, and the mean ± std table's statistics, best marks and selection."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import ABLATIONS

from ms2l_ray.config import ConfigError
from ms2l_ray.studies.ablation.grid import load_grid, parse_grid
from ms2l_ray.studies.ablation.table import CellSeedRun, build_table, direction

GRIDS = sorted(ABLATIONS.glob("*.yaml"))


# ------------------------------------------------------------------------------------------ grid schema
@pytest.mark.parametrize("path", GRIDS, ids=[p.name for p in GRIDS])
def test_every_shipped_grid_loads_and_validates(path: Path) -> None:
    grid = load_grid(path)
    assert grid.cells and grid.seeds and grid.metrics
    for cell, seed in grid.cell_seeds()[:3]:
        cfg = grid.cell_config(cell, seed)
        assert cfg.seed == seed
        for ev in grid.evaluations:
            ev.apply(cfg)


def test_required_grids_are_shipped() -> None:
    names = {p.stem for p in GRIDS}
    assert {"tasks", "jigsaw_segments", "temperature", "strategies", "paper", "quick", "smoke"} <= names
    tasks = load_grid(ABLATIONS / "tasks.yaml")
    weights = {c.name: tuple(c.delta["tasks"][f"{t}_weight"] for t in ("motion", "jigsaw", "contrastive"))
               for c in tasks.cells}
    assert sorted(weights.values()) == sorted({(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)} - {(0, 0, 0)})
    segs = load_grid(ABLATIONS / "jigsaw_segments.yaml")
    assert [c.delta["tasks"]["jigsaw_segments"] for c in segs.cells] == [2, 3, 4, 5]
    strategies = load_grid(ABLATIONS / "strategies.yaml")
    assert [e.label for e in strategies.evaluations] == ["linear", "finetune", "semi_0.01", "semi_0.1", "supervised",
                                                        "joint", "pretrain_joint"]


BASE = {"name": "g", "preset": "smoke", "seeds": [0, 1], "evaluations": ["linear"], "cells": {"a": {}, "b": {}}}


@pytest.mark.parametrize("change, needle", [
    ({"sedes": [0]}, "unknown keys ['sedes']"),
    ({"seeds": []}, "seeds: must be a non-empty list"),
    ({"seeds": [0, 0]}, "seeds: has duplicates"),
    ({"cells": {"a": {"tasks": {"temprature": 0.5}}}}, "cells.a"),
    ({"cells": {"a": {"tasks": {"temprature": 0.5}}}}, "tasks.temprature: unknown key"),
    ({"cells": {"a": {"tasks": {"jigsaw_segments": 9}}}}, "tasks.jigsaw_segments: must be in 2..5"),
    ({"cells": [{"name": "a"}, {"name": "a"}]}, "cells.a: duplicate cell name"),
    ({"cells": [{"name": "a", "sett": {}}]}, "cells[0]: unknown keys ['sett']"),
    ({"cells": {"a b": {}}}, "cells[0].name"),
    ({"cells": {}}, "cells: must name at least one cell"),
    ({"config": {"pretrain": {"epochs": 0}}}, "config"),
    ({"metrics": ["linear.val_top2"]}, "unknown metric 'val_top2'"),
    ({"metrics": ["finetune.val_top1"]}, "unknown evaluation 'finetune'"),
    ({"evaluations": [{"strategy": "lineer"}]}, "evaluations[0].strategy"),
    ({"preset": "huge"}, "preset: must be one of"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"baselines": ["randm"]}, "baselines[0]: unknown baseline 'randm'; known: ['random', 'supervised']"),
    ({"baselines": [3]}, "baselines[0]: must be a baseline name"),
    ({"baselines": "random"}, "baselines: must be a list of ['random', 'supervised'] or a mapping"),
    ({"baselines": ["random", "random"]}, "baselines.random: duplicate baseline"),
    ({"cells": {"random": {}}, "baselines": ["random"]}, "cells.random: clashes with the baseline 'random'"),
    ({"baselines": {"supervised": 3}}, "baselines.supervised: must be a mapping of config deltas, got 3"),
    ({"baselines": {"supervised": {"evaluation": {"optim": {"epochs": 0}}}}},
     "baselines.supervised:\n  evaluation.optim.epochs: must be >= 1, got 0"),
])
def test_invalid_grids_fail_naming_file_and_key(tmp_path: Path, change: dict[str, Any], needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    with pytest.raises(ConfigError) as exc:
        load_grid(path)
    assert str(path) in str(exc.value) and needle in str(exc.value)


def test_cli_overrides_are_validated_per_cell_and_num_samples_sets_seeds() -> None:
    with pytest.raises(ConfigError, match="pretrain.epochs"):
        parse_grid(BASE, "g.yaml", overrides=["pretrain.epochs=-1"])
    grid = parse_grid(BASE, "g.yaml", overrides=["tasks.temperature=0.5"], dataset="builtin", num_samples=3)
    assert grid.seeds == [0, 1, 2]
    assert grid.cell_config(grid.cells[0], 2).tasks.temperature == 0.5
    assert parse_grid(BASE, "g.yaml").metrics == ["linear.val_top1", "linear.test_top1"]


def test_baselines_are_cells_on_the_grid_config_with_paired_seeds() -> None:
    evals = ["linear", {"strategy": "semi", "label_fraction": 0.1}, "finetune"]
    grid = parse_grid({**BASE, "evaluations": evals, "baselines": ["supervised", "random"]}, "g.yaml")
    assert [(c.name, c.baseline) for c in grid.all_cells()] == [("random", "random"), ("a", ""), ("b", ""),
                                                               ("supervised", "supervised")]
    assert [c.name for c in grid.cells] == ["a", "b"]  # the ablation cells proper
    assert grid.cell_seeds()[:3] == [(grid.baselines[1], 0), (grid.baselines[1], 1), (grid.cells[0], 0)]
    rnd, sup = grid.baselines[1], grid.baselines[0]
    assert [(e.strategy, labels) for e, labels in grid.baseline_runs(rnd)] == [
        ("linear", ["linear"]), ("semi", ["semi_0.1"]), ("finetune", ["finetune"])]
    assert [(e.strategy, e.label_fraction, labels) for e, labels in grid.baseline_runs(sup)] == [
        ("supervised", 1.0, ["linear", "finetune"]), ("supervised", 0.1, ["semi_0.1"])]
    assert grid.cell_config(rnd, 1) == grid.cell_config(grid.cells[0], 1)  # same data, model, seed: paired
    assert grid.to_dict()["baselines"] == [{"name": "supervised", "set": {}}, {"name": "random", "set": {}}]
    mapped = parse_grid({**BASE, "baselines": {"supervised": {"evaluation": {"optim": {"epochs": 3}}}}}, "g.yaml")
    assert mapped.cell_config(mapped.baselines[0], 0).evaluation.optim.epochs == 3
    assert parse_grid(BASE, "g.yaml").baselines == []
    assert parse_grid({**BASE, "baselines": []}, "g.yaml").baselines == []
    shipped = {p.stem: [b.name for b in load_grid(p).baselines] for p in GRIDS}
    assert shipped["quick"] == shipped["tasks"] == shipped["paper"] == ["random", "supervised"]


def test_table_statistics_best_marks_and_selection_on_validation() -> None:
    runs = [CellSeedRun("a", s, f"r{s}", "FINISHED", metrics={"linear.val_top1": v, "linear.test_top1": t,
                                                              "pretrain.train_loss": 1.0 + s})
            for s, v, t in ((0, 50.0, 40.0), (1, 54.0, 44.0))]
    runs += [CellSeedRun("b", 0, "x", "FINISHED", metrics={"linear.val_top1": 40.0, "linear.test_top1": 60.0,
                                                           "pretrain.train_loss": 0.5}),
             CellSeedRun("b", 1, "y", "FAILED", metrics={"linear.val_top1": 99.0})]
    table = build_table(runs, ["linear.val_top1", "linear.test_top1", "pretrain.train_loss"], ["b", "a"])
    assert [r.cell for r in table.rows] == ["b", "a"] and [r.n for r in table.rows] == [1, 2]
    a = table.rows[1]
    assert a.mean("linear.val_top1") == 52.0 and a.std("linear.val_top1") == pytest.approx(statistics.stdev([50, 54]))
    assert math.isnan(table.rows[0].std("linear.val_top1"))  # one seed: undefined, shown n/a
    assert table.best == {"linear.val_top1": "a", "linear.test_top1": "b", "pretrain.train_loss": "b"}
    md = table.to_markdown()
    assert "**52.00 ± 2.83** †" in md and "60.00 ± n/a" in md and "Δ random" not in md
    assert "Selected on validation (linear.val_top1): a → linear.test_top1 42.00 ± 2.83" in md  # never by test
    assert direction("linear.best_epoch") is None and direction("pretrain.train_loss") == "min"
    assert table.to_csv().splitlines()[0].startswith("cell,n,seeds,linear.val_top1.mean,linear.val_top1.std")
