"""The search driver: a Ray Tune ``Tuner`` over :func:`~ms2l_ray.studies.search.trial.run_trial`, Optuna + ASHA.

It records one MLflow parent run and is resumable after the driver dies.

Resources. A trial is a Tune function trainable that only launches ``TorchTrainer`` jobs and waits, so it
reserves no CPU (:data:`TRIAL_DRIVER_RESOURCES`: a token of logical memory, because Tune refuses an empty
bundle); its jobs take ``workers × cpus_per_worker`` CPUs (and GPUs) each. Packing is then decided by
``max_concurrent_trials``, whose default is ``floor(cluster CPUs (GPUs) / per-trial need)`` — Ray's
Train-in-Tune recommendation. With a 1-CPU trial driver, a 2-CPU machine would run one trial at a time.

State. ``<storage>/<name>/`` holds Tune's experiment (what ``Tuner.restore`` reads), the Train runs of the
trials (``train/``), their outputs (``trials/``), the Optuna study (``optuna.db``, SQLite) and
``ms2l_search.json`` — the trial setup and the MLflow parent run id, so ``--resume`` reopens the same parent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ms2l_ray.jobs.driver import default_storage_path
from ms2l_ray.jobs.spec import Resources
from ms2l_ray.jobs.tracked import Tracking
from ms2l_ray.names import check_name, unique_name
from ms2l_ray.studies.search.confirm import ConfirmSpec, report_confirmation, run_confirmation
from ms2l_ray.studies.search.progress import TrialLines
from ms2l_ray.studies.search.runs import TrialRunsCallback
from ms2l_ray.studies.search.sampling import FINAL, OBJECTIVE, REJECTED, make_scheduler, make_search_alg
from ms2l_ray.studies.search.space import SearchSpace, parse_space, with_overrides
from ms2l_ray.studies.search.summary import SearchResult, collect_rows, finish_search
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


def search_dir(storage_path: str | None, name: str) -> Path:
    """``<storage>/<name>``, the search's local folder (Tune state, Optuna study, record); URIs are refused."""
    storage = storage_path or default_storage_path()
    if "://" in storage:
        raise ValueError(f"--storage-path {storage}: a search keeps its Optuna study and trial outputs beside Tune's "
                         f"state; use a local or shared-filesystem path")
    return Path(storage).resolve() / check_name("search name", name)


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
    study_url: str
    created: str

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

    def to_json(self) -> str:
        """The record with credentials removed from the tracking URI (what goes to disk and to MLflow)."""
        d = dataclasses.asdict(self)
        d["setup"]["tracking_uri"] = redact_uri(d["setup"]["tracking_uri"])
        return json.dumps(d, indent=1)

    def save(self, directory: Path) -> None:
        """Write the record into ``directory`` atomically (a temporary file, then a rename)."""
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (RECORD + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(directory / RECORD)

    @classmethod
    def load(cls, directory: Path) -> SearchRecord:
        """The record in ``directory``; ``FileNotFoundError`` listing the searches beside it when there is none."""
        path = directory / RECORD
        if not path.exists():
            known = sorted(p.parent.name for p in directory.parent.glob(f"*/{RECORD}"))
            raise FileNotFoundError(f"no search named {directory.name!r} under {directory.parent} (missing {RECORD}); "
                                    f"searches there: {known or 'none'}")
        return cls(**json.loads(path.read_text()))


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
               confirm: ConfirmSpec | None = None) -> SearchResult:
    """Run a new search on the current Ray cluster (``ray.init`` first) and return its trials and best config.

    Args:
        space: a validated space (:func:`~ms2l_ray.studies.search.space.load_space` + overrides).
        name: the search name (Tune experiment, storage folder, MLflow parent run); default ``<space>-<stamp>``.
        storage_path: where Tune, Train and the Optuna study keep their state (default ``./ray_results``).
        tracking: the MLflow store of the parent and trial runs; None: untracked.
        resources: each trial job's workers and per-worker resources.
        extra: config deltas from the command line (``--set``, ``--seed``, ``--dataset``) for every trial.
        max_failures: worker failures each trial job recovers from (Ray Train's ``FailureConfig``).
        verbose: Tune's verbosity (its status table).
        confirm: rerun the top configurations over fresh seeds after the search (:mod:`.confirm`).
    """
    import ray

    resources = resources or Resources()
    name = check_name("--name", name) if name else unique_name(space.name)
    directory = search_dir(storage_path, name)
    if (directory / RECORD).exists():
        raise ValueError(f"search {name!r} already exists in {directory}; continue it with --resume or pick --name")
    base = space.base_config(extra)
    max_t = space.max_t(base)
    max_concurrent = space.max_concurrent or default_max_concurrent(ray.cluster_resources(), resources,
                                                                    space.num_samples)
    parent = _open_parent(tracking, name, space, max_concurrent, resources) if tracking else None
    setup = TrialSetup(search=name, base=base_with_knn(base, space.knn_every()), evaluation=space.evaluation,
                       metric=space.metric, mode=space.mode, proxy=space.proxy, out_root=str(directory / "trials"),
                       train_storage=str(directory / "train"), resources=resources, max_failures=max_failures,
                       tracking_uri=tracking.uri if tracking else None,
                       experiment=tracking.experiment if tracking else "ms2l",
                       parent_run_id=parent.run_id if parent else None)
    record = SearchRecord(name=name, space_raw=space.raw, space_source=space.source, overrides=space.overrides,
                          extra=extra or {}, setup=setup.to_record(), max_concurrent=max_concurrent,
                          study_url=f"sqlite:///{directory / STUDY_DB}", created=time.strftime("%Y-%m-%d %H:%M:%S"))
    record.save(directory)
    if parent is not None:
        parent.log_text(record.to_json(), RECORD)
    print(f"[tune] search {name}: {space.num_samples} trials, {max_concurrent} at a time, "
          f"{resources.workers}×{resources.cpus_per_worker:g} CPU"
          + (f"+{resources.gpus_per_worker:g} GPU" if resources.gpus_per_worker else "") + " per trial job; "
          f"resume with --resume --name {name}")
    tuner = _new_tuner(space, setup, record, directory, max_t, verbose)
    return _fit(tuner, space, setup, record, directory, parent, confirm, verbose)


