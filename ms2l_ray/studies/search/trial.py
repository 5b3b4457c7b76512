"""One trial = the real objective: pretrain, then the space's evaluation (linear by default), in one TorchTrainer.

This is Ray's Train-in-Tune pattern: :func:`run_trial` is a Tune *function trainable* that launches its own
``TorchTrainer`` through :func:`~ms2l_ray.jobs.tracked.tracked_chain` (pretraining and evaluation in one Train
run, one worker-group start-up). The trainable itself holds no CPU (see :mod:`ms2l_ray.studies.search.tuner`);
its job holds ``workers × per-worker``.

- Pretraining reports reach Tune through :class:`ProxyReportCallback` (a ``TuneReportCallback`` on the Train
  controller) rewritten to ``{objective: <proxy>, epoch}`` — ASHA's input.
- After the evaluation the trial reports ``objective = <validation metric>`` with ``FINAL`` set — Optuna's
  input. Test accuracy rides along for the tables, never as the objective.
- A sampled config the model rejects (all three task weights 0) is not trained: its run is closed as
  ``outcome=rejected`` and the trial reports the worst objective once, flagged ``REJECTED`` and without an
  epoch (so ASHA ignores it); Optuna records it as PRUNED.

Names come from the trial id (Train runs ``<trial_id>-pretrain``, MLflow ``<search>-<trial_id>``), so a
re-run trial after ``--resume`` finds its Train checkpoints and its MLflow run again; a trial whose run already
FINISHED is not trained twice — its stored result is reported instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.integration.ray_train import TuneReportCallback

from ms2l_ray.config import Config, ConfigError, apply_delta, from_dict, unflatten
from ms2l_ray.jobs.spec import Resources
from ms2l_ray.jobs.tracked import ChainEvaluation, Execution, Tracking, tracked_chain, tracked_evaluate
from ms2l_ray.model.artifact import ENCODER_FILE
from ms2l_ray.studies.evaluation import Evaluation
from ms2l_ray.studies.search.runs import SearchRuns
from ms2l_ray.studies.search.sampling import FINAL, OBJECTIVE, PHASE, REJECTED, worst_objective
from ms2l_ray.studies.search.space import PROXY_METRICS
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, start_run, tracked_run

REPORTED = tag.EVAL_METRICS  # evaluation metrics carried into the final report
PRETRAIN_EPOCHS = "pretrain_epochs"


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs (pickled to the trial actors as is; persisted for ``--resume`` as a record).

    The base config travels as a validated :class:`Config`: each trial validates only its sampled values on
    top of it (:meth:`trial_config`), and the result goes to the Train workers unconverted.
    """

    search: str  # search name: MLflow run names and tags
    base: Config  # resolved base config (preset + space config + CLI overrides), knn_every included
    evaluation: Evaluation  # the space's evaluation: its validation metric is the objective
    metric: str  # evaluation metric that is the objective (validation only)
    mode: str  # max or min
    proxy: str  # pretraining metric reported while pretraining
    out_root: str  # trial outputs: <out_root>/<trial_id>/{pretrain,<evaluation>}
    train_storage: str  # Ray Train storage of the trials' jobs (runs named from the trial id)
    resources: Resources  # per job
    max_failures: int = 2  # worker failures each job recovers from
    tracking_uri: str | None = None
    experiment: str = "ms2l"
    parent_run_id: str | None = None

    @property
    def runs(self) -> SearchRuns | None:
        """The search's MLflow runs under its parent; None when the search is untracked."""
        return SearchRuns(self.tracking_uri, self.parent_run_id) if self.tracking_uri and self.parent_run_id else None

    def trial_config(self, params: dict[str, Any]) -> Config:
        """Base config with the sampled dotted-path values; ``ConfigError`` for combinations the model rejects."""
        return apply_delta(self.base, unflatten(params), "sampled parameters")

    def execution(self, callbacks: list[Any] | None = None) -> Execution:
        """How the trial's jobs run: its per-job resources and Train storage, with ``callbacks`` on the trainer."""
        return Execution(resources=self.resources, storage_path=self.train_storage, max_failures=self.max_failures,
                         callbacks=callbacks)

    def to_record(self) -> dict[str, Any]:
        """The setup as plain JSON data (``ms2l_search.json``): the config and evaluation as nested mappings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrialSetup:
        """Rebuild a setup from :meth:`to_record` output, validating the stored config once (the resume edge)."""
        fields = dict(record)
        fields["base"] = from_dict(fields["base"])
        fields["evaluation"] = Evaluation(**fields["evaluation"])
        fields["resources"] = Resources(**fields["resources"])
        return cls(**fields)


class ProxyReportCallback(TuneReportCallback):  # type: ignore[misc]
    """Forward only the pretraining epochs that carry the proxy, as ``{objective, epoch, <proxies>}``.

    Runs on the Train controller. Epochs without a KNN probe are not forwarded: ASHA only needs the
    rungs (the probe runs every ``grace_period`` epochs), and Optuna would record every forward as an
    intermediate value.
    """

    def __init__(self, proxy: str) -> None:
        super().__init__()
        self.proxy = proxy

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        """Forward rank 0's report to Tune when it carries the proxy (without the checkpoint), else nothing."""
        first = metrics[0] if metrics else {}
        if self.proxy not in first:
            return
        result = {OBJECTIVE: float(first[self.proxy]), "epoch": int(first.get("epoch", 0)), PHASE: "pretrain",
                  **{k: float(first[k]) for k in PROXY_METRICS if k in first}}  # every proxy: fidelity compares them
        if "train_loss" in first:
            result["train_loss"] = float(first["train_loss"])
        super().after_report(run_context, [result], None)  # Train keeps the checkpoint; Tune needs none


