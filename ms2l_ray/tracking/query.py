"""Every read of the run tree: one run, its children, an ablation's or a search's runs, a metric's history.

Why one module: the readers (``ms2l report``, ``ms2l rerun``, a resumed ablation or search, the ablation
table) must agree with the writers on how the tree is linked — :data:`~ms2l_ray.tracking.tags.PARENT_RUN`
for nesting, :data:`~ms2l_ray.tracking.tags.ABLATION_RUN_ID` across an ablation's levels — and must all
page through large stores and retry a busy SQLite file. Every function takes the tracking URI (a plain
string that travels to Ray workers and Tune callbacks) and reaches the store through
:func:`ms2l_ray.tracking.runs.client` and :func:`ms2l_ray.tracking.store.retrying`; no other module
builds an MLflow client.
"""

from __future__ import annotations

import functools
from typing import Any

from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, RunRef, client
from ms2l_ray.tracking.store import retrying

PAGE = 1000  # runs per search request


def get_run(tracking_uri: str, run_id: str) -> Any:
    """One run (``mlflow.entities.Run``: info, params, metrics, tags).

    Why a function: every reader needs the retry (a Tune search keeps the SQLite store busy).

    Args:
        tracking_uri: the store.
        run_id: the run's id.

    Returns:
        The run; MLflow's own error when there is none.
    """
    c = client(tracking_uri)
    return retrying(lambda: c.get_run(run_id))


def experiment_name(tracking_uri: str, experiment_id: str) -> str:
    """The name of an experiment, so that a new run (``ms2l rerun``) lands beside the one it repeats.

    Args:
        tracking_uri: the store.
        experiment_id: the experiment's id (a run's ``info.experiment_id``).

    Returns:
        The experiment's name.
    """
    c = client(tracking_uri)
    return str(retrying(lambda: c.get_experiment(experiment_id)).name)


def find_experiment(tracking_uri: str, name: str) -> Any | None:
    """An experiment by name, or None: ``ms2l report NAME`` takes a run id or an experiment name.

    Args:
        tracking_uri: the store.
        name: the experiment's name.

    Returns:
        The ``mlflow.entities.Experiment``, or None when the store has none of that name.
    """
    c = client(tracking_uri)
    return retrying(lambda: c.get_experiment_by_name(name))


def experiment_names(tracking_uri: str) -> list[str]:
    """Every experiment's name, sorted: what an error lists when a name matched nothing.

    Args:
        tracking_uri: the store.

    Returns:
        The names in alphabetical order.
    """
    c = client(tracking_uri)
    return sorted(e.name for e in retrying(lambda: c.search_experiments()))


def search_all(tracking_uri: str, experiment_ids: list[str], filter_string: str) -> list[Any]:
    """Every run matching ``filter_string``, all pages (deleted runs excluded).

    Why paged: one request returns at most a page, and an ablation over many cells × seeds × jobs, or a
    long search, holds more runs than that; a reader that saw one page would miss runs silently.

    Args:
        tracking_uri: the store.
        experiment_ids: the experiments to search.
        filter_string: an MLflow filter (``tags.kind = 'trial'``); "" for every run.

    Returns:
        The runs in MLflow's order (newest first).
    """
    c = client(tracking_uri)
    runs: list[Any] = []
    token = None
    while True:
        page = retrying(functools.partial(c.search_runs, experiment_ids, filter_string, max_results=PAGE,
                                          page_token=token))
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def tag_filter(key: str, value: str) -> str:
    """The MLflow filter ``tags.<key> = '<value>'`` (keys with dots, like ``mlflow.parentRunId``, included).

    Args:
        key: a tag key from :mod:`ms2l_ray.tracking.tags`.
        value: the value to match exactly.

    Returns:
        The filter string.
    """
    return f"tags.{key} = '{value}'"


