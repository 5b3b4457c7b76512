"""Ray Train + MLflow, end to end: real local Ray (2 CPUs), real MLflow stores, real worker failures.

Every job here is a ``TorchTrainer``; assertions read MLflow through its own client API.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow_helpers import artifact_paths, children, client, sqlite_uri_in
from net_helpers import free_port
from store_helpers import write_overflow_store
from tensor_helpers import stable

from ms2l_ray.cli.main import main
from ms2l_ray.config import Config, load_config
from ms2l_ray.jobs.spec import EpochHook, Resources
from ms2l_ray.jobs.tracked import (
    ChainEvaluation,
    Execution,
    Tracking,
    tracked_chain,
    tracked_evaluate,
    tracked_pretrain,
)
from ms2l_ray.studies.experiment import Evaluation, run_pipeline

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]

TINY = ["data.builtin_sequences=160", "data.max_frames=20", "pretrain.epochs=3"]


def tiny(*extra: str) -> Config:
    return load_config("smoke", overrides=[*TINY, *extra])


def kill_last_rank_once(after_epoch: int, marker: Path) -> EpochHook:
    """An epoch hook under which the last rank exits hard after ``after_epoch``, once (``marker`` records it).

    A closure, so Ray pickles it by value: the Train workers cannot import this test module.
    """

    def hook(epoch: int, rank: int, world_size: int) -> None:
        if epoch != after_epoch or rank != world_size - 1 or marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"killed rank {rank} after epoch {epoch}\n")
        os._exit(1)

    return hook


def test_default_cpus_per_worker_fills_a_node() -> None:
    """Ray gives each worker one torch thread per CPU: a single job's default must not leave cores idle."""
    from ms2l_ray.jobs.cluster import node_cpus_per_worker

    assert node_cpus_per_worker(1) == 2.0  # the fixture's local instance has 2 CPUs
    assert node_cpus_per_worker(2) == 1.0
    assert node_cpus_per_worker(3) == 1.0  # never below one CPU a worker


