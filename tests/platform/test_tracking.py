"""MLflow store handling: URI resolution, secret masking, many concurrent writers on one SQLite file, and an
unreachable server refused before any compute."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow_helpers import client, sqlite_uri_in
from net_helpers import free_port

from ms2l_ray.cli.main import main
from ms2l_ray.config import ConfigError
from ms2l_ray.tracking.runs import RunLogger, RunRef, mask_secrets, start_run
from ms2l_ray.tracking.store import (
    TrackingError,
    check_reachable,
    redact_uri,
    resolve_tracking_uri,
    restore_uri,
    retrying,
)


def test_default_uri_is_an_absolute_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(workdir=tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_bad_tracking_uris_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match="does not exist"):
        check_reachable(f"sqlite:///{tmp_path / 'nope' / 'm.db'}")
    with pytest.raises(TrackingError, match="unsupported"):
        check_reachable("gopher://x")


def test_secrets_are_masked() -> None:
    got = mask_secrets({"aws_secret_access_key": "abc", "MLFLOW_TRACKING_PASSWORD": "p", "db_token": "t",
                        "tasks.temperature": 0.9, "api_key": ""})
    assert got == {"aws_secret_access_key": "***", "MLFLOW_TRACKING_PASSWORD": "***", "db_token": "***",
                   "tasks.temperature": 0.9, "api_key": ""}


def test_credentials_are_redacted_from_uris() -> None:
    assert redact_uri("https://alice:s3cret@mlflow.example.com/x") == "https://***@mlflow.example.com/x"
    assert redact_uri("postgresql://u:p@db:5432/mlflow") == "postgresql://***@db:5432/mlflow"
    assert redact_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
    assert redact_uri(None) is None


def test_restore_uri_needs_the_credentials_a_record_left_out() -> None:
    assert restore_uri("sqlite:////x/m.db", "http://other:5000", "job j") == "sqlite:////x/m.db"  # as recorded
    recorded = redact_uri("postgresql://user:secret@db/mlflow")
    assert recorded is not None
    assert restore_uri(recorded, "postgresql://user:secret@db/mlflow", "job j") == "postgresql://user:secret@db/mlflow"
    for given in (None, "postgresql://user:secret@elsewhere/mlflow"):
        with pytest.raises(ConfigError, match="job j uses postgresql://\\*\\*\\*@db/mlflow"):
            restore_uri(recorded, given, "job j")


def test_retrying_retries_only_transient_errors() -> None:
    calls = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return 7

    assert retrying(flaky, base_delay_s=0.001) == 7 and len(calls) == 3
    with pytest.raises(KeyError):
        retrying(lambda: {}["x"], base_delay_s=0.001)


def test_a_dataset_input_lost_to_a_concurrent_insert_is_retried_and_logged(tmp_path: Path) -> None:
    """Two trials starting on the same data at once: the loser of MLflow's dataset insert retries (seen in the
    suite: ``UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest``)."""
    from mlflow.exceptions import MlflowException

    from ms2l_ray.config import load_config
    from ms2l_ray.tracking.datasets import dataset_input

    uri = sqlite_uri_in(tmp_path)
    first, second = start_run(uri, "race", "a"), start_run(uri, "race", "b")
    entry = dataset_input(load_config("smoke"))
    first.log_dataset(entry)
    real = second._c.log_inputs
    lost = {"n": 0}

    def lose_once(*args: Any, **kwargs: Any) -> Any:
        if not lost["n"]:
            lost["n"] += 1
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                                  "datasets.name, datasets.digest")
        return real(*args, **kwargs)

    second._c.log_inputs = lose_once  # type: ignore[method-assign]
    RunLogger.log_dataset(second, entry)
    c = client(uri)
    for run in (first, second):
        [inp] = c.get_run(run.run_id).inputs.dataset_inputs
        assert (inp.dataset.name, inp.dataset.digest) == (entry.dataset.name, entry.dataset.digest)
    assert lost["n"] == 1
    with pytest.raises(MlflowException, match="UNIQUE constraint failed: runs"):  # another table: not retried
        retrying(lambda: (_ for _ in ()).throw(MlflowException("UNIQUE constraint failed: runs.run_uuid")),
                 base_delay_s=0.001)


def _writer(uri: str, worker: int, runs: int, steps: int) -> None:
    parent = None
    for r in range(runs):
        run = start_run(uri, "contention", f"w{worker}-r{r}", parent, {"worker": worker, "index": r})
        run.log_params({"a": worker, "b": r})
        for step in range(steps):
            run.log_metrics({"loss": float(step), "acc": float(worker)}, step=step)
        run.end()


def test_many_concurrent_writers_lose_no_runs(tmp_path: Path, sqlite_uri: str) -> None:
    start_run(sqlite_uri, "contention", "warmup").end()  # create the schema once
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(sqlite_uri, w, 3, 6)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 4
    c = client(sqlite_uri)
    exp = c.get_experiment_by_name("contention").experiment_id
    runs = c.search_runs([exp], "tags.worker != ''", max_results=1000)
    assert len(runs) == 12
    assert all(r.info.status == "FINISHED" for r in runs)
    for r in runs[:5]:
        assert len(c.get_metric_history(r.info.run_id, "loss")) == 6


def test_run_logger_reopen_and_fail(tmp_path: Path, sqlite_uri: str) -> None:
    run = start_run(sqlite_uri, "e", "r")
    run.end("FAILED")
    again = RunLogger(RunRef(sqlite_uri, run.run_id))
    again.reopen()
    assert client(sqlite_uri).get_run(run.run_id).info.status == "RUNNING"


def test_a_logged_encoder_loads_from_its_own_store_whatever_the_default_uri(tmp_path: Path, sqlite_uri: str) -> None:
    """MLflow resolves ``models:/<id>`` on the process-wide default store; CI failed on it (issue 15)."""
    import mlflow
    import torch

    from ms2l_ray.config import load_config
    from ms2l_ray.model.artifact import save_pretrained
    from ms2l_ray.model.ms2l import build_ms2l
    from ms2l_ray.tracking.artifacts import load_encoder_embedding, log_encoder_model

    cfg = load_config("smoke", None, ["model.hidden_size=8"])
    torch.manual_seed(0)
    model = build_ms2l(cfg.model, cfg.tasks, 6)
    save_pretrained(tmp_path / "enc", model, cfg, 6)
    run = start_run(sqlite_uri, "e", "pretrain")
    model_id = log_encoder_model(run, tmp_path / "enc")
    mlflow.set_tracking_uri(sqlite_uri_in(tmp_path, "other.db"))  # a different default store, as in CI
    try:
        loaded = load_encoder_embedding(f"models:/{model_id}", sqlite_uri)
    finally:
        mlflow.set_tracking_uri("")
    x = torch.randn(2, 5, 6)
    lengths = torch.tensor([5, 3])
    expected = model.encoder.eval()
    from ms2l_ray.model.embedding import EncoderEmbedding

    torch.testing.assert_close(loaded(x, lengths), EncoderEmbedding(expected).eval()(x, lengths))


def test_unreachable_tracking_server_fails_before_any_compute(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The store is probed before Ray starts or a folder is made: nothing is spent on a run that could not be logged."""
    port = free_port()
    t0 = time.time()
    code = main(["pretrain", "--preset", "smoke", "--tracking-uri", f"http://127.0.0.1:{port}",
                 "--out", str(tmp_path / "enc"), "--storage-path", str(tmp_path / "ray")])
    assert (code, capsys.readouterr().err) == (
        2, f"ms2l pretrain: error: MLflow tracking server http://127.0.0.1:{port} is unreachable (<urlopen error "
           f"[Errno 111] Connection refused>); start it or pass another --tracking-uri / MLFLOW_TRACKING_URI\n")
    assert time.time() - t0 < 30
    assert not (tmp_path / "ray").exists() and not (tmp_path / "enc").exists()