def resume_search(name: str, *, storage_path: str | None = None, tracking_uri: str | None = None,
                  verbose: int = 1, confirm: ConfirmSpec | None = None) -> SearchResult:
    """Continue an interrupted search: Tune restores finished and unfinished trials, the parent run is reopened.

    ``tracking_uri`` is needed only when the recorded one had credentials (they are never written to disk).
    """
    from ray import tune

    directory = search_dir(storage_path, name)
    record = SearchRecord.load(directory)
    space, setup = record.space(), record.trial_setup(tracking_uri)
    parent = None
    if setup.tracking_uri and setup.parent_run_id:
        parent = RunLogger(RunRef(setup.tracking_uri, setup.parent_run_id))
        parent.resume()
    if tune.Tuner.can_restore(str(directory)):
        print(f"[tune] resuming search {name} from {directory}")
        tuner = tune.Tuner.restore(str(directory), trainable=_trainable(setup), resume_unfinished=True,
                                   resume_errored=False)
    else:  # killed before Tune wrote its first experiment checkpoint: start over under the same parent run
        print(f"[tune] nothing for Tune to restore in {directory}; starting search {name} again")
        max_t = space.max_t(setup.trial_config({}))
        tuner = _new_tuner(space, setup, record, directory, max_t, verbose)
    return _fit(tuner, space, setup, record, directory, parent, confirm, verbose)


def _new_tuner(space: SearchSpace, setup: TrialSetup, record: SearchRecord, directory: Path, max_t: int,
               verbose: int) -> Any:
    from ray import tune

    runs = setup.runs
    callbacks: list[Any] = [TrialRunsCallback(runs, OBJECTIVE, FINAL, REJECTED)] if runs else []
    callbacks.append(TrialLines(space.metric))  # the console's per-trial lines (ms2l_ray.studies.search.progress)
    return tune.Tuner(
        _trainable(setup),
        tune_config=tune.TuneConfig(search_alg=make_search_alg(space, record.name, record.study_url),
                                    scheduler=make_scheduler(space, max_t), num_samples=space.num_samples,
                                    max_concurrent_trials=record.max_concurrent),
        run_config=tune.RunConfig(name=record.name, storage_path=str(directory.parent), callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=verbose),
    )


class SearchInterrupted(KeyboardInterrupt):
    """Tune stopped early (Ctrl-C) and saved its state; ``--resume --name <name>`` continues the search.

    A ``KeyboardInterrupt``, because that is what it reports: the CLI's one exit-code policy
    (:mod:`ms2l_ray.cli.errors`) gives it 130 and prints its message.
    """


def _fit(tuner: Any, space: SearchSpace, setup: TrialSetup, record: SearchRecord, directory: Path,
         parent: RunLogger | None, confirm: ConfirmSpec | None = None, verbose: int = 1) -> SearchResult:
    with tracked_run(parent, failed="KILLED"):  # KILLED, not FAILED: --resume reopens it
        grid = tuner.fit()
        rows = collect_rows(grid, space)
        open_trials = [r.trial_id for r in rows if r.status == "interrupted"]
        if open_trials:  # Tune returns normally after SIGINT, with unfinished trials
            raise SearchInterrupted(f"search {record.name} interrupted with {len(open_trials)} unfinished trials; "
                                    f"continue it with --resume --name {record.name}")
        runs = setup.runs
        if runs is not None:
            runs.close_orphans({r.trial_id for r in rows})
        result = finish_search(rows, space, setup, record.name, record.study_url, directory, parent)
        if confirm is not None:
            result.confirmation = run_confirmation(rows, confirm, setup, directory, record.max_concurrent, verbose)
            if result.confirmation is not None:
                report_confirmation(result.confirmation, directory, parent)
        return result

