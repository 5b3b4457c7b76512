"""Where runs go, checked before any compute is spent, and writes that survive concurrent writers.

Embedded default (no URI given): a SQLite store ``mlflow.db`` plus an ``mlartifacts/`` folder in the
working directory, both absolute so Ray workers with another working directory write to the same
place; ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows them. With ``MLFLOW_TRACKING_URI``
or ``--tracking-uri`` runs go to a server, whose health endpoint is probed first.

Many Tune trials share one SQLite file; SQLite serialises writers and answers "database is locked"
when a writer waits too long, so every write goes through :func:`retrying`, which backs off and
retries instead of losing the run.
"""

from __future__ import annotations

import base64
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ms2l_ray.config import ConfigError
from ms2l_ray.redact import REDACTED, is_redacted, redact_text, redact_uri, split_credentials

__all__ = ["DEFAULT_ARTIFACTS", "DEFAULT_DB", "REDACTED", "TrackingError", "check_reachable",
           "default_artifact_location", "health_request", "redact_uri", "restore_uri", "resolve_tracking_uri",
           "retrying"]  # REDACTED and redact_uri live in ms2l_ray.redact; re-exported for the callers here

T = TypeVar("T")

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


class TrackingError(RuntimeError):
    """The tracking store cannot be used (unreachable server, bad URI)."""


def resolve_tracking_uri(uri: str | None = None, workdir: str | Path | None = None) -> str:
    """``uri`` → ``$MLFLOW_TRACKING_URI`` → ``sqlite:///<workdir>/mlflow.db``, a local store always absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if uri:
        return absolute_store_uri(uri, workdir)
    base = Path(workdir or os.getcwd()).resolve()
    return f"sqlite:///{base / DEFAULT_DB}"


def absolute_store_uri(uri: str, workdir: str | Path | None = None) -> str:
    """A local store named relatively (``sqlite:///mlflow.db``, ``./mlruns``) made absolute; others as given.

    Why: rank 0 of every Ray Train job logs its epochs to the same URI from the worker's own working
    directory, so a relative store would be another, new store there (metrics lost, or a failed job).
    """
    if uri.startswith("sqlite:///"):
        rest = uri[len("sqlite:///"):]
        path, sep, query = rest.partition("?")
        if path and not path.startswith("/") and path != ":memory:":
            return f"sqlite:///{Path(workdir or os.getcwd()).absolute() / path}{sep}{query}"
        return uri
    if "://" not in uri and not uri.startswith(("file:", "databricks")) and not Path(uri).is_absolute():
        return str(Path(workdir or os.getcwd()).absolute() / uri)
    return uri


def default_artifact_location(tracking_uri: str) -> str | None:
    """For a local SQLite store: an absolute ``mlartifacts/`` beside the database; servers choose their own."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / DEFAULT_ARTIFACTS).resolve().as_uri()
    return None


def restore_uri(recorded: str, given: str | None, what: str,
                option: str = "--tracking-uri (or MLFLOW_TRACKING_URI)") -> str:
    """The tracking URI a resume record names, complete again.

    Records (job, search, ablation) keep :func:`redact_uri`'s form. One that had no credentials is returned as
    recorded, so a resumed run stays in the store it started in; one whose credentials were left out needs
    ``given`` (``option``: ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``; a search's ``--study-storage``) to be that
    same URI with them.
    """
    if not is_redacted(recorded):
        return recorded
    if given is None or redact_uri(given) != recorded:
        raise ConfigError(f"{what} uses {recorded} (credentials not recorded): pass that {option} with its "
                          f"credentials to resume it")
    return given


AUTH_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"  # a cheap read that an auth app guards


def health_request(tracking_uri: str, endpoint: str = "/health") -> urllib.request.Request:
    """The ``GET <server><endpoint>`` request for an http(s) tracking URI, authenticated the way MLflow would be.

    ``/health`` says the server is up; MLflow's basic-auth app leaves it open, so :func:`check_reachable` then reads
    :data:`AUTH_PROBE`, which it guards, to find wrong credentials before any compute is spent.

    ``urllib`` reads ``user:pw@host`` as a host name, so the userinfo is taken out of the URL and sent as
    HTTP basic auth; without userinfo, ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic) or
    ``MLFLOW_TRACKING_TOKEN`` (bearer) are used, as the MLflow client itself does.
    """
    url, user, password = split_credentials(tracking_uri)
    parts = urllib.parse.urlsplit(url)
    path, _, query = endpoint.partition("?")
    target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))
    request = urllib.request.Request(target, method="GET")
    if user is None and os.environ.get("MLFLOW_TRACKING_USERNAME"):
        user, password = os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    return request


