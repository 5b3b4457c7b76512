"""The search driver: a Ray Tune ``Tuner`` over :func:`~ms2l_ray.studies.search.trial.run_trial`, Optuna + ASHA.

It records one MLflow parent run and is resumable after the driver dies.

Resources. A trial is a Tune function trainable that only launches ``TorchTrainer`` jobs and waits, so it
reserves no CPU (:data:`TRIAL_DRIVER_RESOURCES`: a token of logical memory, because Tune refuses an empty
bundle); its jobs take ``workers × cpus_per_worker`` CPUs (and GPUs) each. Packing is then decided by
``max_concurrent_trials``, whose default is ``floor(cluster CPUs (GPUs) / per-trial need)`` — Ray's
Train-in-Tune recommendation. With a 1-CPU trial driver, a 2-CPU machine would run one trial at a time.

State. ``<storage>/<name>/`` holds Tune's experiment (what ``Tuner.restore`` reads), the Train runs of the
trials (``train/``) and ``ms2l_search.json`` — the trial setup, the MLflow parent run id and where the rest lives,
so ``--resume`` reopens the same parent. The storage may be a local folder or a URI (``s3://``, ``gs://``,
``file://``): the record goes through :mod:`ms2l_ray.jobs.records` and Tune/Train through ``pyarrow.fs``, so a
search resumes on any node that reaches the storage. The trials' outputs and the summary go to a local (or shared)
folder, ``SearchPaths.local``: the storage folder itself when it is local, ``--out`` otherwise (default
``outputs/<name>``). The Optuna study is a database named by ``--study-storage`` (e.g. ``postgresql://…``, which
every node reaches); by default SQLite (``optuna.db``) in the local folder.

Budgets. ``--time-budget`` ends a search resumably (:mod:`ms2l_ray.studies.search.budget`); the trials it stopped
are listed as ``budget_stopped`` (running) and ``not_started`` (queued), and ``--resume`` continues them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ms2l_ray.console import current, say
from ms2l_ray.jobs.driver import default_storage_path
from ms2l_ray.jobs.records import read_record, write_record
from ms2l_ray.jobs.spec import Resources
from ms2l_ray.jobs.tracked import Tracking
from ms2l_ray.names import check_name, is_uri, unique_name
from ms2l_ray.studies.budget import Budget, format_duration
from ms2l_ray.studies.search import budget as search_budget
from ms2l_ray.studies.search.confirm import ConfirmSpec, report_confirmation, run_confirmation
from ms2l_ray.studies.search.progress import TrialLines
from ms2l_ray.studies.search.runs import TrialRunsCallback
from ms2l_ray.studies.search.sampling import FINAL, OBJECTIVE, REJECTED, make_scheduler, make_search_alg
from ms2l_ray.studies.search.space import SearchSpace, parse_space, with_overrides
from ms2l_ray.studies.search.summary import (
    BUDGET_STOPPED,
    NOT_STARTED,
    SearchResult,
    TrialRow,
    collect_rows,
    finish_search,
    recover_finished,
)
from ms2l_ray.studies.search.trial import TrialSetup, base_with_knn, run_trial
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, RunRef, start_run, tracked_run
from ms2l_ray.tracking.store import redact_uri, restore_uri

RECORD = "ms2l_search.json"
STUDY_DB = "optuna.db"
TRIAL_DRIVER_RESOURCES: dict[str, float] = {"cpu": 0, "memory": 64 * 1024**2}  # ~0, yet a non-empty bundle


def default_max_concurrent(cluster: dict[str, float], resources: Resources, num_samples: int) -> int:
    """How many trials fit at once: each holds ``workers × per-worker`` CPUs (and GPUs) for its jobs."""
    need = {"CPU": resources.workers * resources.cpus_per_worker}
    if resources.gpus_per_worker > 0:
        need["GPU"] = resources.workers * resources.gpus_per_worker
    fits = min(math.floor(cluster.get(k, 0.0) / v + 1e-9) for k, v in need.items())
    if fits < 1:
        raise ValueError(f"one trial needs {need} but the Ray cluster has {cluster.get('CPU', 0)} CPUs and "
                         f"{cluster.get('GPU', 0)} GPUs; lower --cpus-per-trial/--gpus-per-trial")
    return max(1, min(fits, num_samples))


@dataclass(frozen=True)
class SearchPaths:
    """Where a search keeps its state (``storage``: local folder or URI) and its local files (``local``)."""

    storage: str  # Tune's storage root: an absolute local folder or a URI
    name: str
    local: Path  # trial outputs (trials/), the summary, the default Optuna study

    @property
    def experiment(self) -> str:
        """``<storage>/<name>``: Tune's experiment folder, where the record lives too."""
        if is_uri(self.storage):
            return f"{self.storage.rstrip('/')}/{self.name}"
        return str(Path(self.storage) / self.name)

    @property
    def train(self) -> str:
        """The Ray Train storage of the trials' jobs."""
        return f"{self.experiment}/train"

    def default_study_url(self) -> str:
        """SQLite in the local folder: enough for one driver host; ``--study-storage`` for a cluster."""
        return f"sqlite:///{self.local / STUDY_DB}"


