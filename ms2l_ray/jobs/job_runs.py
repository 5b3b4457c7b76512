"""How a job's MLflow run begins: the same on the driver and, for a chain stage started late, on a worker.

Why a module of its own: in a search trial the pretraining and its evaluation run in one Train run (issue 12,
item 7), yet a trial that ASHA cuts during pretraining must hold only the pretraining it ran, not an evaluation
run that never started. So that chain's evaluation run is *planned* on the driver (:class:`RunPlan`) and
started by rank 0 of the worker group when the stage starts (:func:`start_planned_run`). Both sides create runs
through :func:`begin_run`, so the params, tags, dataset input and config artifact are the same wherever the run
was started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import Config, config_hash, flatten, to_dict
from ms2l_ray.jobs.spec import JobSpec
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, RunRef, start_run

CONFIG_ARTIFACT = "config.yaml"  # what `ms2l rerun` rebuilds a run from
RUN_ID_FILE = "mlflow_run_id.txt"  # in a planned stage's out_dir: the run its worker started


def run_tags(cfg: Config, kind: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tags every run carries: what it is, on which data, with which seed and config."""
    tags: dict[str, Any] = {tag.KIND: kind, tag.DATASET: cfg.data.dataset, tag.SPLIT: cfg.data.split,
                            tag.SEED: cfg.seed, tag.CONFIG_HASH: config_hash(cfg)}
    if kind == tag.KIND_EVALUATE:
        tags.update({tag.STRATEGY: cfg.evaluation.strategy, tag.LABEL_FRACTION: cfg.evaluation.label_fraction})
    return {**tags, **(extra or {})}


def log_dataset_input(run: RunLogger, cfg: Config) -> None:
    """Log the run's dataset as an MLflow input (the UI's Dataset column).

    A store this process cannot read (it sits on the workers' storage only) is noted in the log file, not an
    error: the job itself reads it.
    """
    from ms2l_ray.console import current
    from ms2l_ray.tracking.datasets import dataset_input

    try:
        entry = dataset_input(cfg)
    except (OSError, ValueError) as exc:
        current().internal(f"[tracking] dataset of run {run.run_id} not logged as an input: {exc}")
        return
    run.log_dataset(entry)


def begin_run(tracking_uri: str, experiment: str, cfg: Config, kind: str, name: str, parent: RunLogger | None,
              tags: dict[str, Any] | None) -> RunLogger:
    """A new job run named ``name`` under ``parent``.

    It gets the job's tags, every config value as a param, its dataset input and ``config.yaml``.
    """
    run = start_run(tracking_uri, experiment, name, parent, run_tags(cfg, kind, tags))
    run.log_params(flatten(to_dict(cfg)))
    log_dataset_input(run, cfg)
    run.log_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), CONFIG_ARTIFACT)
    return run


def planned_run_id(out_dir: str | Path) -> str | None:
    """The id of the run a worker started for the planned stage writing to ``out_dir``; None before it started."""
    path = Path(out_dir) / RUN_ID_FILE
    return (path.read_text().strip() or None) if path.exists() else None


def start_planned_run(spec: JobSpec) -> str:
    """Start ``spec.run_plan``'s run (rank 0 of the stage) and return its id; the same run after a worker restart.

    The id goes to ``<out_dir>/mlflow_run_id.txt`` (written atomically), where the driver finds the run to
    finish it, and where a restarted stage finds it again instead of starting a second one.
    """
    plan = spec.run_plan
    if plan is None:
        raise ValueError("start_planned_run needs a spec with a run_plan")
    known = planned_run_id(spec.out_dir)
    if known is not None:
        return known
    parent = RunLogger(RunRef(plan.tracking_uri, plan.parent_run_id)) if plan.parent_run_id else None
    run = begin_run(plan.tracking_uri, plan.experiment, spec.config, plan.kind, plan.name, parent, plan.tags)
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RUN_ID_FILE + ".tmp")
    tmp.write_text(run.run_id)
    tmp.replace(out / RUN_ID_FILE)
    return run.run_id
