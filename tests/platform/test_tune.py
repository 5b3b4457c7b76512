"""Ray Tune + Optuna search, end to end: real local Ray (2 CPUs), real TorchTrainer jobs, real MLflow SQLite store.

The smoke space (search_spaces/smoke.yaml) is built so that every way a trial can end happens, deterministically:
two trials finish, one is cut by ASHA at the first rung, one is rejected (all task weights 0). Assertions read
MLflow through its own client and Optuna through its own study.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow_helpers import children, client
from paths import SEARCH_SPACES

from ms2l_ray.cli.main import main
from ms2l_ray.jobs.tracked import Tracking
from ms2l_ray.studies.search.confirm import ConfirmSpec
from ms2l_ray.studies.search.space import load_space
from ms2l_ray.studies.search.tuner import RECORD, STUDY_DB, run_search

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]

SMOKE = SEARCH_SPACES / "smoke.yaml"


def artifacts(uri: str, run_id: str) -> set[str]:
    return {f.path for f in client(uri).list_artifacts(run_id)}


def test_search_with_asha_builds_the_mlflow_tree_and_keeps_the_study(tmp_path: Path, sqlite_uri: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    space = load_space(SMOKE)
    result = run_search(space, name="smoke-search", storage_path=str(tmp_path / "ray"),
                        tracking=Tracking(sqlite_uri, "tune-test"), verbose=0, confirm=ConfirmSpec(top=1, seeds=2))

    status = Counter(r.status for r in result.rows)
    assert len(result.rows) == 4 and status == {"finished": 2, "early_stopped": 1, "rejected": 1}, result.rows
    cut = next(r for r in result.rows if r.status == "early_stopped")
    assert cut.epoch is not None and cut.epoch < space.scheduler.max_t  # ASHA stopped it before max_t
    assert cut.params["evaluation.knn_k"] == 200 and cut.objective is None
    assert list(cut.rungs) == [cut.epoch]  # the proxy history Tune kept, read back for the fidelity figures
    finished = [r for r in result.rows if r.status == "finished"]
    best = max(finished, key=lambda r: r.objective or 0.0)
    assert result.best is not None and result.best.trial_id == best.trial_id
    assert result.best_config is not None
    assert result.best_config["pretrain"]["lr"] == pytest.approx(best.params["pretrain.lr"])
    assert result.best_config["knn_every"] == 1 and result.best_config["data"]["builtin_sequences"] == 200

    # MLflow: parent → 4 trial runs → pretrain + linear evaluation for the trials that were not cut
    c = client(sqlite_uri)
    assert result.parent_run_id is not None
    parent = c.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["kind"] == "search" and parent.data.tags["search"] == "smoke-search"
    assert parent.data.metrics["best_objective"] == pytest.approx(best.objective)
    assert parent.data.metrics["num_early_stopped"] == 1 and parent.data.tags["best_trial_id"] == best.trial_id
    assert {"trials.csv", "trials.md", "best_config.yaml", "importance.csv", "importance.md", "fidelity.md",
            "confirm.md", "search_space.yaml", "ms2l_search.json"} <= artifacts(sqlite_uri, result.parent_run_id)
    # proxy fidelity at the rungs 1, 2, 4: two finished trials are too few for a correlation, and it says so
    assert [(r.epoch, r.n) for r in result.fidelity.rungs] == [(1, 2), (2, 2), (4, 2)]
    assert parent.data.metrics["proxy_n_rung1"] == 2 and "proxy_spearman_rung1" not in parent.data.metrics
    assert all(sorted(r.rungs) == [1, 2, 3, 4] for r in finished)

    # confirmation: the best configuration rerun with seeds 1 and 2, nested under the parent and tagged confirm=1
    conf = result.confirmation
    assert conf is not None and [c.trial_id for c in conf.configs] == [best.trial_id]
    assert conf.configs[0].seeds == [1, 2] and len(conf.configs[0].objectives) == 2
    assert parent.data.metrics["confirm_rank1_mean"] == pytest.approx(conf.configs[0].mean)
    everything = children(sqlite_uri, result.parent_run_id)
    confirm_runs = [t for t in everything if t.data.tags.get("confirm") == "1"]
    assert sorted(t.data.params["seed"] for t in confirm_runs) == ["1", "2"]
    for t in confirm_runs:
        assert t.data.tags["confirm_of"] == best.trial_id and t.data.tags["kind"] == "trial"
        assert t.info.status == "FINISHED" and t.data.tags["outcome"] == "finished"
        assert t.data.params["pretrain.lr"] == str(best.params["pretrain.lr"])
        assert {j.data.tags["kind"] for j in children(sqlite_uri, t.info.run_id)} == {"pretrain", "evaluate"}
    trials = [t for t in everything if t.data.tags.get("confirm") != "1"]
    assert len(trials) == 4 and all(t.data.tags["kind"] == "trial" for t in trials)
    assert sorted(t.data.tags["trial_id"] for t in trials) == sorted(r.trial_id for r in result.rows)
    for t in trials:
        row = next(r for r in result.rows if r.trial_id == t.data.tags["trial_id"])
        assert t.info.status == "FINISHED" and t.data.tags["outcome"] == row.status
        assert t.data.params["pretrain.lr"] == str(row.params["pretrain.lr"])
        jobs = {j.data.tags["kind"]: j for j in children(sqlite_uri, t.info.run_id)}
        if row.status == "finished":
            assert set(jobs) == {"pretrain", "evaluate"}
            assert all(j.info.status == "FINISHED" for j in jobs.values())
            assert jobs["evaluate"].data.tags["strategy"] == "linear"
            assert t.data.metrics["val_top1"] == pytest.approx(row.objective)
            assert "test_top1" in t.data.metrics  # reported for information, never the objective
            steps = [m.step for m in c.get_metric_history(jobs["pretrain"].info.run_id, "val_knn_top1")]
            assert steps == [1, 2, 3, 4]  # the proxy at every rung (knn_every = grace_period)
        elif row.status == "early_stopped":
            assert set(jobs) == {"pretrain"} and jobs["pretrain"].info.status == "KILLED"
            assert t.data.metrics["stopped_at_epoch"] < space.scheduler.max_t
        else:
            assert jobs == {} and "at least one task weight" in t.data.tags["rejected_reason"]

    # one Ray Train run per trial (issue 12, item 7): pretraining and evaluation share `<trial_id>-pretrain`;
    # the rejected trial trained nothing
    trained = sorted(f"{t.data.tags['trial_id']}-pretrain" for t in everything if "rejected_reason" not in t.data.tags)
    assert len(trained) == 5  # 3 search trials (2 evaluated, 1 cut) + 2 confirmation reruns
    assert sorted(d.name for d in (tmp_path / "ray" / "smoke-search" / "train").iterdir()) == trained

    # Optuna learned from final objectives only: evaluated trials COMPLETE, the cut and the rejected PRUNED
    db = tmp_path / "ray" / "smoke-search" / STUDY_DB
    study = optuna.load_study(study_name="smoke-search", storage=f"sqlite:///{db}")
    states = Counter(t.state.name for t in study.trials)
    assert states == {"COMPLETE": 2, "PRUNED": 2}
    complete = sorted(float(t.value) for t in study.trials if t.state.name == "COMPLETE" and t.value is not None)
    assert complete == sorted(float(r.objective) for r in finished if r.objective is not None)
    if len({r.objective for r in finished}) > 1:  # two evaluated trials with different objectives: importance
        assert result.importance.values and abs(sum(result.importance.values.values()) - 1.0) < 1e-6
        assert "importance.png" in artifacts(sqlite_uri, result.parent_run_id)
    else:
        assert "same objective" in (result.importance.reason or "")
    saved = yaml.safe_load((tmp_path / "ray" / "smoke-search" / "summary" / "best_config.yaml").read_text())
    assert saved == result.best_config
    # the console: one result line per trial as it ends (ms2l_ray.studies.search.progress)
    out = capsys.readouterr().out
    for r in result.rows:
        what = {"finished": f"val_top1={r.objective or 0.0:.2f}", "early_stopped": f"stopped early at epoch {r.epoch} ",
                "rejected": "rejected (config outside the space's constraints)"}[r.status]
        assert re.search(rf"^\[tune\] [1-4]/4 trial {r.trial_id}: {re.escape(what)}", out, re.M), (r, out[-3000:])
    _assert_cpus_released()


def _assert_cpus_released() -> None:
    """Trials cut by ASHA end their actor mid-training: their Train workers' CPUs must come back."""
    import ray

    deadline = time.time() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2, ray.available_resources()