def _descendants(root: int) -> set[int]:
    """``root`` and every process under it (Ray's GCS, raylet, agents and workers are children of the driver)."""
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(proc.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += parents.get(pid, [])
    return found


def _listening(pids: set[int]) -> list[tuple[str, int, str]]:
    """``(address, port, process name)`` of every TCP socket in LISTEN state that one of ``pids`` holds."""
    owner: dict[int, str] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        owner.update({int(link[8:-1]): name for link in links if link.startswith("socket:[")})
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state, inode = row.split()[1], row.split()[3], int(row.split()[9])
            if state != "0A" or inode not in owner:  # 0A = LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = b"".join(bytes.fromhex(hex_addr[i:i + 8])[::-1] for i in range(0, len(hex_addr), 8))
            found.append((socket.inet_ntop(socket.AF_INET if width == 4 else socket.AF_INET6, raw),
                          int(hex_port, 16), owner[inode]))
    return found


def test_local_ray_listens_on_loopback_only_with_token_auth() -> None:
    """The instance ``ensure_ray`` starts (the fixture's): every Ray socket on loopback, every call needs the token."""
    import urllib.error
    import urllib.request

    import ray

    sockets = _listening(_descendants(os.getpid()))
    assert {"gcs_server", "raylet"} <= {name for _, _, name in sockets}
    exposed = [s for s in sockets if s[0] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert exposed == []
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    url = "http://" + ray._private.worker.get_dashboard_url()
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "/api/authentication_mode", timeout=10) as resp:
        assert json.loads(resp.read())["authentication_mode"] == "token"
    token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()
    codes = []
    for header in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Bearer {token}"}):
        try:
            with urllib.request.urlopen(urllib.request.Request(url + "/api/version", headers=header), timeout=10) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    assert codes == [401, 403, 200]


def test_pipeline_on_two_workers_builds_the_mlflow_tree(tmp_path: Path, sqlite_uri: str) -> None:
    cfg = tiny()
    tracking = Tracking(sqlite_uri, "ms2l-test")
    res = run_pipeline(cfg, [Evaluation("linear")], name="tree", out_root=tmp_path / "out", tracking=tracking,
                       execution=Execution(Resources(workers=2), storage_path=str(tmp_path / "ray")))
    c = client(sqlite_uri)
    parent = c.get_run(res.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["kind"] == "experiment"
    assert "linear.test_top1" in parent.data.metrics
    kids = {r.data.tags["kind"]: r for r in children(sqlite_uri, res.parent_run_id)}
    assert set(kids) == {"pretrain", "evaluate"}
    pre, ev = kids["pretrain"], kids["evaluate"]
    for run in (pre, ev):
        assert run.info.status == "FINISHED"
        for tag in ("dataset", "split", "seed", "git_commit", "config_hash"):
            assert tag in run.data.tags, tag
        assert run.data.params["tasks.temperature"] == "0.9"
        assert run.data.params["model.hidden_size"] == "16"
    assert ev.data.tags["parent_pretrain_run"] == pre.info.run_id
    assert ev.data.tags["strategy"] == "linear"
    # pretext-task health: a JSON list of messages on the pretrain run, from the last epoch's embedding spread
    health = json.loads(pre.data.tags["health"])
    assert isinstance(health, list) and all(isinstance(m, str) for m in health)
    assert pre.data.metrics["val_emb_std_mean"] > 0
    # per-epoch metrics of each task, logged by rank 0 as the epochs ran
    for key in ("train_motion_loss", "train_jigsaw_loss", "train_jigsaw_acc", "train_contrastive_loss",
                "train_contrastive_acc", "lr", "throughput_seq_s"):
        steps = [m.step for m in c.get_metric_history(pre.info.run_id, key)]
        assert steps == [1, 2, 3], key
    for key in ("val_top1", "val_top5", "test_top1", "test_top5"):
        assert key in ev.data.metrics
    pre_art = artifact_paths(sqlite_uri, pre.info.run_id)
    assert {"config.yaml", "encoder/encoder.safetensors", "encoder/config.yaml", "loss_curves.png",
            "history.json"} <= pre_art
    ev_art = artifact_paths(sqlite_uri, ev.info.run_id)
    assert {"config.yaml", "confusion_matrix.png", "per_class_accuracy.json", "curves.png"} <= ev_art
    # one Ray Train run for the pretraining and its evaluation (issue 12 item 7); the pretrain job record beside it
    kinds = sorted("record" if d.name.startswith("tree-pretrain-") else "chain" if d.name[5:6].isdigit() else d.name
                   for d in (tmp_path / "ray").iterdir())
    assert kinds == ["chain", "record"]
    # the run's logged model (the runs table's Model column): weights and config, nothing pickled; it embeds a batch
    from ms2l_ray.tracking.artifacts import load_encoder_embedding

    [output] = pre.outputs.model_outputs
    logged = c.get_logged_model(output.model_id)
    assert (logged.name, logged.model_type, logged.source_run_id, str(logged.status)) == (
        "encoder_model", "ms2l-encoder", pre.info.run_id, "READY")
    files = {a.path for a in c.list_logged_model_artifacts(output.model_id)}  # + MLflow's registered_model_meta
    assert {"MLmodel", "config.yaml", "encoder.safetensors"} <= files
    assert not any(f.endswith((".pkl", ".pt", ".pth", ".pickle")) for f in files)
    model = load_encoder_embedding(f"models:/{output.model_id}", sqlite_uri)
    x = torch.randn(3, 10, 150)
    emb = model(x, torch.tensor([10, 6, 3]))
    assert emb.shape == (3, 16) and torch.isfinite(emb).all()

    # ms2l rerun rebuilds the evaluation from the record and reproduces it
    out_json = tmp_path / "rerun.json"
    code = main(["rerun", ev.info.run_id, "--tracking-uri", sqlite_uri, "--storage-path", str(tmp_path / "ray"),
                 "--out", str(tmp_path / "rerun"), "--json", str(out_json)])
    assert code == 0
    again = json.loads(out_json.read_text())
    assert again["test_top1"] == pytest.approx(ev.data.metrics["test_top1"])
    rerun_runs = c.search_runs([ev.info.experiment_id], f"tags.rerun_of = '{ev.info.run_id}'")
    assert len(rerun_runs) == 1 and rerun_runs[0].data.tags["config_hash"] == ev.data.tags["config_hash"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted 2-worker pretraining run (the reference for the failure and resume tests)."""
    tmp = tmp_path_factory.mktemp("baseline")
    outcome, _ = tracked_pretrain(tiny(), name="baseline", out_dir=tmp / "out", tracking=None,
                                  execution=Execution(Resources(workers=2), storage_path=str(tmp / "ray")))
    return {"metrics": outcome.metrics, "history": outcome.history}


def test_killed_worker_recovers_from_checkpoint_with_nothing_lost(tmp_path: Path, sqlite_uri: str,
                                                                   baseline: dict[str, Any]) -> None:
    marker = tmp_path / "killed"
    outcome, run = tracked_pretrain(
        tiny(), name="failing", out_dir=tmp_path / "out", tracking=Tracking(sqlite_uri),
        execution=Execution(Resources(workers=2), storage_path=str(tmp_path / "ray"), max_failures=2,
                            on_epoch_end=kill_last_rank_once(1, marker)))
    assert marker.exists(), "the injected failure did not happen"
    assert [h["epoch"] for h in outcome.history] == [1.0, 2.0, 3.0]
    assert stable(outcome.metrics) == pytest.approx(stable(baseline["metrics"]))
    assert run is not None and client(sqlite_uri).get_run(run.run_id).info.status == "FINISHED"


@pytest.mark.slow  # CI budget: a second Ray instance in a CLI subprocess, run twice; opt-in with -m slow. The
# killed-worker recovery tests (job and chain) and the kill-and-resume ablation test stay in the default suite.
def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, sqlite_uri: str,
                                                     baseline: dict[str, Any]) -> None:
    storage, out = tmp_path / "ray", tmp_path / "enc"
    args = ["pretrain", "--preset", "smoke", "--workers", "2", "--storage-path", str(storage),
            "--tracking-uri", sqlite_uri, "--name", "interrupted", "--out", str(out)]
    for s in TINY:
        args += ["--set", s]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "ms2l_ray.cli", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not list((storage / "interrupted").glob("checkpoint_*")):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)
        assert list((storage / "interrupted").glob("checkpoint_*")), "no checkpoint before the deadline"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray die together, mid-run
        proc.wait()
    assert not (out / "encoder.safetensors").exists()
    summary = tmp_path / "resumed.json"
    resumed = subprocess.run([sys.executable, "-m", "ms2l_ray.cli", "pretrain", "--resume", "interrupted",
                              "--storage-path", str(storage), "--tracking-uri", sqlite_uri, "--workers", "2",
                              "--json", str(summary)], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # the worker's lines go to the run's log file (the console shows progress only, issue 15)
    assert "resuming after epoch" in (out / "ms2l.log").read_text()
    final = json.loads(summary.read_text())
    assert (out / "encoder.safetensors").exists()
    expected = stable(baseline["metrics"])
    assert {k: final[k] for k in expected} == pytest.approx(expected)
    # the resumed job kept logging into its own MLflow run, which is finished now
    c = client(sqlite_uri)
    runs = c.search_runs([c.get_experiment_by_name("ms2l").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in c.get_metric_history(runs[0].info.run_id, "train_loss")][-1] == 3


SECRET = "pw-Zq7-not-for-logs"  # the basic-auth password: it must appear in no output, file, param or tag


def test_logs_to_a_credentialed_mlflow_server_and_leaks_the_password_nowhere(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A real ``mlflow server --app-name basic-auth``: the pre-check passes with ``user:pw@host`` in the URI, the
    job logs through it, and the password is in no output, record, param, tag or file the job wrote."""
    port = free_port()
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {sqlite_uri_in(tmp_path, 'auth.db')}\n"
                   f"admin_username = admin\nadmin_password = {SECRET}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port",
         str(port), "--backend-store-uri", sqlite_uri_in(tmp_path, "server.db"), "--artifacts-destination",
         str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=(tmp_path / "server.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env=dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(ini),  # MLflow 3's auth app refuses to start without a key
                 MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16)))
    uri = f"http://admin:{SECRET}@127.0.0.1:{port}"
    work = tmp_path / "work"
    try:
        from ms2l_ray.tracking.store import TrackingError, check_reachable

        deadline = time.time() + 120
        while True:
            try:
                check_reachable(uri, timeout_s=1)  # the old probe took "admin:pw@127.0.0.1" for a host name
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        with pytest.raises(TrackingError) as wrong:  # a wrong password is refused, and not echoed either
            check_reachable(f"http://admin:{SECRET}-wrong@127.0.0.1:{port}", timeout_s=5)
        assert "answered 401" in str(wrong.value) and SECRET not in str(wrong.value)
        cfg = tiny("evaluation.strategy=knn")
        outcome, run = tracked_evaluate(cfg, encoder=None, name="knn-on-server", out_dir=work / "out",
                                        tracking=Tracking(uri, "server-test"),
                                        execution=Execution(storage_path=str(work / "ray")))
        assert run is not None
        c = client(uri)
        got = c.get_run(run.run_id)
        assert got.info.status == "FINISHED"
        assert got.data.metrics["test_top1"] == pytest.approx(outcome.metrics["test_top1"])
        assert "confusion_matrix.png" in artifact_paths(uri, run.run_id)
        for r in c.search_runs([got.info.experiment_id]):
            shown = json.dumps({"params": r.data.params, "tags": r.data.tags, "name": r.info.run_name})
            assert SECRET not in shown, shown
    finally:
        with contextlib.suppress(ProcessLookupError):  # a server that died at start-up is reported above
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    leaked = [str(p) for p in work.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked, leaked  # records, configs, logs, metrics: nothing the job wrote holds the password
    logged = [str(p) for p in (tmp_path / "artifacts").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not logged, logged  # nor any artifact the job logged (config, record, log file)


def test_chain_recovers_a_killed_worker_and_runs_its_evaluations(tmp_path: Path, sqlite_uri: str,
                                                                 baseline: dict[str, Any]) -> None:
    """A pretraining + evaluation chain in one Train run: a worker killed after epoch 1 costs nothing —
    the pretraining resumes from its checkpoint to the uninterrupted result, then the evaluation runs once."""
    marker = tmp_path / "killed"
    tracking = Tracking(sqlite_uri, "ms2l-test")
    cfg = tiny()
    ev_cfg = Evaluation("linear").apply(cfg)
    jobs = [ChainEvaluation(ev_cfg, "chain-linear", tmp_path / "linear", {"evaluation": "linear"})]
    chain = tracked_chain(cfg, jobs, name="chain", pretrain_name="chain-pretrain", pretrain_out=tmp_path / "pre",
                          tracking=tracking,
                          execution=Execution(Resources(workers=2), storage_path=str(tmp_path / "ray"), max_failures=2,
                                              on_epoch_end=kill_last_rank_once(1, marker)))
    assert marker.exists(), "the injected failure did not happen"
    assert chain.pretrain is not None and [h["epoch"] for h in chain.pretrain.history] == [1.0, 2.0, 3.0]
    assert stable(chain.pretrain.metrics) == pytest.approx(stable(baseline["metrics"]))
    [ev] = chain.evaluations
    assert (tmp_path / "linear" / "metrics.json").exists() and ev.metrics["test_top1"] > 0
    c = client(sqlite_uri)
    assert chain.pretrain_run is not None
    pre = c.get_run(chain.pretrain_run.run_id)
    evs = c.search_runs([pre.info.experiment_id], f"tags.parent_pretrain_run = '{pre.info.run_id}'")
    assert pre.info.status == "FINISHED" and [r.info.status for r in evs] == ["FINISHED"]
    # the evaluation logged its epochs once: a restart did not replay them
    steps = [m.step for m in c.get_metric_history(evs[0].info.run_id, "val_top1")]
    assert steps == sorted(set(steps)) and steps[-1] == ev_cfg.evaluation.optim.epochs + 1


def test_an_evaluation_run_started_by_the_worker_exists_only_once_it_runs(tmp_path: Path, sqlite_uri: str) -> None:
    """A search trial's chain (issue 12, item 7): the evaluation's MLflow run is started by rank 0 when the
    evaluation starts. A chain that dies in pretraining leaves no evaluation run; a worker killed mid-evaluation
    restarts the stage into the same run, which the driver then finishes with its metrics and artifacts."""
    from ms2l_ray.jobs.job_runs import RUN_ID_FILE
    from ms2l_ray.tracking.runs import start_run

    c = client(sqlite_uri)
    cfg = tiny("evaluation.optim.epochs=5")  # pretraining epochs 0-2, evaluation epochs 0-4
    ev_cfg = Evaluation("linear").apply(cfg)

    def chain(label: str, kill_after: int, max_failures: int) -> tuple[Any, Path, Any]:
        trial = start_run(sqlite_uri, "planned", label)
        jobs = [ChainEvaluation(ev_cfg, f"{label}-linear", tmp_path / label / "linear", {"evaluation": "linear"},
                                started_by_worker=True)]
        marker = tmp_path / label / "killed"
        run = lambda: tracked_chain(cfg, jobs, name=label, pretrain_name=f"{label}-pretrain",  # noqa: E731
                                    pretrain_out=tmp_path / label / "pre", tracking=Tracking(sqlite_uri, "planned"),
                                    execution=Execution(Resources(), storage_path=str(tmp_path / "ray"),
                                                        max_failures=max_failures,
                                                        on_epoch_end=kill_last_rank_once(kill_after, marker)),
                                    parent=trial)
        return run, marker, trial

    # killed after pretraining epoch 1 with no retries: the pretraining FAILED, and no evaluation run was made
    run, marker, trial = chain("cut", kill_after=1, max_failures=0)
    from ray.train.v2.api.exceptions import WorkerGroupError

    with pytest.raises(WorkerGroupError):
        run()
    assert marker.exists()
    cut_jobs = [(r.data.tags["kind"], r.info.status) for r in children(sqlite_uri, trial.run_id)]
    assert cut_jobs == [("pretrain", "FAILED")]
    assert not (tmp_path / "cut" / "linear" / RUN_ID_FILE).exists()

    # killed after evaluation epoch 3, one retry: the restarted stage logs into the run it started before
    run, marker, trial = chain("restarted", kill_after=3, max_failures=1)
    outcome = run()
    assert marker.read_text().endswith("after epoch 3\n")
    jobs = {r.data.tags["kind"]: r for r in children(sqlite_uri, trial.run_id)}
    assert sorted(jobs) == ["evaluate", "pretrain"] and len(children(sqlite_uri, trial.run_id)) == 2
    ev = jobs["evaluate"]
    assert ev.info.run_id == (tmp_path / "restarted" / "linear" / RUN_ID_FILE).read_text()
    assert ev.info.status == "FINISHED" and ev.info.run_name == "restarted-linear"
    assert ev.data.tags["parent_pretrain_run"] == jobs["pretrain"].info.run_id
    assert ev.data.tags["strategy"] == "linear" and ev.data.tags["kind"] == "evaluate"
    assert ev.data.params["evaluation.optim.epochs"] == "5" and ev.data.params["pretrain.epochs"] == "3"
    assert ev.data.metrics["test_top1"] == pytest.approx(outcome.evaluations[0].metrics["test_top1"])
    assert {"config.yaml", "confusion_matrix.png", "curves.png"} <= artifact_paths(sqlite_uri, ev.info.run_id)
    # the stage ran twice into that run: epochs 1-4 of the killed attempt, then all 5, then the final step
    steps = [m.step for m in c.get_metric_history(ev.info.run_id, "val_top1")]
    assert steps == [1, 2, 3, 4, 1, 2, 3, 4, 5, 6]


def test_chain_skips_stages_finished_before_a_restart_but_not_leftovers(tmp_path: Path) -> None:
    """``metrics.json`` marks a finished stage; ``run_chain`` clears ones an earlier run left behind."""
    from ms2l_ray.jobs.driver import run_chain
    from ms2l_ray.jobs.spec import JobSpec

    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"test_top1": -1.0}))  # a stale result of an earlier run
    spec = JobSpec.make("evaluate", Evaluation("linear").apply(tiny()), str(out))
    [outcome] = run_chain([spec], name="stale", resources=Resources(), storage_path=str(tmp_path / "ray"))
    assert outcome.metrics["test_top1"] >= 0  # recomputed, not the planted -1


