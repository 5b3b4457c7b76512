"""One MLflow run, logged through ``MlflowClient`` (process-safe, no fluent global state).

The driver creates every run (so the tree — parent, pretrain, evaluations — exists before training),
and passes ``(tracking_uri, run_id)`` to the rank-0 Train worker, which logs per-epoch metrics live.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ms2l_ray import __version__
from ms2l_ray.redact import REDACTED, is_secret_key, redact_text, redact_uri
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.store import default_artifact_location, retrying

MAX_PARAM_LEN = 6000
# MLflow 3's UI opens an experiment without this tag in its GenAI mode (traces overview, an empty "Traces"
# chart); with it, the runs table and the compare view a training study needs.
EXPERIMENT_KIND = "custom_model_development"
INTERRUPTS = (KeyboardInterrupt, SystemExit)  # Ctrl-C; Ray Train's SIGINT handler exits via SystemExit


def mask_secrets(params: dict[str, Any]) -> dict[str, Any]:
    """Values of credential-looking keys → ``***``; credentials inside other values (URIs) redacted.

    Why both: a key like ``db_token`` says its value is secret, but a dataset given as
    ``s3://key:secret@bucket/x`` hides one in an innocent key (``data.dataset``). Keys are judged by
    :func:`ms2l_ray.redact.is_secret_key`, the same rule the cluster-recipe checker uses.
    """
    return {k: (REDACTED if is_secret_key(k) and v not in (None, "")
                else redact_text(v) if isinstance(v, str) else v) for k, v in params.items()}


def _safe_tags(tags: dict[str, Any]) -> dict[str, str]:
    """Tags as strings, with the same masking as params (an ``encoder`` tag may be a credentialed URI)."""
    return {k: str(v) for k, v in mask_secrets({k: str(v) for k, v in tags.items()}).items()}


def code_version() -> dict[str, str]:
    """The package version and, when run from a git checkout, its commit (and whether it was dirty)."""
    root = Path(__file__).resolve().parents[2]
    info = {tag.MS2L_VERSION: __version__, tag.GIT_COMMIT: tag.GIT_UNKNOWN}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        info[tag.GIT_COMMIT] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


@dataclass(frozen=True)
class RunRef:
    """What a worker needs to log into an existing run (plain strings: travels to Ray workers)."""

    tracking_uri: str
    run_id: str


def client(tracking_uri: str | None) -> Any:
    """An ``MlflowClient`` on ``tracking_uri``: the one place a client is built (cheap: MLflow caches stores).

    Why one place: the rest of the package goes through :mod:`ms2l_ray.tracking.query` (reads),
    :class:`RunLogger` (writes) and :mod:`ms2l_ray.tracking.artifacts`, so retries, paging and the tag
    schema are applied the same way everywhere. It is also where a credentialed URI (``https://user:pw@host``) is
    kept off stdout: MLflow prints "View run … at: <tracking URI>/#/…" when a run ends on a server, credentials
    included, in every process that ends one (Ray workers too), so such a client switches that printing off
    (``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``) in its process.
    """
    from mlflow.tracking import MlflowClient

    if tracking_uri and redact_uri(tracking_uri) != tracking_uri:  # userinfo or a secret query parameter
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(tracking_uri: str, name: str) -> str:
    """Get or create the experiment (artifacts under ``mlartifacts/`` for the embedded store)."""
    c = client(tracking_uri)

    def get_or_create() -> str:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(tag.EXPERIMENT_KIND_TAG) is None:  # one made by an older version or by hand
                c.set_experiment_tag(exp.experiment_id, tag.EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return str(exp.experiment_id)
        try:
            return str(c.create_experiment(name, artifact_location=default_artifact_location(tracking_uri),
                                           tags={tag.EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}))
        except Exception:  # noqa: BLE001 - another process created it first
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    return retrying(get_or_create)


class RunLogger:
    """Logging into one run with retries; values are sanitised for MLflow's limits."""

    def __init__(self, ref: RunRef) -> None:
        self.ref = ref
        self._c = client(ref.tracking_uri)
        self.ended = False  # set by end(): a failed pipeline marks only the runs it had not finished

    @property
    def run_id(self) -> str:
        """The MLflow id of the run this logger writes to."""
        return self.ref.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log the numeric ``metrics`` at ``step`` in batches within MLflow's per-request limit; others are dropped."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
        for i in range(0, len(items), 500):
            self._batch(metrics=items[i:i + 500])

    def log_params(self, params: dict[str, Any]) -> None:
        """Log ``params`` with secrets masked and values cut to MLflow's length limit, in batches."""
        from mlflow.entities import Param

        safe = mask_secrets({k: v if v is None or isinstance(v, (bool, int, float)) else str(v)
                             for k, v in params.items()})
        items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in safe.items()]
        for i in range(0, len(items), 90):
            self._batch(params=items[i:i + 90])

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set ``tags`` (values as strings, made safe for MLflow) in one batch."""
        from mlflow.entities import RunTag

        self._batch(tags=[RunTag(k, str(v)) for k, v in _safe_tags(tags).items()])

    def _batch(self, **kw: Any) -> None:
        retrying(lambda: self._c.log_batch(self.run_id, **kw))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload the file ``path`` into the run's artifacts (under ``artifact_path`` when given)."""
        retrying(lambda: self._c.log_artifact(self.run_id, str(path), artifact_path))

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload the folder ``path``'s files into the run's artifacts (under ``artifact_path`` when given)."""
        retrying(lambda: self._c.log_artifacts(self.run_id, str(path), artifact_path))

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file``."""
        retrying(lambda: self._c.log_text(self.run_id, text, artifact_file))

    def log_dict(self, d: dict[str, Any], artifact_file: str) -> None:
        """Store ``d`` as the JSON or YAML artifact ``artifact_file`` (by its extension)."""
        retrying(lambda: self._c.log_dict(self.run_id, d, artifact_file))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Store a matplotlib ``figure`` as the image artifact ``artifact_file``."""
        retrying(lambda: self._c.log_figure(self.run_id, figure, artifact_file))

    def log_dataset(self, dataset_input: Any) -> None:
        """One ``mlflow.entities.DatasetInput`` (:func:`ms2l_ray.tracking.datasets.dataset_input`) as a run input."""
        retrying(lambda: self._c.log_inputs(self.run_id, datasets=[dataset_input]))

    def reopen(self) -> None:
        """Mark a finished/failed run as running again (a resumed job continues its own run)."""
        retrying(lambda: self._c.update_run(self.run_id, status="RUNNING"))
        self.ended = False

    def resume(self) -> None:
        """Tag the run :data:`~ms2l_ray.tracking.tags.RESUMED` and reopen it: a ``--resume`` continues its run.

        Why the tag: the run's metrics then hold two attempts' epochs; the tag says why.
        """
        self.set_tags({tag.RESUMED: tag.RESUMED_VALUE})
        self.reopen()

    def end(self, status: str = "FINISHED") -> None:
        """Terminate the run with ``status`` (FINISHED, FAILED, KILLED) and remember that it ended."""
        retrying(lambda: self._c.set_terminated(self.run_id, status=status))
        self.ended = True


def start_run(tracking_uri: str, experiment: str, run_name: str, parent: RunLogger | None = None,
              tags: dict[str, Any] | None = None) -> RunLogger:
    """Create a run (nested under ``parent`` when given) tagged with the code version."""
    exp_id = experiment_id(tracking_uri, experiment)
    all_tags = {**code_version(), **(tags or {})}
    if parent is not None:
        all_tags[tag.PARENT_RUN] = parent.run_id
    c = client(tracking_uri)
    safe = _safe_tags(all_tags)
    run = retrying(lambda: c.create_run(exp_id, run_name=run_name, tags=safe))
    return RunLogger(RunRef(tracking_uri, run.info.run_id))


@contextmanager
def tracked_run(run: RunLogger | None, *, catch: type[BaseException] = BaseException, failed: str = "FAILED",
                interrupted: str | None = None,
                failure_tags: dict[str, str] | None = None) -> Iterator[RunLogger | None]:
    """End ``run`` FINISHED when the block completes, or with a failure status when it raises (re-raised).

    Why: every command that owns a run must close it whatever happens — a run left RUNNING reads as still
    training in the UI and blocks nothing from rerunning — and each did so with its own try/except. A run
    the block already ended (its own end, e.g. FAILED for an ablation with failed cells) is left as it is.

    Args:
        run: the run, or None (tracking off): the block runs and nothing is logged.
        catch: the exceptions that end the run; others leave it RUNNING for another closer (a search trial
            catches ``Exception`` only: Tune's driver closes the runs of trials it stops).
        failed: the status for a caught exception (``FAILED``; ``KILLED`` for a search parent, which
            ``--resume`` reopens).
        interrupted: the status for Ctrl-C (``KeyboardInterrupt``/``SystemExit``), when it differs from
            ``failed``.
        failure_tags: tags set before the failure status (a trial's ``outcome=failed``).

    Yields:
        ``run`` itself.
    """
    if run is None:
        yield None
        return
    try:
        yield run
    except catch as exc:
        if not run.ended:
            if failure_tags:
                run.set_tags(failure_tags)
            run.end(interrupted if interrupted is not None and isinstance(exc, INTERRUPTS) else failed)
        raise
    if not run.ended:
        run.end("FINISHED")