def _finished_trial_runs(uri: str, experiment: str) -> list[Any]:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [r for r in c.search_runs([exp.experiment_id], "tags.kind = 'trial'") if r.info.status == "FINISHED"]


def test_killed_search_resumes_without_duplicating_trials(tmp_path: Path, sqlite_uri: str) -> None:
    """Killed with SIGKILL mid-search, resumed from a ``file://`` storage URI (the path a bucket URI takes)."""
    import ray

    storage, name, experiment = tmp_path / "ray", "resumed", "tune-resume"
    uri = storage.as_uri()  # records, Tune state and Train checkpoints through pyarrow.fs, as for s3:// or gs://
    # one trial at a time: the kill lands after trial 1 finished and before trial 2 could
    args = ["tune", str(SMOKE), "--name", name, "--num-samples", "2", "--max-concurrent", "1",
            "--storage-path", uri, "--tracking-uri", sqlite_uri, "--experiment", experiment]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    client(sqlite_uri).search_experiments()  # the store's tables exist before two processes open it at once
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ms2l_ray.cli", *args, "--address",
                             ray.get_runtime_context().gcs_address], env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not _finished_trial_runs(sqlite_uri, experiment):
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(1)
        first = _finished_trial_runs(sqlite_uri, experiment)
        assert first, "no trial finished before the deadline"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the driver dies mid-search; its trials with its Ray job
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode != 0
    record = json.loads((storage / name / RECORD).read_text())
    parent_id = record["setup"]["parent_run_id"]
    _assert_cpus_released()  # the dead job's trials took their Train workers with them

    out = tmp_path / "resumed.json"
    assert main(["tune", str(SMOKE), "--resume", "--name", name, "--storage-path", uri, "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["num_trials"] == 2 and summary["num_finished"] == 2 and summary["parent_run_id"] == parent_id
    trials = children(sqlite_uri, parent_id)
    ids = Counter(t.data.tags["trial_id"] for t in trials if t.info.status == "FINISHED")
    assert sum(ids.values()) == 2 and max(ids.values()) == 1, ids
    assert all(t.info.status in ("FINISHED", "KILLED") for t in trials)  # KILLED: orphans of the dead driver
    # the trial that finished before the kill was neither trained nor logged twice
    done_before = first[0]
    again = client(sqlite_uri).get_run(done_before.info.run_id)
    assert again.info.status == "FINISHED" and "resumed" not in again.data.tags
    assert len(children(sqlite_uri, done_before.info.run_id)) == 2
    parent = client(sqlite_uri).get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags.get("resumed") == "true"


class _UntilATrialFinished:
    """A budget clock that stands still until a trial run of ``experiment`` FINISHED, then jumps past any budget.

    Why: ending the budget at a chosen point of the search (one trial done, another mid-training) makes the test
    exact on any machine; the budget, its watch and Tune's graceful stop are the real ones.
    """

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment, self.now, self.polled = uri, experiment, 0.0, 0.0

    def __call__(self) -> float:
        if self.now == 0.0 and time.monotonic() - self.polled > 0.5:
            self.polled = time.monotonic()
            if _finished_trial_runs(self.uri, self.experiment):
                self.now = 1e9
        return self.now


def test_a_time_budget_stops_a_search_midway_and_keeps_every_finished_trial(
        tmp_path: Path, sqlite_uri: str, capfd: pytest.CaptureFixture[str]) -> None:
    from ms2l_ray.studies.budget import Budget

    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(num_samples=3, max_concurrent=2, scheduler={"type": "none"}, fidelity={"probe_every": 5},
               parameters={"pretrain.epochs": {"type": "categorical", "choices": [1, 400]}},
               points_to_evaluate=[{"pretrain.epochs": 1}, {"pretrain.epochs": 400}, {"pretrain.epochs": 400}])
    space_file = tmp_path / "budget.yaml"
    space_file.write_text(yaml.safe_dump(raw))
    experiment = "tune-budget"
    budget = Budget(60.0, "1m", clock=_UntilATrialFinished(sqlite_uri, experiment))
    study = f"sqlite:///{tmp_path / 'elsewhere' / 'studies.db'}"  # --study-storage: a database beside nothing
    (tmp_path / "elsewhere").mkdir()
    result = run_search(load_space(space_file), name="budgeted", storage_path=str(tmp_path / "ray"),
                        tracking=Tracking(sqlite_uri, experiment), verbose=0, budget=budget, study_storage=study)

    assert result.ended_by_budget and result.to_json()["ended_by"] == "time_budget"
    by_epochs: dict[int, list[str]] = {}
    for r in result.rows:
        by_epochs.setdefault(r.params["pretrain.epochs"], []).append(r.status)
    # the 1-epoch trial finished (kept even if Tune lost its last report); the first 400-epoch one was running;
    # the third never started, or had only just started, when the budget ran out
    assert by_epochs[1] == ["finished"]
    assert by_epochs[400][0] == "budget_stopped" and set(by_epochs[400][1:]) <= {"not_started", "budget_stopped"}
    assert result.counts["num_finished"] == 1 and result.best is not None
    c = client(sqlite_uri)
    parent = c.get_run(result.parent_run_id)  # type: ignore[arg-type]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ended_by"] == "time_budget" and parent.data.tags["time_budget"] == "1m"
    assert parent.data.metrics["num_finished"] == 1 and parent.data.metrics["num_budget_stopped"] >= 1
    runs = {r.data.tags["trial_id"]: r for r in children(sqlite_uri, result.parent_run_id)}  # type: ignore[arg-type]
    done = runs[result.best.trial_id]
    assert done.info.status == "FINISHED" and done.data.tags["outcome"] == "finished"
    assert done.data.metrics["val_top1"] == pytest.approx(result.best.objective)
    stopped = next(r for r in result.rows if r.status == "budget_stopped")
    assert runs[stopped.trial_id].info.status == "KILLED"
    assert runs[stopped.trial_id].data.tags["outcome"] == "budget_stopped"
    everything = c.search_runs([parent.info.experiment_id])
    assert not [r.info.run_name for r in everything if r.info.status == "RUNNING"]  # nothing left open
    # Optuna's study lives in the database the search was given (and recorded); it was asked for every Tune trial
    # (and maybe one more, suggested as the budget ran out) and completed none with anything but a final objective
    trials = optuna.load_study(study_name="budgeted", storage=study).trials
    assert len(trials) >= len(result.rows)
    assert {t.value for t in trials if t.state.name == "COMPLETE"} <= {result.best.objective}
    assert json.loads((tmp_path / "ray" / "budgeted" / RECORD).read_text())["study_url"] == study
    assert not (tmp_path / "ray" / "budgeted" / STUDY_DB).exists()
    out = capfd.readouterr().out
    assert "[tune] time budget 1m spent: stopping" in out
    assert f"[tune] trial {stopped.trial_id}: stopped by the time budget 1m" in out
    assert "[tune] the time budget 1m ended search budgeted after" in out and "1 finished trial(s) kept" in out
    _assert_cpus_released()
