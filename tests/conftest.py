"""Shared fixtures: a real local Ray instance (2 CPUs) and a real MLflow SQLite store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_helpers import sqlite_uri_in

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One local Ray instance per test module, started as the CLI starts it (loopback, token auth), shut down
    afterwards."""
    import ray

    from ms2l_ray.jobs.cluster import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    """An MLflow SQLite store in the test's own folder (created on first use)."""
    return sqlite_uri_in(tmp_path)