def children(tracking_uri: str, run_id: str, experiment_id: str | None = None) -> list[Any]:
    """The direct children of a run (nested under it by :data:`~ms2l_ray.tracking.tags.PARENT_RUN`), in start order.

    Args:
        tracking_uri: the store.
        run_id: the parent's id.
        experiment_id: the parent's experiment, when the caller has the run already (saves a look-up).

    Returns:
        The child runs, earliest start first.
    """
    exp = experiment_id if experiment_id is not None else get_run(tracking_uri, run_id).info.experiment_id
    runs = search_all(tracking_uri, [exp], tag_filter(tag.PARENT_RUN, run_id))
    return sorted(runs, key=lambda r: r.info.start_time or 0)


def end_open_children(tracking_uri: str, run_id: str, status: str = "KILLED",
                      open_statuses: tuple[str, ...] = ("RUNNING",)) -> None:
    """End the children of a run still in ``open_statuses`` (their process is gone) with ``status``.

    The one write of this module: a trial whose actor Tune stopped, a cell-seed a budget stopped, leave job runs
    that nobody else will close.
    """
    for r in children(tracking_uri, run_id):
        if r.info.status in open_statuses:
            RunLogger(RunRef(tracking_uri, r.info.run_id)).end(status)


def children_of_kind(tracking_uri: str, run_id: str, kind: str, status: str | None = None) -> list[Any]:
    """The children of a run with ``kind`` (and, when given, with that status), in start order.

    Why: "the trials of a search", "the finished pretraining of a trial" — the question every resume asks.

    Args:
        tracking_uri: the store.
        run_id: the parent's id.
        kind: a ``KIND_*`` value of :mod:`ms2l_ray.tracking.tags`.
        status: an MLflow run status (``FINISHED`` …), or None for any.

    Returns:
        The matching child runs, earliest start first.
    """
    return [r for r in children(tracking_uri, run_id) if r.data.tags.get(tag.KIND) == kind
            and (status is None or r.info.status == status)]


def ablation_runs(tracking_uri: str, parent_run_id: str, experiment_id: str | None = None) -> list[Any]:
    """Every run under an ablation — cell-seed runs and their jobs, two levels down — in MLflow's order.

    Why by tag rather than by nesting: one search finds both levels, which is what the table (cell-seed
    runs with their jobs' metrics), a resume (runs a dead driver left RUNNING) and the time split need.

    Args:
        tracking_uri: the store.
        parent_run_id: the ablation's parent run.
        experiment_id: its experiment, when the caller has the run already.

    Returns:
        The runs tagged :data:`~ms2l_ray.tracking.tags.ABLATION_RUN_ID` = ``parent_run_id``.
    """
    exp = experiment_id if experiment_id is not None else get_run(tracking_uri, parent_run_id).info.experiment_id
    return search_all(tracking_uri, [exp], tag_filter(tag.ABLATION_RUN_ID, parent_run_id))


def top_level_runs(tracking_uri: str, experiment_id: str) -> list[Any]:
    """The runs of an experiment that have no parent: what ``ms2l report <experiment>`` chooses from.

    Args:
        tracking_uri: the store.
        experiment_id: the experiment's id.

    Returns:
        The runs without :data:`~ms2l_ray.tracking.tags.PARENT_RUN`, in MLflow's order.
    """
    return [r for r in search_all(tracking_uri, [experiment_id], "") if tag.PARENT_RUN not in r.data.tags]


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[Any]:
    """Every logged value of one metric of a run (``mlflow.entities.Metric``: step, value, timestamp).

    Args:
        tracking_uri: the store.
        run_id: the run's id.
        key: the metric's name.

    Returns:
        The values in MLflow's order; [] for a metric the run never logged.
    """
    c = client(tracking_uri)
    return list(retrying(functools.partial(c.get_metric_history, run_id, key)))


def logged_model_location(tracking_uri: str | None, model_id: str) -> str:
    """The artifact location of a logged model (``models:/<model id>``), looked up in this store.

    Why here: MLflow 3.17 resolves ``models:/`` through a client on the process-wide default tracking URI,
    whatever URI the download is given, so another store's model would be "not found".

    Args:
        tracking_uri: the store that holds the model (None: MLflow's process-wide default).
        model_id: the logged model's id (``m-…``).

    Returns:
        The model's artifact location, a URI ``mlflow.artifacts.download_artifacts`` accepts.
    """
    return str(client(tracking_uri).get_logged_model(model_id).artifact_location)