def _report(metrics: dict[str, Any]) -> None:
    from ray import tune

    tune.report(metrics)


def _stored_result(run: Any, setup: TrialSetup) -> dict[str, Any]:
    """The final report of a trial whose MLflow run already FINISHED (resume without re-training)."""
    m = run.data.metrics
    return {OBJECTIVE: float(m[setup.metric]), FINAL: 1.0, PHASE: "stored",
            **{k: float(m[k]) for k in (*REPORTED, setup.proxy, PRETRAIN_EPOCHS) if k in m}}


def _open_trial_run(setup: TrialSetup, trial_id: str, params: dict[str, Any], existing: Any,
                    tags: dict[str, str] | None = None) -> RunLogger | None:
    runs = setup.runs
    if runs is None:
        return None
    if existing is not None:  # an interrupted attempt: continue in the same run, close its dead jobs
        run = runs.logger(existing.info.run_id)
        runs.close_children(run.run_id)
        run.resume()
        return run
    parent = runs.logger(setup.parent_run_id)  # type: ignore[arg-type]
    run = start_run(setup.tracking_uri, setup.experiment, f"{setup.search}-{trial_id}", parent,  # type: ignore[arg-type]
                    {tag.KIND: tag.KIND_TRIAL, tag.SEARCH: setup.search, tag.TRIAL_ID: trial_id, **(tags or {})})
    run.log_params(params)
    return run


def _pretrained(runs: SearchRuns | None, run: RunLogger | None, out: Path) -> bool:
    """Did an earlier attempt of this trial finish pretraining (FINISHED run and the encoder on disk)?"""
    if runs is None or run is None or not (out / ENCODER_FILE).exists():
        return False
    return any(r.data.tags.get(tag.KIND) == tag.KIND_PRETRAIN and r.info.status == "FINISHED"
               for r in runs.children(run.run_id))


def _trial_jobs(setup: TrialSetup, trial_id: str, cfg: Config, run_id: str | None,
                callback: ProxyReportCallback) -> dict[str, Any]:
    """Pretrain and evaluate in one Train run (or only evaluate, when an earlier attempt finished pretraining).

    One Train run per trial (issue 12, item 7): the pretraining and its evaluation share one worker group and
    one start-up, as an ablation's cell-seed does. The evaluation's MLflow run is started by the worker when
    the evaluation starts, so a trial ASHA cuts during pretraining holds its pretraining run only. The Train
    run keeps the name ``<trial_id>-pretrain``, so a trial re-run after ``--resume`` restores its
    pretraining checkpoint.

    Runs as a child Ray task of the trial (see :func:`run_trial`), so the ``TorchTrainer`` controller it
    creates belongs to this task's worker.
    """
    runs = setup.runs
    run = runs.logger(run_id) if runs and run_id else None
    tracking = Tracking(setup.tracking_uri, setup.experiment) if setup.tracking_uri else None
    tags = {tag.SEARCH: setup.search, tag.TRIAL_ID: trial_id}
    out = Path(setup.out_root) / trial_id
    ev = setup.evaluation
    ev_name, ev_out, ev_tags = f"{trial_id}-{ev.label}", out / ev.label, {**tags, tag.EVALUATION: ev.label}
    pre: dict[str, Any] = {}
    if _pretrained(runs, run, out / "pretrain"):
        outcome, _ = tracked_evaluate(ev.apply(cfg), encoder=str(out / "pretrain"), name=ev_name, out_dir=ev_out,
                                      tracking=tracking, execution=setup.execution(), parent=run, tags=ev_tags)
    else:
        chain = tracked_chain(cfg, [ChainEvaluation(ev.apply(cfg), ev_name, ev_out, ev_tags, started_by_worker=True)],
                              name=f"{trial_id}-pretrain", pretrain_name=f"{trial_id}-pretrain",
                              pretrain_out=out / "pretrain", tracking=tracking,
                              execution=setup.execution([callback]), parent=run, tags=tags)
        pre = chain.pretrain.metrics if chain.pretrain else {}
        outcome = chain.evaluations[0]
    final = {OBJECTIVE: float(outcome.metrics[setup.metric]), FINAL: 1.0, PHASE: ev.label,
             PRETRAIN_EPOCHS: cfg.pretrain.epochs,  # not "epoch": ASHA must not read this report as a rung
             **{k: float(outcome.metrics[k]) for k in REPORTED if k in outcome.metrics}}
    if setup.proxy in pre:
        final[setup.proxy] = float(pre[setup.proxy])
    return final