def search_paths(storage_path: str | None, name: str, out: str | Path | None = None) -> SearchPaths:
    """The paths of search ``name``; ``out`` is the local folder for a search on URI storage (default outputs/NAME)."""
    check_name("search name", name)
    storage = storage_path or default_storage_path()
    if not is_uri(storage):
        storage = str(Path(storage).resolve())
    if out is not None:
        local = Path(out).resolve()
    elif not is_uri(storage):
        local = Path(storage) / name
    elif storage.startswith("file://"):
        local = Path(urllib.parse.urlparse(storage).path) / name
    else:
        local = (Path("outputs") / name).resolve()
    return SearchPaths(storage, name, local)


@dataclass
class SearchRecord:
    """``ms2l_search.json``: enough to rebuild the trainable and reopen the MLflow parent on ``--resume``."""

    name: str
    space_raw: dict[str, Any]  # the space file as loaded
    space_source: str
    overrides: dict[str, Any]  # --preset/--num-samples/--max-concurrent/--seed applied on top
    extra: dict[str, Any]  # --set/--dataset/--seed config deltas (already inside setup.base; kept for the record)
    setup: dict[str, Any]  # TrialSetup.to_record()
    max_concurrent: int
    study_url: str  # redacted: credentials of a --study-storage database are never written down
    created: str
    out_dir: str = ""  # SearchPaths.local ("" in records of older versions: the storage folder)

    def space(self) -> SearchSpace:
        """The search space as the search ran it: the recorded file with its command-line overrides."""
        space = parse_space(self.space_raw, self.space_source, name=Path(self.space_source).stem)
        return with_overrides(space, **self.overrides)

    def trial_setup(self, tracking_uri: str | None = None) -> TrialSetup:
        """The trials' setup; ``tracking_uri`` restores a tracking URI whose credentials the record left out."""
        setup = TrialSetup.from_record(self.setup)
        if setup.tracking_uri is None:
            return setup
        return dataclasses.replace(setup, tracking_uri=restore_uri(setup.tracking_uri, tracking_uri,
                                                                   f"search {self.name}"))

    def study(self, given: str | None = None) -> str:
        """The Optuna storage URL; ``given`` (``--study-storage``) restores credentials the record left out."""
        return restore_uri(self.study_url, given, f"search {self.name}'s Optuna study", "--study-storage")

    def to_json(self) -> str:
        """The record with credentials removed from the tracking and study URIs (what goes to disk and to MLflow)."""
        d = dataclasses.asdict(self)
        d["setup"]["tracking_uri"] = redact_uri(d["setup"]["tracking_uri"])
        d["study_url"] = redact_uri(d["study_url"])
        return json.dumps(d, indent=1)

    def save(self, paths: SearchPaths) -> None:
        """Write the record into ``<storage>/<name>/`` (local or URI), atomically where the filesystem allows."""
        write_record(paths.storage, paths.name, RECORD, json.loads(self.to_json()))

    @classmethod
    def load(cls, paths: SearchPaths) -> SearchRecord:
        """The record of ``paths``; ``FileNotFoundError`` (listing the local searches beside it) when there is none."""
        found = read_record(paths.storage, paths.name, RECORD)
        if found is None:
            known = ([] if is_uri(paths.storage) else
                     sorted(p.parent.name for p in Path(paths.storage).glob(f"*/{RECORD}")))
            raise FileNotFoundError(f"no search named {paths.name!r} under {paths.storage} (missing {RECORD}); "
                                    f"searches there: {known or 'none' if not is_uri(paths.storage) else 'not listed'}")
        return cls(**found)

    def paths(self, storage_path: str | None) -> SearchPaths:
        """The search's paths as recorded (its local folder stays where the search began)."""
        return search_paths(storage_path, self.name, self.out_dir or None)


