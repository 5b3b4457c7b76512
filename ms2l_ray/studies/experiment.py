"""``ms2l run <experiment.yaml>``: pretrain once, then every configured evaluation from that checkpoint.

An experiment file is data::

    name: ms2l-small            # parent MLflow run name
    preset: small               # config preset
    config: {tasks: {temperature: 0.5}}   # config deltas
    evaluations:
      - {strategy: linear}
      - {strategy: semi, label_fraction: 0.01}
      - {strategy: finetune, set: {evaluation: {optim: {epochs: 5}}}}

All runs nest under one parent run: parent → pretrain, and one child per evaluation tagged with the
pretrain run it started from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import Config, ConfigError, apply_delta, preset_config
from ms2l_ray.jobs.tracked import ChainEvaluation, Execution, Tracking, tracked_chain
from ms2l_ray.names import check_name, unique_stamp
from ms2l_ray.safe_yaml import load_yaml_file
from ms2l_ray.studies.evaluation import FROM_SCRATCH, Evaluation, parse_evaluations  # re-exported (runner, tests)
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, start_run, tracked_run


@dataclass
class Experiment:
    """An experiment file: pretrain once from ``preset`` + ``config``, then run each of ``evaluations``."""

    name: str
    preset: str = "small"
    config: dict[str, Any] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=lambda: [Evaluation("linear")])


EXPERIMENT_KEYS = {"name", "preset", "config", "evaluations"}


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file (unknown keys and bad values name the key)."""
    p = Path(path)
    try:
        raw = load_yaml_file(p) or {}  # size- and alias-bounded (ms2l_ray.safe_yaml)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read experiment file {p}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at top level, got {type(raw).__name__}")
    unknown = set(raw) - EXPERIMENT_KEYS
    if unknown:
        raise ConfigError(f"{p}: unknown keys {sorted(unknown)}; known: {sorted(EXPERIMENT_KEYS)}")
    name = raw.get("name", p.stem)
    check_name(f"{p}: name", name)  # becomes run names and the default outputs/<name>-<stamp> folder
    preset = raw.get("preset", "small")
    config = raw.get("config", {}) or {}
    apply_delta(preset_config(preset, f"{p}: preset"), config, f"{p}: config")  # validate early
    return Experiment(name, preset, config, parse_evaluations(raw.get("evaluations", ["linear"]), str(p)))


@dataclass
class PipelineResult:
    """Final metrics of the pretraining and of each evaluation (by name), and their MLflow run ids."""

    pretrain: dict[str, float]
    evaluations: dict[str, dict[str, float]]
    parent_run_id: str | None
    pretrain_run_id: str | None


def run_pipeline(cfg: Config, evaluations: list[Evaluation], *, name: str, out_root: Path,
                 tracking: Tracking | None, execution: Execution, parent: RunLogger | None = None,
                 tags: dict[str, Any] | None = None, class_names: list[str] | None = None,
                 make_parent: bool = True, title: str | None = None) -> PipelineResult:
    """Pretrain (when any evaluation needs it), then each evaluation from the pretrained encoder.

    ``name`` (+ a timestamp) keys the jobs' Ray storage; MLflow names runs as people read them:
    ``<title> / pretrain``, ``<title> / linear`` … (``title`` defaults to ``name``).

    ``make_parent`` creates a parent run for this pipeline nested under ``parent``; with False the jobs
    hang directly under ``parent`` (an ablation's cell-seed run already is that parent).
    """
    stamp = unique_stamp()  # Ray Train resumes by run name: two pipelines in one second must not share one
    title = title or name
    group = parent
    if tracking is not None and make_parent:
        group = start_run(tracking.uri, tracking.experiment, name, parent,
                          {tag.KIND: tag.KIND_EXPERIMENT, **(tags or {})})
    with tracked_run(group if make_parent else None):  # without make_parent, ``parent`` is not ours to end
        pretrained = any(e.strategy not in FROM_SCRATCH for e in evaluations)
        jobs = []
        for ev in evaluations:
            ev_tags = {**(tags or {}), tag.EVALUATION: ev.label}
            jobs.append(ChainEvaluation(ev.apply(cfg), f"{name}-{ev.label}-{stamp}", out_root / ev.label, ev_tags,
                                        pretrained=ev.strategy not in FROM_SCRATCH, title=f"{title} / {ev.label}"))
        # One Train run for the pretraining and every evaluation (jobs.tracked.tracked_chain): the evaluation
        # runs exist before pretraining ends, so their parent_pretrain_run tag is set from the start.
        chain = tracked_chain(cfg if pretrained else None, jobs, name=f"{name}-{stamp}",
                              pretrain_name=f"{name}-pretrain-{stamp}", pretrain_out=out_root / "pretrain",
                              tracking=tracking, execution=execution, parent=group, tags=tags,
                              class_names=class_names, pretrain_title=f"{title} / pretrain")
        pre_metrics = chain.pretrain.metrics if chain.pretrain else {}
        pre_run_id = chain.pretrain_run.run_id if chain.pretrain_run else None
        results = {ev.label: outcome.metrics for ev, outcome in zip(evaluations, chain.evaluations, strict=True)}
        if group is not None and make_parent:
            summary = {f"{lab}.{k}": v for lab, m in results.items() for k, v in m.items()
                       if k in tag.EVAL_METRICS}
            group.log_metrics(summary, step=0)
    return PipelineResult(pre_metrics, results, group.run_id if group else None, pre_run_id)
