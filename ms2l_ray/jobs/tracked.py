"""Tracked jobs: one MLflow run per pretrain and per evaluation, executed by Ray ``TorchTrainer`` runs.

This is the layer every entry point shares — ``ms2l pretrain/evaluate/run``, Tune trials and ablation
cells — so that every run lands in MLflow with the same params, tags and artifacts. A standalone job
(:func:`tracked_pretrain`, :func:`tracked_evaluate`) is one Train run; a pipeline (:func:`tracked_chain`)
runs its pretraining and all its evaluations in one Train run and still logs one MLflow run per job.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ms2l_ray.config import Config, to_dict
from ms2l_ray.jobs.driver import JobOutcome, default_storage_path, run_chain, run_job
from ms2l_ray.jobs.job_runs import CONFIG_ARTIFACT, begin_run, log_dataset_input, planned_run_id, run_tags
from ms2l_ray.jobs.records import read_record, write_record
from ms2l_ray.jobs.spec import EpochHook, JobSpec, Resources, RunPlan
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.artifacts import log_eval_outputs, log_pretrain_outputs
from ms2l_ray.tracking.runs import RunLogger, RunRef, client, tracked_run
from ms2l_ray.tracking.store import redact_uri
from ms2l_ray.train.health import assess, health_tag
from ms2l_ray.train.precision import precision_name

__all__ = ["CONFIG_ARTIFACT", "ChainEvaluation", "ChainOutcome", "Execution", "Tracking", "log_dataset_input",
           "run_tags", "tracked_chain", "tracked_evaluate", "tracked_pretrain"]


@dataclass
class Tracking:
    """Where runs go. ``experiment`` is the MLflow experiment name."""

    uri: str
    experiment: str = "ms2l"


@dataclass
class Execution:
    """How jobs run: worker resources, Ray storage, failure tolerance, Train callbacks and the epoch hook.

    Every job of this execution runs the epoch hook (:data:`~ms2l_ray.jobs.spec.EpochHook`: fault injection in
    tests).
    """

    resources: Resources = dataclasses.field(default_factory=Resources)
    storage_path: str | None = None
    max_failures: int = 2
    callbacks: list[Any] | None = None
    on_epoch_end: EpochHook | None = None


def precision_tag(metrics: dict[str, Any]) -> dict[str, str]:
    """``{"precision": "fp32"|"bf16"|"fp16"}``: what ``precision: auto`` resolved to on the job's workers.

    Read back from the job's ``precision_id`` metric; the params hold only the requested value.
    """
    name = precision_name(metrics)
    return {tag.PRECISION: name} if name else {}


def _begin(tracking: Tracking | None, cfg: Config, kind: str, name: str, parent: RunLogger | None,
           tags: dict[str, Any] | None, existing_run_id: str | None = None,
           title: str | None = None) -> RunLogger | None:
    if tracking is None:
        return None
    if existing_run_id is not None:  # a resumed job keeps logging into its own run
        run = RunLogger(RunRef(tracking.uri, existing_run_id))
        run.resume()
        return run
    return begin_run(tracking.uri, tracking.experiment, cfg, kind, title or name, parent, tags)


JOB_RECORD = "ms2l_job.json"


def write_job_record(storage_path: str | None, name: str, record: dict[str, Any]) -> None:
    """``<storage>/<name>/ms2l_job.json``: what ``--resume <name>`` needs (config, MLflow run, outputs)."""
    write_record(storage_path or default_storage_path(), name, JOB_RECORD, record)


def read_job_record(storage_path: str | None, name: str) -> dict[str, Any]:
    """The record :func:`write_job_record` left for job ``name``: what ``--resume <name>`` continues from.

    Raises:
        FileNotFoundError: no such job under the storage folder (the message says what ``--resume`` takes).
    """
    storage = storage_path or default_storage_path()
    record = read_record(storage, name, JOB_RECORD)
    if record is None:
        raise FileNotFoundError(f"no job named {name!r} under {storage} (missing {name}/{JOB_RECORD}); "
                                f"--resume takes the run name printed when the job started")
    return record


def _pretrain_record(cfg: Config, out_dir: Path, run: RunLogger | None, tracking: Tracking | None) -> dict[str, Any]:
    return {"kind": "pretrain", "config": to_dict(cfg), "out_dir": str(out_dir), "run_id": run.run_id if run else None,
            "tracking_uri": redact_uri(tracking.uri) if tracking else None,
            "experiment": tracking.experiment if tracking else None}


def _pretrain_spec(cfg: Config, out_dir: Path, tracking: Tracking | None, run: RunLogger | None,
                   execution: Execution) -> JobSpec:
    return JobSpec.make("pretrain", cfg, str(out_dir), tracking_uri=tracking.uri if tracking else None,
                        run_id=run.run_id if run else None, on_epoch_end=execution.on_epoch_end)


def _finish_pretrain(run: RunLogger | None, cfg: Config, outcome: JobOutcome) -> None:
    """Health and precision tags, encoder artifacts, FINISHED."""
    if run is None:
        return
    # assess() is pure: the driver recomputes from the job's history the notes the worker printed.
    run.set_tags({tag.HEALTH: health_tag(assess(outcome.history, cfg)),
                  **precision_tag(outcome.history[-1] if outcome.history else {})})
    log_pretrain_outputs(run, outcome.out_dir, outcome.history)
    run.end("FINISHED")


def _finish_evaluate(run: RunLogger | None, cfg: Config, outcome: JobOutcome, class_names: list[str] | None) -> None:
    """Final metrics (one step past the last epoch), precision tag, confusion matrix and curves, FINISHED."""
    if run is None:
        return
    final = {k: v for k, v in outcome.metrics.items() if isinstance(v, (int, float))}
    run.log_metrics(final, step=int(cfg.evaluation.optim.epochs) + 1)
    run.set_tags(precision_tag(final))
    if class_names is None:  # the names the dataset records (confusion matrix axes, per-class table keys)
        from ms2l_ray.tracking.datasets import dataset_class_names

        class_names = dataset_class_names(cfg)
    log_eval_outputs(run, outcome.out_dir, outcome.history, class_names)
    run.end("FINISHED")


def tracked_pretrain(cfg: Config, *, name: str, out_dir: Path, tracking: Tracking | None, execution: Execution,
                     parent: RunLogger | None = None, tags: dict[str, Any] | None = None,
                     existing_run_id: str | None = None,
                     title: str | None = None) -> tuple[JobOutcome, RunLogger | None]:
    """Pretrain under Ray Train, tracked as one MLflow run.

    The run gets per-epoch metrics live, and at the end the encoder artifacts and the ``health`` tag (JSON list
    of pretext-task health messages, ``[]`` when healthy).

    ``name`` keys Ray storage and the job record; ``title`` (default ``name``) is the MLflow run name people
    read (``quick / contrastive / seed 1 / pretrain``).

    A job record is written first, so ``--resume <name>`` finds the config and the MLflow run again.
    """
    run = _begin(tracking, cfg, tag.KIND_PRETRAIN, name, parent, tags, existing_run_id, title)
    write_job_record(execution.storage_path, name, _pretrain_record(cfg, out_dir, run, tracking))
    spec = _pretrain_spec(cfg, out_dir, tracking, run, execution)
    with tracked_run(run):
        outcome = run_job(spec, name=name, resources=execution.resources, storage_path=execution.storage_path,
                          max_failures=execution.max_failures, callbacks=execution.callbacks)
        _finish_pretrain(run, cfg, outcome)
    return outcome, run


def _evaluate_tags(tags: dict[str, Any] | None, encoder: str | None) -> dict[str, Any]:
    all_tags = dict(tags or {})
    if encoder is not None:
        all_tags.setdefault(tag.ENCODER, encoder)
    return all_tags


def _evaluate_spec(cfg: Config, out_dir: Path, encoder: str | None, tracking: Tracking | None,
                   run: RunLogger | None, execution: Execution, plan: RunPlan | None = None) -> JobSpec:
    return JobSpec.make("evaluate", cfg, str(out_dir), encoder=encoder,
                        tracking_uri=tracking.uri if tracking else None, run_id=run.run_id if run else None,
                        on_epoch_end=execution.on_epoch_end, run_plan=plan)


def tracked_evaluate(cfg: Config, *, encoder: str | None, name: str, out_dir: Path, tracking: Tracking | None,
                     execution: Execution, parent: RunLogger | None = None, tags: dict[str, Any] | None = None,
                     class_names: list[str] | None = None,
                     title: str | None = None) -> tuple[JobOutcome, RunLogger | None]:
    """Evaluate one strategy under Ray Train; final top-1/top-5 on val and test, confusion matrix, curves.

    ``title``: the MLflow run name (default ``name``, which keys Ray storage).
    """
    run = _begin(tracking, cfg, tag.KIND_EVALUATE, name, parent, _evaluate_tags(tags, encoder), title=title)
    spec = _evaluate_spec(cfg, out_dir, encoder, tracking, run, execution)
    with tracked_run(run):
        outcome = run_job(spec, name=name, resources=execution.resources, storage_path=execution.storage_path,
                          max_failures=execution.max_failures, callbacks=execution.callbacks)
        _finish_evaluate(run, cfg, outcome, class_names)
    return outcome, run


@dataclass
class ChainEvaluation:
    """One evaluation of a :func:`tracked_chain`.

    Attributes:
        cfg: the evaluation's config (``Evaluation.apply`` of the pipeline's config).
        name: its MLflow run name.
        out_dir: its output folder.
        tags: its run's tags.
        pretrained: True when it starts from the chain's pretrained encoder; False for a random encoder
            (a baseline) or a strategy that trains from scratch.
        title: the MLflow run name people read (default ``name``).
        started_by_worker: its run is created when the evaluation starts, by the worker group
            (:class:`~ms2l_ray.jobs.spec.RunPlan`), not before the chain: a search trial cut during pretraining
            then holds no evaluation run that never ran.
    """

    cfg: Config
    name: str
    out_dir: Path
    tags: dict[str, Any]
    pretrained: bool = True
    title: str | None = None
    started_by_worker: bool = False


@dataclass
class ChainOutcome:
    """What :func:`tracked_chain` returns: the pretraining's outcome and run, then the evaluations' outcomes.

    ``pretrain`` and ``pretrain_run`` are None when the chain had no pretraining (or ran untracked, for the
    run); ``evaluations`` are in the order given.
    """

    pretrain: JobOutcome | None
    pretrain_run: RunLogger | None
    evaluations: list[JobOutcome]


def _started_run(tracking_uri: str, out_dir: Path) -> RunLogger | None:
    """The run a worker started for the planned stage writing to ``out_dir`` (None if it never started)."""
    run_id = planned_run_id(out_dir)
    return RunLogger(RunRef(tracking_uri, run_id)) if run_id else None


@contextlib.contextmanager
def _failed_if_started(tracking_uri: str, out_dir: Path) -> Iterator[None]:
    """On a failed chain, end FAILED the run a worker started for the stage writing to ``out_dir``, if any.

    A stage that never started has no run to close: that is the point of starting it on the worker.
    """
    try:
        yield
    except BaseException:
        run_id = planned_run_id(out_dir)
        if run_id is not None:
            if client(tracking_uri).get_run(run_id).info.status == "RUNNING":
                RunLogger(RunRef(tracking_uri, run_id)).end("FAILED")
        raise


def tracked_chain(pretrain_cfg: Config | None, evaluations: list[ChainEvaluation], *, name: str,
                  pretrain_name: str, pretrain_out: Path, tracking: Tracking | None, execution: Execution,
                  parent: RunLogger | None = None, tags: dict[str, Any] | None = None,
                  class_names: list[str] | None = None, pretrain_title: str | None = None) -> ChainOutcome:
    """Pretrain (``pretrain_cfg`` not None) and run ``evaluations`` as one Ray Train run named ``name``.

    The MLflow tree, params, per-epoch metrics, tags and artifacts are those of :func:`tracked_pretrain`
    followed by one :func:`tracked_evaluate` per evaluation (the runs are created up front, so each stage's
    rank 0 logs into its own run), but the worker group starts once: at grid-cell sizes that start-up
    costs about as much as the epochs (issue 12, item 7). An evaluation marked ``started_by_worker`` gets its
    run when it starts instead, from rank 0 (the same params, tags and artifacts). Worker failures recover as
    in a single job; a failed chain marks every run it had not finished FAILED. Evaluations that start from
    the pretrained encoder carry the tag ``parent_pretrain_run`` (the pretraining's run id).
    """
    pre_run = None
    if pretrain_cfg is not None:
        pre_run = _begin(tracking, pretrain_cfg, tag.KIND_PRETRAIN, pretrain_name, parent, tags,
                         title=pretrain_title)
        write_job_record(execution.storage_path, pretrain_name,
                         _pretrain_record(pretrain_cfg, pretrain_out, pre_run, tracking))
    runs: list[RunLogger | None] = [pre_run]
    specs = []
    with contextlib.ExitStack() as closing:  # a failed chain marks every run it had not finished FAILED
        closing.enter_context(tracked_run(pre_run))
        if pretrain_cfg is not None:
            specs.append(_pretrain_spec(pretrain_cfg, pretrain_out, tracking, pre_run, execution))
        for ev in evaluations:
            encoder = str(pretrain_out) if ev.pretrained and pretrain_cfg is not None else None
            ev_tags = _evaluate_tags(ev.tags, encoder)
            if encoder is not None and pre_run is not None:
                ev_tags[tag.PARENT_PRETRAIN_RUN] = pre_run.run_id  # what `ms2l rerun` fetches the encoder from
            plan, run = None, None
            if ev.started_by_worker and tracking is not None:
                plan = RunPlan(tracking.uri, tracking.experiment, tag.KIND_EVALUATE, ev.title or ev.name,
                               parent.run_id if parent else None, ev_tags)
                closing.enter_context(_failed_if_started(tracking.uri, ev.out_dir))
            else:
                run = closing.enter_context(tracked_run(_begin(tracking, ev.cfg, tag.KIND_EVALUATE, ev.name, parent,
                                                               ev_tags, title=ev.title)))
            runs.append(run)
            specs.append(_evaluate_spec(ev.cfg, ev.out_dir, encoder, tracking, run, execution, plan))
        outcomes = run_chain(specs, name=name, resources=execution.resources, storage_path=execution.storage_path,
                             max_failures=execution.max_failures, callbacks=execution.callbacks)
        pre_outcome = outcomes.pop(0) if pretrain_cfg is not None else None
        if pretrain_cfg is not None and pre_outcome is not None:
            _finish_pretrain(pre_run, pretrain_cfg, pre_outcome)
        for ev, run, outcome in zip(evaluations, runs[1:], outcomes, strict=True):
            if run is None and ev.started_by_worker and tracking is not None:
                run = _started_run(tracking.uri, ev.out_dir)
            _finish_evaluate(run, ev.cfg, outcome, class_names)
    return ChainOutcome(pre_outcome, pre_run, outcomes)