def _trainable(setup: TrialSetup) -> Any:
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), TRIAL_DRIVER_RESOURCES)


def _open_parent(tracking: Tracking, name: str, space: SearchSpace, max_concurrent: int,
                 resources: Resources) -> RunLogger:
    import yaml

    s = space
    run = start_run(tracking.uri, tracking.experiment, name, None,
                    {tag.KIND: tag.KIND_SEARCH, tag.SEARCH: name, tag.SEARCH_SPACE: s.source, tag.METRIC: s.metric,
                     tag.MODE: s.mode, tag.PROXY: s.proxy, tag.SAMPLER: s.sampler.type,
                     tag.SCHEDULER: s.scheduler.type})
    run.log_params({"preset": s.preset, "num_samples": s.num_samples, "max_concurrent": max_concurrent,
                    "evaluation": s.evaluation.label, "parameters": ",".join(s.keys),
                    **{f"sampler.{k}": v for k, v in dataclasses.asdict(s.sampler).items()},
                    **{f"scheduler.{k}": v for k, v in dataclasses.asdict(s.scheduler).items()},
                    **{f"resources.{k}": v for k, v in dataclasses.asdict(resources).items()}})
    run.log_text(yaml.safe_dump(s.raw, sort_keys=False), "search_space.yaml")
    if s.overrides:
        run.set_tags({tag.OVERRIDES: json.dumps(s.overrides)})
    return run


def run_search(space: SearchSpace, *, name: str | None = None, storage_path: str | None = None,
               tracking: Tracking | None = None, resources: Resources | None = None,
               extra: dict[str, Any] | None = None, max_failures: int = 2, verbose: int = 1,
               confirm: ConfirmSpec | None = None, out: str | Path | None = None, study_storage: str | None = None,
               budget: Budget | None = None) -> SearchResult:
    """Run a new search on the current Ray cluster (``ray.init`` first) and return its trials and best config.

    Args:
        space: a validated space (:func:`~ms2l_ray.studies.search.space.load_space` + overrides).
        name: the search name (Tune experiment, storage folder, MLflow parent run); default ``<space>-<stamp>``.
        storage_path: where Tune, Train and the record keep their state, a folder or a URI (default
            ``./ray_results``).
        tracking: the MLflow store of the parent and trial runs; None: untracked.
        resources: each trial job's workers and per-worker resources.
        extra: config deltas from the command line (``--set``, ``--seed``, ``--dataset``) for every trial.
        max_failures: worker failures each trial job recovers from (Ray Train's ``FailureConfig``).
        verbose: Tune's verbosity (its status table).
        confirm: rerun the top configurations over fresh seeds after the search (:mod:`.confirm`).
        out: local folder for trial outputs and the summary (default: see :func:`search_paths`).
        study_storage: the Optuna study's database URL (default SQLite in the local folder).
        budget: a wall-clock budget; when it is spent the search stops resumably (:mod:`.budget`).
    """
    import ray

    resources = resources or Resources()
    name = check_name("--name", name) if name else unique_name(space.name)
    paths = search_paths(storage_path, name, out)
    if read_record(paths.storage, name, RECORD) is not None:
        raise ValueError(f"search {name!r} already exists in {paths.experiment}; continue it with --resume or pick "
                         f"--name")
    base = space.base_config(extra)
    max_t = space.max_t(base)
    max_concurrent = space.max_concurrent or default_max_concurrent(ray.cluster_resources(), resources,
                                                                    space.num_samples)
    parent = _open_parent(tracking, name, space, max_concurrent, resources) if tracking else None
    setup = TrialSetup(search=name, base=base_with_knn(base, space.knn_every()), evaluation=space.evaluation,
                       metric=space.metric, mode=space.mode, proxy=space.proxy, out_root=str(paths.local / "trials"),
                       train_storage=paths.train, resources=resources, max_failures=max_failures,
                       tracking_uri=tracking.uri if tracking else None,
                       experiment=tracking.experiment if tracking else "ms2l",
                       parent_run_id=parent.run_id if parent else None)
    study_url = study_storage or paths.default_study_url()
    record = SearchRecord(name=name, space_raw=space.raw, space_source=space.source, overrides=space.overrides,
                          extra=extra or {}, setup=setup.to_record(), max_concurrent=max_concurrent,
                          study_url=study_url, created=time.strftime("%Y-%m-%d %H:%M:%S"), out_dir=str(paths.local))
    paths.local.mkdir(parents=True, exist_ok=True)
    record.save(paths)
    if parent is not None:
        parent.log_text(record.to_json(), RECORD)
    print(f"[tune] search {name}: {space.num_samples} trials, {max_concurrent} at a time, "
          f"{resources.workers}×{resources.cpus_per_worker:g} CPU"
          + (f"+{resources.gpus_per_worker:g} GPU" if resources.gpus_per_worker else "") + " per trial job"
          + (f", {budget.describe()}" if budget else "") + f"; resume with --resume --name {name}")
    tuner = _new_tuner(space, setup, record, paths, study_url, max_t, verbose)
    return _fit(tuner, space, setup, record, paths, study_url, parent, confirm, verbose, budget)


def resume_search(name: str, *, storage_path: str | None = None, tracking_uri: str | None = None,
                  verbose: int = 1, confirm: ConfirmSpec | None = None, study_storage: str | None = None,
                  budget: Budget | None = None) -> SearchResult:
    """Continue an interrupted (or budget-ended) search: Tune restores its trials, the parent run is reopened.

    ``tracking_uri`` and ``study_storage`` are needed only when the recorded ones had credentials (they are never
    written down). ``budget`` is a fresh budget for this part of the search (the first one's is spent).
    """
    from ray import tune

    paths = search_paths(storage_path, name)
    record = SearchRecord.load(paths)
    paths = record.paths(storage_path)
    space, setup, study_url = record.space(), record.trial_setup(tracking_uri), record.study(study_storage)
    parent = None
    if setup.tracking_uri and setup.parent_run_id:
        parent = RunLogger(RunRef(setup.tracking_uri, setup.parent_run_id))
        parent.resume()
    if tune.Tuner.can_restore(paths.experiment):
        print(f"[tune] resuming search {name} from {paths.experiment}"
              + (f" with a {budget.describe()}" if budget else ""))
        tuner = tune.Tuner.restore(paths.experiment, trainable=_trainable(setup), resume_unfinished=True,
                                   resume_errored=False)
    else:  # killed before Tune wrote its first experiment checkpoint: start over under the same parent run
        print(f"[tune] nothing for Tune to restore in {paths.experiment}; starting search {name} again")
        max_t = space.max_t(setup.trial_config({}))
        tuner = _new_tuner(space, setup, record, paths, study_url, max_t, verbose)
    return _fit(tuner, space, setup, record, paths, study_url, parent, confirm, verbose, budget)


