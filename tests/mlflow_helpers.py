"""MLflow look-ups shared by the tests that assert on real run trees."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sqlite_uri_in(folder: Path, name: str = "mlflow.db") -> str:
    """The tracking URI of an MLflow SQLite store ``folder/name`` (the ``sqlite_uri`` fixture's, for any folder)."""
    return f"sqlite:///{folder / name}"


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def children(uri: str, parent_id: str) -> list[Any]:
    """Direct child runs of ``parent_id`` (in the parent's experiment)."""
    c = client(uri)
    exp = c.get_run(parent_id).info.experiment_id
    return list(c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'"))


def artifact_paths(uri: str, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact path of a run, recursively."""
    out: set[str] = set()
    for f in client(uri).list_artifacts(run_id, path):
        out.add(f.path)
        if f.is_dir:
            out |= artifact_paths(uri, run_id, f.path)
    return out
