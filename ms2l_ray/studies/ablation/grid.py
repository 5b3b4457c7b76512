"""An ablation grid is data: a base config, seeds, evaluations, and named cells of config deltas.

A grid file (``ablations/*.yaml``)::

    name: tasks                       # MLflow parent run name prefix; letters, digits, '_', '.', '-'
    description: each task alone, each pair, all three
    preset: small                     # config preset (``ms2l_ray.config.PRESETS``)
    config: {data: {max_frames: 48}}  # base deltas shared by every cell
    seeds: [0, 1, 2]                  # every cell runs once per seed; the table shows mean ± std over them
    evaluations: [linear]             # as in an experiment file (``studies.evaluation.parse_evaluations``)
    cells:                            # ordered: a mapping name → delta, or a list of {name, set}
      motion: {tasks: {jigsaw_weight: 0, contrastive_weight: 0}}
      all: {}
    metrics: [linear.val_top1, linear.test_top1]   # optional table columns, ``<evaluation>.<metric>``
    max_concurrent: 1                 # optional default for --max-concurrent
    baselines: [random, supervised]   # optional baseline cells (or a mapping kind → config delta)

Baselines are cells that skip pretraining and run through the same grid config — same data, model sizes,
seeds (hence the same splits and evaluation seeds: pairs match by construction) — so the table can say how
much pretraining buys (the paper reports supervised training from scratch, REFERENCE.md §1 "Evaluation";
a random encoder under the same probe is the usual floor):

- ``random``: every grid evaluation on a randomly initialised encoder (what ``ms2l evaluate --encoder
  random`` does): the floor a pretext task must beat;
- ``supervised``: the ``supervised`` strategy (encoder + classifier trained from scratch with labels), once
  per distinct ``label_fraction`` of the grid's evaluations, reported under those evaluations' column
  names: the upper bound. The evaluations' own ``set`` deltas are *not* applied to it (they tune a probe
  protocol, e.g. a linear probe's lr 0.1, that supervised training does not run); the mapping form
  ``baselines: {supervised: {evaluation: {optim: {epochs: 20}}}}`` gives it settings of its own.

A baseline's cell name is its kind, so no grid cell may be called ``random`` or ``supervised``.

Every cell's merged config (preset → ``config`` → cell delta → CLI ``--set``) is validated when the file
is loaded, so a typo in the last cell fails before the first one trains. Errors name the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import (
    Config,
    ConfigError,
    apply_delta,
    check_preset,
    compose,
    merge_deltas,
    parse_override,
    preset_config,
)
from ms2l_ray.names import NAME_PATTERN
from ms2l_ray.safe_yaml import load_yaml_file
from ms2l_ray.studies.evaluation import Evaluation, parse_evaluations
from ms2l_ray.tracking import tags as tag

GRID_KEYS = ("name", "description", "preset", "config", "seeds", "evaluations", "cells", "metrics", "max_concurrent",
             "baselines")
BASELINES = ("random", "supervised")  # table order: random first (the floor), supervised last (the upper bound)
CELL_KEYS = ("name", "set")
NAME = NAME_PATTERN  # the one name rule (ms2l_ray.names): cell and grid names become folder names
# What an evaluation run reports (``train.evaluate``); ``pretrain.<metric>`` columns read the pretrain run.
EVAL_METRICS = (*tag.EVAL_METRICS, "best_epoch", "train_labelled")
PRETRAIN_PREFIXES = ("train_", "val_", tag.EPOCH_TIME, "throughput_seq_s")
DEFAULT_METRICS = tag.TOP1_METRICS


@dataclass
class Cell:
    """One ablation setting: a name (table row) and a config delta on top of the grid's base config.

    ``baseline`` is the kind (``random``/``supervised``) of a baseline cell, "" for an ablation cell.
    """

    name: str
    delta: dict[str, Any] = field(default_factory=dict)
    baseline: str = ""


@dataclass
class Grid:
    """A validated ablation grid. ``overrides`` are the CLI's ``--set`` deltas, applied after each cell."""

    name: str
    preset: str
    config: dict[str, Any]
    seeds: list[int]
    evaluations: list[Evaluation]
    cells: list[Cell]
    metrics: list[str]
    description: str = ""
    max_concurrent: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<grid>"
    baselines: list[Cell] = field(default_factory=list)

    def cell_config(self, cell: Cell, seed: int) -> Config:
        """The config of ``cell`` at ``seed``: preset → base ``config`` → cell delta → overrides → seed, validated.

        Errors name the cell.
        """
        layers = [(f"{self.source}: config", self.config), (f"cell {cell.name!r}", cell.delta),
                  ("overrides", self.overrides), ("seed", {"seed": seed})]
        return compose(self.preset, layers=layers)

    def all_cells(self) -> list[Cell]:
        """Table and run order: the random baseline, the ablation cells, the supervised baseline."""
        first = [b for b in self.baselines if b.baseline == "random"]
        return first + self.cells + [b for b in self.baselines if b.baseline != "random"]

    def cell_seeds(self) -> list[tuple[Cell, int]]:
        """Run order: cell-major, so the first finished cells already have every seed."""
        return [(c, s) for c in self.all_cells() for s in self.seeds]

    def baseline_runs(self, cell: Cell) -> list[tuple[Evaluation, list[str]]]:
        """A baseline's evaluation jobs and the grid evaluation labels each one reports under.

        ``random``: each grid evaluation as is (encoder None); ``supervised``: one ``supervised`` job per
        distinct label fraction, reported under every evaluation label with that fraction.
        """
        if cell.baseline == "random":
            return [(ev, [ev.label]) for ev in self.evaluations]
        if cell.baseline != "supervised":
            raise ValueError(f"cell {cell.name!r} is not a baseline cell")
        groups: dict[float, list[str]] = {}
        for ev in self.evaluations:
            groups.setdefault(ev.label_fraction, []).append(ev.label)
        return [(Evaluation("supervised", lf), labels) for lf, labels in groups.items()]

    def to_dict(self) -> dict[str, Any]:
        """The grid as resolved (logged on the parent run, so ``ms2l report`` knows cells and columns)."""
        return {"name": self.name, "description": self.description, "preset": self.preset, "config": self.config,
                "seeds": self.seeds, "overrides": self.overrides,
                "evaluations": [{"strategy": e.strategy, "label_fraction": e.label_fraction, "set": e.delta}
                                for e in self.evaluations],
                "cells": [{"name": c.name, "set": c.delta} for c in self.cells], "metrics": self.metrics,
                "baselines": [{"name": b.name, "set": b.delta} for b in self.baselines]}


def _fail(source: str, key: str, what: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {what}")


def _parse_cells(raw: Any, source: str) -> list[Cell]:
    if isinstance(raw, dict):
        items = [{"name": k, "set": v} for k, v in raw.items()]
    elif isinstance(raw, list):
        items = raw
    else:
        raise _fail(source, "cells", f"must be a mapping name → delta or a list of {{name, set}}, got {raw!r}")
    if not items:
        raise _fail(source, "cells", "must name at least one cell")
    cells: list[Cell] = []
    for i, item in enumerate(items):
        key = f"cells[{i}]"
        if not isinstance(item, dict):
            raise _fail(source, key, f"expected a mapping {{name, set}}, got {item!r}")
        unknown = sorted(set(item) - set(CELL_KEYS))
        if unknown:
            raise _fail(source, key, f"unknown keys {unknown}; known: {list(CELL_KEYS)}")
        name = item.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise _fail(source, f"{key}.name", f"must be letters, digits, '_', '.', '-', got {name!r}")
        delta = item.get("set") or {}
        if not isinstance(delta, dict):
            raise _fail(source, f"cells.{name}.set", f"must be a mapping of config deltas, got {delta!r}")
        if any(c.name == name for c in cells):
            raise _fail(source, f"cells.{name}", "duplicate cell name")
        cells.append(Cell(name, delta))
    return cells


def _parse_baselines(raw: Any, source: str, cells: list[Cell]) -> list[Cell]:
    """``[random, supervised]`` or ``{random: {}, supervised: {<config delta>}}``; errors name the entry."""
    if raw is None:
        return []
    if isinstance(raw, list):
        for i, kind in enumerate(raw):
            if not isinstance(kind, str):
                raise _fail(source, f"baselines[{i}]", f"must be a baseline name {list(BASELINES)}, got {kind!r}")
        items: list[tuple[str, Any]] = [(k, {}) for k in raw]
    elif isinstance(raw, dict):
        items = list(raw.items())
    else:
        raise _fail(source, "baselines", f"must be a list of {list(BASELINES)} or a mapping name → config delta, "
                                         f"got {raw!r}")
    out: list[Cell] = []
    for i, (kind, delta) in enumerate(items):
        if kind not in BASELINES:
            raise _fail(source, f"baselines[{i}]", f"unknown baseline {kind!r}; known: {list(BASELINES)}")
        if any(b.name == kind for b in out):
            raise _fail(source, f"baselines.{kind}", "duplicate baseline")
        if any(c.name == kind for c in cells):
            raise _fail(source, f"cells.{kind}", f"clashes with the baseline {kind!r} (a baseline's row is named "
                                                 f"after it); rename the cell")
        delta = delta or {}
        if not isinstance(delta, dict):
            raise _fail(source, f"baselines.{kind}", f"must be a mapping of config deltas, got {delta!r}")
        out.append(Cell(kind, delta, baseline=kind))
    return out


def _parse_seeds(raw: Any, source: str) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise _fail(source, "seeds", f"must be a non-empty list of integers, got {raw!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in raw):
        raise _fail(source, "seeds", f"must hold non-negative integers, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise _fail(source, "seeds", f"has duplicates: {raw!r}")
    return list(raw)


def _parse_metrics(raw: Any, evaluations: list[Evaluation], source: str) -> list[str]:
    """``val_top1`` expands to every evaluation; ``linear.test_top1`` names one; ``pretrain.train_loss`` too."""
    labels = [e.label for e in evaluations]
    if raw is None:
        raw = list(DEFAULT_METRICS)
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        raise _fail(source, "metrics", f"must be a non-empty list of metric names, got {raw!r}")
    out: list[str] = []
    for m in raw:
        label, _, metric = m.rpartition(".")
        if not label:
            expanded = [f"{lab}.{metric}" for lab in labels]
        elif label in labels or label == "pretrain":
            expanded = [m]
        else:
            raise _fail(source, f"metrics: {m!r}", f"unknown evaluation {label!r}; known: {labels + ['pretrain']}")
        ok = metric.startswith(PRETRAIN_PREFIXES) if label == "pretrain" else metric in EVAL_METRICS
        if not ok:
            known = f"names starting with {list(PRETRAIN_PREFIXES)}" if label == "pretrain" else list(EVAL_METRICS)
            raise _fail(source, f"metrics: {m!r}", f"unknown metric {metric!r}; known: {known}")
        out.extend(x for x in expanded if x not in out)
    rank = {lab: i for i, lab in enumerate(labels + ["pretrain"])}
    return sorted(out, key=lambda col: rank[col.rpartition(".")[0]])  # stable: grouped per evaluation


def parse_grid(raw: Any, source: str, *, preset: str | None = None, overrides: list[str] | tuple[str, ...] = (),
               dataset: str | None = None, num_samples: int | None = None) -> Grid:
    """Validate a grid mapping; CLI-level ``preset``, ``--set``, ``--dataset``, ``--num-samples`` apply on top."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown keys {unknown}; known: {list(GRID_KEYS)}")
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _fail(source, "name", f"must be letters, digits, '_', '.', '-', got {name!r}")
    preset = check_preset(preset or raw.get("preset", "small"), f"{source}: preset")
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise _fail(source, "config", f"must be a mapping of config deltas, got {config!r}")
    base = apply_delta(preset_config(preset), config, f"{source}: config")
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
        seeds = list(range(num_samples))
    else:
        seeds = _parse_seeds(raw.get("seeds"), source)
    evaluations = parse_evaluations(raw.get("evaluations", ["linear"]), source)
    cells = _parse_cells(raw.get("cells"), source)
    baselines = _parse_baselines(raw.get("baselines"), source, cells)
    metrics = _parse_metrics(raw.get("metrics"), evaluations, source)
    concurrent = raw.get("max_concurrent", 1)
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1:
        raise _fail(source, "max_concurrent", f"must be an integer >= 1, got {concurrent!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, "description", f"must be a string, got {description!r}")
    extra: dict[str, Any] = {"data": {"dataset": dataset}} if dataset is not None else {}
    for item in overrides:
        extra = merge_deltas(extra, parse_override(item))
    grid = Grid(name, preset, config, seeds, evaluations, cells, metrics, description, concurrent, extra, source,
                baselines)
    for cell in grid.all_cells():  # validate every cell × evaluation now, not after hours of training
        where = f"baselines.{cell.name}" if cell.baseline else f"cells.{cell.name}"
        merged = merge_deltas(merge_deltas(cell.delta, extra), {"seed": seeds[0]})
        cfg = apply_delta(base, merged, f"{source}: {where}")
        for ev in [e for e, _ in grid.baseline_runs(cell)] if cell.baseline else evaluations:
            try:
                ev.apply(cfg)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {where} with evaluation {ev.label}: {exc}") from exc
    return grid


def load_grid(path: str | Path, **kw: Any) -> Grid:
    """Read and validate a grid file; see :func:`parse_grid` for the keyword overrides."""
    p = Path(path)
    try:
        raw = load_yaml_file(p)  # size- and alias-bounded (ms2l_ray.safe_yaml)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read ablation grid {p}: {exc}") from exc
    return parse_grid(raw, str(p), **kw)