def test_a_bad_dataset_fails_once_with_its_own_error_not_after_retries(tmp_path: Path, sqlite_uri: str) -> None:
    """A data error fails every attempt alike: the job stops at once with it, and the run is FAILED (issue 14)."""
    from ms2l_ray.data.errors import DataFormatError
    from ms2l_ray.jobs.fatal import FATAL_FILE

    notes = tmp_path / "notes.txt"
    notes.write_text("not a store\n")
    started = time.time()
    with pytest.raises(DataFormatError) as err:
        tracked_pretrain(tiny(f"data.dataset={notes}"), name="bad-data", out_dir=tmp_path / "out",
                         tracking=Tracking(sqlite_uri),
                         execution=Execution(Resources(workers=2), storage_path=str(tmp_path / "ray"), max_failures=2))
    assert type(err.value) is DataFormatError  # not Ray's WorkerGroupError after max_failures restarts
    assert str(err.value).startswith(f"{notes}: field ")
    assert json.loads((tmp_path / "out" / FATAL_FILE).read_text())["type"] == "DataFormatError"
    c = client(sqlite_uri)
    [run] = c.search_runs([c.get_experiment_by_name("ms2l").experiment_id])
    assert run.info.status == "FAILED"
    print(f"bad-data job failed in {time.time() - started:.1f} s")