def _new_tuner(space: SearchSpace, setup: TrialSetup, record: SearchRecord, paths: SearchPaths, study_url: str,
               max_t: int, verbose: int) -> Any:
    from ray import tune

    runs = setup.runs
    callbacks: list[Any] = [TrialRunsCallback(runs, OBJECTIVE, FINAL, REJECTED)] if runs else []
    # the console's per-trial lines (ms2l_ray.studies.search.progress), counted out of the search's trials
    callbacks.append(TrialLines(space.metric, space.num_samples))
    callbacks.append(search_budget.BudgetWatch(record.name))  # always there: a resume may bring a budget
    return tune.Tuner(
        _trainable(setup),
        tune_config=tune.TuneConfig(search_alg=make_search_alg(space, record.name, study_url),
                                    scheduler=make_scheduler(space, max_t), num_samples=space.num_samples,
                                    max_concurrent_trials=record.max_concurrent),
        run_config=tune.RunConfig(name=record.name, storage_path=paths.storage, callbacks=callbacks,
                                  stop=search_budget.BudgetStopper(record.name),
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=verbose),
    )


class SearchInterrupted(KeyboardInterrupt):
    """Tune stopped early (Ctrl-C) and saved its state; ``--resume --name <name>`` continues the search.

    A ``KeyboardInterrupt``, because that is what it reports: the CLI's one exit-code policy
    (:mod:`ms2l_ray.cli.errors`) gives it 130 and prints its message.
    """


def _fit(tuner: Any, space: SearchSpace, setup: TrialSetup, record: SearchRecord, paths: SearchPaths,
         study_url: str, parent: RunLogger | None, confirm: ConfirmSpec | None = None, verbose: int = 1,
         budget: Budget | None = None) -> SearchResult:
    search_budget.arm(record.name, budget)
    if parent is not None and budget is not None:
        parent.set_tags({tag.TIME_BUDGET: budget.shown})
    try:
        with tracked_run(parent, failed="KILLED"):  # KILLED, not FINISHED: --resume reopens it
            grid = tuner.fit()
            ended_by_budget = search_budget.fired(record.name)
            rows = recover_finished(collect_rows(grid, space, ended_by_budget), setup)
            open_trials = [r.trial_id for r in rows if r.status == "interrupted"]
            if open_trials:  # Tune returns normally after SIGINT, with unfinished trials
                raise SearchInterrupted(f"search {record.name} interrupted with {len(open_trials)} unfinished "
                                        f"trials; continue it with --resume --name {record.name}")
            runs = setup.runs
            if runs is not None:
                runs.close_orphans({r.trial_id for r in rows})
                for r in rows:
                    if r.status == BUDGET_STOPPED:
                        runs.close_trial(r.trial_id, tag.OUTCOME_BUDGET_STOPPED, "KILLED")
            result = finish_search(rows, space, setup, record.name, study_url, paths.local, parent)
            if ended_by_budget:
                _report_budget(rows, budget, record.name, parent)  # type: ignore[arg-type]
            elif confirm is not None:
                result.confirmation = run_confirmation(rows, confirm, setup, paths.local, record.max_concurrent,
                                                       verbose)
                if result.confirmation is not None:
                    report_confirmation(result.confirmation, paths.local, parent)
            result.ended_by_budget = ended_by_budget
            return result
    finally:
        search_budget.arm(record.name, None)


def _report_budget(rows: list[TrialRow], budget: Budget, name: str, parent: RunLogger | None) -> None:
    """Say that the budget ended the search, what it kept and what ``--resume`` would continue."""
    stopped = [r for r in rows if r.status == BUDGET_STOPPED]
    queued = [r for r in rows if r.status == NOT_STARTED]
    finished = sum(r.status == "finished" for r in rows)
    for r in stopped:
        current().finish(f"trial {r.trial_id}")  # its live line (ms2l_ray.studies.search.progress)
        say(f"[tune] trial {r.trial_id}: stopped by the {budget.describe()}"
            + (f" at epoch {r.epoch}" if r.epoch is not None else ""))
    say(f"[tune] the {budget.describe()} ended search {name} after {format_duration(budget.wall_elapsed())}: "
        f"{finished} finished trial(s) kept, {len(stopped)} stopped while running, {len(queued)} not started; "
        f"continue them with --resume --name {name}")
    for note in budget.notes:
        say(f"[tune] note: {note}")
    if parent is not None:
        parent.set_tags({tag.ENDED_BY: tag.ENDED_BY_TIME_BUDGET})