def _run_jobs(setup: TrialSetup, trial_id: str, cfg: Config, run: RunLogger | None) -> dict[str, Any]:
    """Run :func:`_trial_jobs` in a child task whose runtime env names this cluster (``RAY_ADDRESS``).

    Why a child task: ASHA stops a trial by ending its actor, which takes the Train controller with it but not
    the controller's placement group; Train's detached ``PlacementGroupCleaner`` frees that — but it finds the
    cluster through the state API, which cannot pick among several local Ray instances (a shared workstation,
    a CI box) unless ``RAY_ADDRESS`` is in its environment. Environment variables reach it only through
    runtime-env inheritance (trial task → Train controller → cleaner), hence this task. It holds no CPU and
    dies with the trial (its owner), so a cut trial frees its workers' CPUs at once.
    """
    import ray

    env = {"env_vars": {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}}
    task = ray.remote(num_cpus=0, max_retries=0)(_trial_jobs).options(runtime_env=env, name=f"trial-{trial_id}")
    callback = ProxyReportCallback(setup.proxy)  # built here: it needs the Tune session of this trial
    return ray.get(task.remote(setup, trial_id, cfg, run.run_id if run else None, callback))  # type: ignore[no-any-return]


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable: ``config`` is the sampled ``{dotted.key: value}`` mapping.

    Keys starting with ``_`` are tags of the trial's MLflow run, not config (confirmation reruns carry
    ``_confirm_of``; see :mod:`ms2l_ray.studies.search.confirm`). Dotted config paths never start with ``_``.
    """
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    params = {k: v for k, v in config.items() if not k.startswith("_")}
    tags = {k[1:]: str(v) for k, v in config.items() if k.startswith("_")}
    runs = setup.runs
    existing = runs.find_trial(trial_id) if runs else None
    if (existing is not None and existing.info.status == "FINISHED"
            and existing.data.tags.get(tag.OUTCOME) == tag.OUTCOME_FINISHED):
        _report(_stored_result(existing, setup))  # finished before the driver died: no duplicate work or run
        return
    try:
        cfg = setup.trial_config(params)
    except ConfigError as exc:
        _reject(setup, trial_id, params, existing, str(exc))
        _report({OBJECTIVE: worst_objective(setup.mode), REJECTED: 1.0, PHASE: "rejected"})
        return
    run = _open_trial_run(setup, trial_id, params, existing, tags)
    # Exception only: a trial Tune stops (its actor ends) is closed by TrialRunsCallback on the driver.
    with tracked_run(run, catch=Exception, failure_tags={tag.OUTCOME: tag.OUTCOME_FAILED}):
        final = _run_jobs(setup, trial_id, cfg, run)
        if run is not None:
            run.log_metrics({k: v for k, v in final.items() if k in (*REPORTED, setup.proxy, PRETRAIN_EPOCHS)},
                            step=0)
            run.set_tags({tag.OUTCOME: tag.OUTCOME_FINISHED})
    _report(final)


def _reject(setup: TrialSetup, trial_id: str, params: dict[str, Any], existing: Any, reason: str) -> None:
    """Record a sampled config the model cannot train (e.g. every task weight 0) and train nothing."""
    run = _open_trial_run(setup, trial_id, params, existing)
    if run is not None:
        run.set_tags({tag.OUTCOME: tag.OUTCOME_REJECTED, tag.REJECTED_REASON: reason.replace("\n", " ")[:4000]})
        run.end("FINISHED")


def base_with_knn(cfg: Config, knn_every: int) -> Config:
    """The base config every trial starts from, probing KNN at the scheduler's rungs."""
    return dataclasses.replace(cfg, knn_every=knn_every)