def test_a_non_finite_loss_stops_a_ray_job_once_and_saves_nothing(tmp_path: Path, sqlite_uri: str) -> None:
    """Coordinates near float32's maximum overflow every loss: the Ray job stops with the guard's own error on the
    first attempt (no restarts), the MLflow run is FAILED, and no encoder is written (issue 14, item 3)."""
    from ms2l_ray.model.artifact import ENCODER_FILES
    from ms2l_ray.train.errors import NonFiniteLossError

    store = write_overflow_store(tmp_path / "huge.arrow")
    with pytest.raises(NonFiniteLossError) as err:
        tracked_pretrain(tiny(f"data.dataset={store}", "data.split=random"), name="overflow", out_dir=tmp_path / "out",
                         tracking=Tracking(sqlite_uri),
                         execution=Execution(Resources(), storage_path=str(tmp_path / "ray"), max_failures=2))
    assert str(err.value).startswith("pretrain: non-finite loss at epoch 1 step 1/")
    assert "motion_loss = inf" in str(err.value)
    assert [f for f in ENCODER_FILES if (tmp_path / "out" / f).exists()] == []
    c = client(sqlite_uri)
    [run] = c.search_runs([c.get_experiment_by_name("ms2l").experiment_id])
    assert run.info.status == "FAILED"