def _probe(tracking_uri: str, endpoint: str, shown: str, timeout_s: float, strict: bool) -> None:
    """GET ``endpoint``; a refusal of the credentials always fails, other answers only when ``strict``.

    Not strict for :data:`AUTH_PROBE`: a proxy in front of MLflow may route only what the client needs, and the
    health check already showed the server is there.
    """
    label = endpoint.partition("?")[0]
    try:
        with urllib.request.urlopen(health_request(tracking_uri, endpoint), timeout=timeout_s) as resp:  # noqa: S310
            if strict and resp.status != 200:
                raise TrackingError(f"MLflow tracking server {shown} answered {resp.status} on {label}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise TrackingError(f"MLflow tracking server {shown} answered {exc.code} on {label} (check the credentials "
                                f"in the URI or MLFLOW_TRACKING_USERNAME/PASSWORD)") from None
        if strict:
            raise TrackingError(f"MLflow tracking server {shown} answered {exc.code} on {label}") from None
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        if strict:
            raise TrackingError(f"MLflow tracking server {shown} is unreachable ({redact_text(str(exc))}); start it "
                                f"or pass another --tracking-uri / MLFLOW_TRACKING_URI") from None


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with a clear message when a tracking server does not answer (before any training).

    Every message names the URI in :func:`redact_uri`'s form: a credential never reaches stderr or a log.
    """
    shown = redact_uri(tracking_uri) or ""
    if tracking_uri.startswith(("http://", "https://")):
        _probe(tracking_uri, "/health", shown, timeout_s, strict=True)
        _probe(tracking_uri, AUTH_PROBE, shown, timeout_s, strict=False)  # credentials, where an auth app checks them
    elif tracking_uri.startswith("sqlite:///"):
        parent = Path(tracking_uri[len("sqlite:///"):]).parent
        if not parent.is_dir():
            raise TrackingError(f"tracking URI {shown}: directory {parent} does not exist")
    elif tracking_uri.startswith(("file:", "/")) or "://" not in tracking_uri:
        return
    elif not tracking_uri.startswith(("databricks", "postgresql", "mysql", "mssql")):
        raise TrackingError(f"unsupported tracking URI {shown!r}")


def _lost_dataset_race(text: str) -> bool:
    """Two processes logged the same dataset input at once, and this one lost the insert of its row.

    MLflow's SQL store looks the dataset up and inserts it when missing, in one transaction, so two processes of
    a search or grid that start runs on the same data at the same moment can both miss it; the second insert then
    violates the ``datasets`` unique key. Retried, the lookup finds the row and only the run's input is added.
    """
    return "datasets" in text and ("unique constraint failed" in text or "duplicate key value" in text)


def _transient(exc: BaseException) -> bool:
    text = str(exc).lower()
    return _lost_dataset_race(text) or any(
        s in text for s in ("database is locked", "database table is locked", "unable to open database",
                            "connection reset", "connection refused", "temporarily unavailable",
                            "max retries exceeded", "remote end closed", "disk i/o error"))


def retrying(fn: Callable[[], T], attempts: int = 12, base_delay_s: float = 0.1) -> T:
    """Call ``fn`` and retry transient store errors with jittered exponential backoff (≈ 40 s total)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by _transient, re-raised otherwise
            if attempt == attempts - 1 or not _transient(exc):
                raise
            time.sleep(min(5.0, base_delay_s * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover
