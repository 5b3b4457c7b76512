"""Tracked jobs: one MLflow run per pretrain and per evaluation, each executed by a Ray ``TorchTrainer``.

This is the layer every entry point shares — ``ms2l pretrain/evaluate/run``, Tune trials and ablation
cells — so that every run lands in MLflow with the same params, tags and artifacts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import Config, config_hash, flatten, to_dict
from ms2l_ray.distributed.records import read_record, write_record
from ms2l_ray.distributed.spec import JobSpec, Resources
from ms2l_ray.distributed.trainer import JobOutcome, default_storage_path, run_job
from ms2l_ray.tracking.artifacts import log_eval_outputs, log_pretrain_outputs
from ms2l_ray.tracking.runs import RunLogger, RunRef, start_run
from ms2l_ray.tracking.store import redact_uri
from ms2l_ray.train.health import assess, health_tag
from ms2l_ray.train.precision import precision_name


@dataclass
class Tracking:
    """Where runs go. ``experiment`` is the MLflow experiment name."""

    uri: str
    experiment: str = "ms2l"


@dataclass
class Execution:
    """How jobs run: worker resources, Ray storage, failure tolerance, test hooks."""

    resources: Resources = dataclasses.field(default_factory=Resources)
    storage_path: str | None = None
    max_failures: int = 2
    fail_at_epoch: int = -1
    callbacks: list[Any] | None = None


def precision_tag(metrics: dict[str, Any]) -> dict[str, str]:
    """``{"precision": "fp32"|"bf16"|"fp16"}``: what ``precision: auto`` resolved to on the job's workers
    (the params hold only the requested value), read back from the job's ``precision_id`` metric."""
    name = precision_name(metrics)
    return {"precision": name} if name else {}


def run_tags(cfg: Config, kind: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tags every run carries: what it is, on which data, with which seed and config."""
    tags = {"kind": kind, "dataset": cfg.data.dataset, "split": cfg.data.split, "seed": cfg.seed,
            "config_hash": config_hash(cfg)}
    if kind == "evaluate":
        tags.update(strategy=cfg.evaluation.strategy, label_fraction=cfg.evaluation.label_fraction)
    return {**tags, **(extra or {})}


def _begin(tracking: Tracking | None, cfg: Config, kind: str, name: str, parent: RunLogger | None,
           tags: dict[str, Any] | None, existing_run_id: str | None = None) -> RunLogger | None:
    if tracking is None:
        return None
    if existing_run_id is not None:  # a resumed job keeps logging into its own run
        run = RunLogger(RunRef(tracking.uri, existing_run_id))
        run.set_tags({"resumed": "true"})
        run.reopen()
        return run
    run = start_run(tracking.uri, tracking.experiment, name, parent, run_tags(cfg, kind, tags))
    run.log_params(flatten(to_dict(cfg)))
    run.log_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), CONFIG_ARTIFACT)  # what `ms2l rerun` rebuilds
    return run


JOB_RECORD = "ms2l_job.json"
CONFIG_ARTIFACT = "config.yaml"


def write_job_record(storage_path: str | None, name: str, record: dict[str, Any]) -> None:
    """``<storage>/<name>/ms2l_job.json``: what ``--resume <name>`` needs (config, MLflow run, outputs)."""
    write_record(storage_path or default_storage_path(), name, JOB_RECORD, record)


def read_job_record(storage_path: str | None, name: str) -> dict[str, Any]:
    storage = storage_path or default_storage_path()
    record = read_record(storage, name, JOB_RECORD)
    if record is None:
        raise FileNotFoundError(f"no job named {name!r} under {storage} (missing {name}/{JOB_RECORD}); "
                                f"--resume takes the run name printed when the job started")
    return record


def tracked_pretrain(cfg: Config, *, name: str, out_dir: Path, tracking: Tracking | None, execution: Execution,
                     parent: RunLogger | None = None, tags: dict[str, Any] | None = None,
                     resume_from: str | None = None, fail_marker: str | None = None,
                     existing_run_id: str | None = None) -> tuple[JobOutcome, RunLogger | None]:
    """Pretrain under Ray Train; the run gets per-epoch metrics live, the encoder artifacts and the ``health``
    tag (JSON list of pretext-task health messages, ``[]`` when healthy) at the end.

    A job record is written first, so ``--resume <name>`` finds the config and the MLflow run again.
    """
    run = _begin(tracking, cfg, "pretrain", name, parent, tags, existing_run_id)
    write_job_record(execution.storage_path, name, {
        "kind": "pretrain", "config": to_dict(cfg), "out_dir": str(out_dir), "run_id": run.run_id if run else None,
        "tracking_uri": redact_uri(tracking.uri) if tracking else None,
        "experiment": tracking.experiment if tracking else None})
    spec = JobSpec.make("pretrain", cfg, str(out_dir), tracking_uri=tracking.uri if tracking else None,
                        run_id=run.run_id if run else None, fail_at_epoch=execution.fail_at_epoch,
                        fail_marker=fail_marker, resume_from=resume_from)
    try:
        outcome = run_job(spec, name=name, resources=execution.resources, storage_path=execution.storage_path,
                          max_failures=execution.max_failures, callbacks=execution.callbacks)
        if run is not None:
            # assess() is pure: the driver recomputes from the job's history the notes the worker printed.
            run.set_tags({"health": health_tag(assess(outcome.history, cfg)),
                          **precision_tag(outcome.history[-1] if outcome.history else {})})
            log_pretrain_outputs(run, out_dir, outcome.history)
            run.end("FINISHED")
    except BaseException:
        if run is not None:
            run.end("FAILED")
        raise
    return outcome, run


def tracked_evaluate(cfg: Config, *, encoder: str | None, name: str, out_dir: Path, tracking: Tracking | None,
                     execution: Execution, parent: RunLogger | None = None, tags: dict[str, Any] | None = None,
                     class_names: list[str] | None = None) -> tuple[JobOutcome, RunLogger | None]:
    """Evaluate one strategy under Ray Train; final top-1/top-5 on val and test, confusion matrix, curves."""
    all_tags = dict(tags or {})
    if encoder is not None:
        all_tags.setdefault("encoder", encoder)
    run = _begin(tracking, cfg, "evaluate", name, parent, all_tags)
    spec = JobSpec.make("evaluate", cfg, str(out_dir), encoder=encoder,
                        tracking_uri=tracking.uri if tracking else None, run_id=run.run_id if run else None)
    try:
        outcome = run_job(spec, name=name, resources=execution.resources, storage_path=execution.storage_path,
                          max_failures=execution.max_failures, callbacks=execution.callbacks)
        if run is not None:
            final = {k: v for k, v in outcome.metrics.items() if isinstance(v, (int, float))}
            run.log_metrics(final, step=int(cfg.evaluation.optim.epochs) + 1)
            run.set_tags(precision_tag(final))
            log_eval_outputs(run, out_dir, outcome.history, class_names)
            run.end("FINISHED")
    except BaseException:
        if run is not None:
            run.end("FAILED")
        raise
    return outcome, run
