"""``ray job submit`` of an ablation to a real Ray head, as a user does on a cluster (cluster/README.md).

A real head is started with ``ray start --head`` on loopback ports of its own, with token authentication
on (``RAY_AUTH_MODE=token``, a token file in a temp dir — never ``~/.ray/auth_token``) and the dashboard on
127.0.0.1. Jobs go through the Jobs API with the repository uploaded as ``--working-dir`` and the
``excludes``/``env_vars`` of ``cluster/runtime_env.yaml``; runs land in a SQLite MLflow store in
``tmp_path``. Teardown ends only the processes this head started, by pid (``ray start`` and its
descendants) — never ``ray stop``, which kills every Ray process on the machine, other tests' too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow_helpers import client, sqlite_uri_in
from net_helpers import free_port
from paths import REPO

pytestmark = pytest.mark.ray  # starts a local Ray instance: the platform layer, not the core

BIN = Path(sys.executable).parent  # the venv the head runs from: `ray` and `ms2l` live here
GRID = "ablations/smoke.yaml"
SEEDS = 1  # --num-samples: one seed per cell keeps each job to two cell-seeds (~1 min each on 2 cores)
JOB_TIMEOUT_S = 420  # generous: other work on a 2-core machine can triple a job's wall time
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _runtime_env() -> dict[str, Any]:
    """cluster/runtime_env.yaml minus ``pip`` (no index here; the head's venv has the dependencies)."""
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    env.pop("pip", None)
    env.pop("working_dir", None)  # given as --working-dir, as the README does
    return dict(env)


class RayHead:
    """A ``ray start --head --block`` in its own process group, on ports nobody else uses."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Unix socket paths are limited
        self.token_path = self.root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path), RAY_USAGE_STATS_ENABLED="0",
                   RAY_TRAIN_V2_ENABLED="1", RAY_DEDUP_LOGS="0", MLFLOW_DISABLE_TELEMETRY="true",
                   # One actor process less per Train job on 2 cores; spot preemption cannot happen here.
                   RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0",
                   PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        self.env = env  # for the head and for the `ray job` clients; RAY_ADDRESS only for submits
        self.log = self.root / "head.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        worker_lo = 20000 + secrets.randbelow(200) * 40
        cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port",
               str(self.dashboard_port), "--dashboard-agent-listen-port", str(free_port()),
               "--dashboard-agent-grpc-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
               "--metrics-export-port", str(free_port()), "--node-manager-port", str(free_port()),
               "--object-manager-port", str(free_port()), "--ray-client-server-port", str(free_port()),
               "--min-worker-port", str(worker_lo), "--max-worker-port", str(worker_lo + 39),
               "--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(200 * 2**20),
               "--temp-dir", str(self.root), "--disable-usage-stats"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.api("GET", "/api/jobs/")
                return
            except (urllib.error.URLError, OSError):
                time.sleep(1)
        raise RuntimeError(f"the dashboard on {self.address} did not come up:\n{self.log.read_text()[-3000:]}")

    def api(self, method: str, path: str, token: bool = True) -> Any:
        """The Jobs REST API with the bearer token (what ``ray job`` sends when RAY_AUTH_MODE=token)."""
        req = urllib.request.Request(self.address + path, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {self.token_path.read_text()}")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback test server
            return json.loads(resp.read() or b"null")

    def ray_job(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``ray job <command> --address <dashboard> ...`` with the token in the environment."""
        env = dict(self.env, RAY_ADDRESS=self.address)
        cmd, rest = args[0], args[1:]
        return subprocess.run([str(BIN / "ray"), "job", cmd, "--address", self.address, *rest], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def submit(self, submission_id: str, entrypoint: list[str]) -> None:
        """``ray job submit --no-wait --working-dir <repo> --runtime-env-json ... -- <entrypoint>``."""
        done = self.ray_job("submit", "--no-wait", "--submission-id", submission_id, "--working-dir", str(REPO),
                            "--runtime-env-json", json.dumps(_runtime_env()), "--", *entrypoint)
        assert done.returncode == 0, f"ray job submit failed:\n{done.stdout}\n{done.stderr}"

    def status(self, submission_id: str) -> str:
        return str(self.api("GET", f"/api/jobs/{submission_id}")["status"])

    def logs(self, submission_id: str) -> str:
        try:
            return str(self.api("GET", f"/api/jobs/{submission_id}/logs")["logs"])
        except (urllib.error.URLError, OSError, KeyError) as exc:
            return f"<no logs: {exc}>"

    def wait(self, submission_id: str, timeout_s: float = JOB_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status(submission_id)
            if status in TERMINAL:
                return status
            time.sleep(2)
        raise AssertionError(f"job {submission_id} still {self.status(submission_id)} after {timeout_s}s:\n"
                             f"{self.logs(submission_id)[-4000:]}")

    def stop(self) -> None:
        """End this head's processes by pid: ``ray start`` and every descendant (GCS, raylet, workers, job
        drivers — workers run in sessions of their own, so a process-group kill would miss them)."""
        if self.proc is not None:
            procs = _tree_of(self.proc.pid)
            _signal_all(procs, signal.SIGTERM)
            deadline = time.monotonic() + 3  # `ray start --block`, the raylet and the monitor ignore SIGTERM
            while time.monotonic() < deadline and any(_alive(p) for p in procs):
                self.proc.poll()  # reap `ray start` itself; the others are reaped by init
                time.sleep(0.2)
            _signal_all(procs, signal.SIGKILL)
            self.proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


# A process is (pid, start time): the start time keeps a reused pid from being signalled (Linux /proc).
Proc = tuple[int, int]


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of ``pid``, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[1]), fields[0], int(fields[19])


def _tree_of(root: int) -> list[Proc]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parents.setdefault(st[0], []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if (st := _stat(pid)) is not None:
            out.append((pid, st[2]))
            todo.extend(parents.get(pid, []))
    return out


def _alive(p: Proc) -> bool:
    st = _stat(p[0])
    return st is not None and st[2] == p[1] and st[1] != "Z"


def _signal_all(procs: list[Proc], sig: signal.Signals) -> None:
    for p in procs:
        if _alive(p):
            with suppress(ProcessLookupError):
                os.kill(p[0], sig)


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    h = RayHead()
    try:
        h.start()
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def submitted(head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The job ``test_submit_ablation_job`` checks, submitted early so that it runs alongside the stop/resume
    test: a smoke job is mostly Ray start-up latency (process spawns, polls), not CPU, so two overlap well."""
    tmp = tmp_path_factory.mktemp("submitted")
    sid = f"ms2l-submit-{secrets.token_hex(3)}"
    head.submit(sid, _ablate(tmp, "submitted"))
    return sid, tmp


def _ablate(tmp: Path, name: str, *extra: str) -> list[str]:
    return ["ms2l", "ablate", GRID, "--num-samples", str(SEEDS), "--tracking-uri", sqlite_uri_in(tmp),
            "--storage-path", str(tmp / "ray"), "--out", str(tmp / "out"), "--name", name, *extra]


def _runs(uri: str) -> list[Any]:
    c = client(uri)
    return [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id], max_results=1000)]


def _tree(uri: str, name: str) -> tuple[Any, list[Any], list[Any]]:
    """(the ablation's parent run, its cell-seed runs, every run beneath the parent)."""
    runs = _runs(uri)
    parents = [r for r in runs if r.data.tags.get("kind") == "ablation" and r.data.tags.get("ablation_name") == name]
    assert len(parents) == 1, f"expected one parent run for {name}, got {len(parents)}"
    parent = parents[0]
    below = [r for r in runs if r.data.tags.get("ablation_run_id") == parent.info.run_id]
    cells = [r for r in below if r.data.tags.get("kind") == "ablation_cell"]
    return parent, cells, below


def _finished_cell_seeds(db: Path) -> list[str]:
    """Run ids of FINISHED cell-seed runs, read-only with sqlite3 while the job writes (an MlflowClient
    here could race the job's own schema migration of a new store)."""
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            rows = con.execute("SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                               "WHERE t.key = 'kind' AND t.value = 'ablation_cell' AND r.status = 'FINISHED'")
            return [row[0] for row in rows]
    except sqlite3.Error:  # tables not created yet, or locked for a moment
        return []


def _grid_cell_seeds() -> set[tuple[str, int]]:
    from ms2l_ray.studies.ablation.grid import load_grid

    grid = load_grid(REPO / GRID, num_samples=SEEDS)
    return {(c.name, s) for c, s in grid.cell_seeds()}


def test_token_auth_is_on(head: RayHead) -> None:
    """Safe default: the Jobs API of a token-auth head refuses a request without the token."""
    with pytest.raises(urllib.error.HTTPError) as err:
        head.api("GET", "/api/jobs/", token=False)
    assert err.value.code == 401


PROBE = ("import json, os, ms2l_ray; print('PROBE', json.dumps({'module': ms2l_ray.__file__, 'cwd': os.getcwd(), "
         "'files': sorted(os.listdir('.')), 'env': {k: os.environ.get(k) for k in ('MLFLOW_DISABLE_TELEMETRY', "
         "'MLFLOW_TRACKING_PASSWORD', 'RAY_AUTH_MODE')}}))")


def test_working_dir_upload_honours_runtime_env(head: RayHead) -> None:
    """The job runs the uploaded copy of the repository, without what ``excludes`` names, and its
    ``env_vars`` references are expanded on the node (unset there → empty, never a literal)."""
    sid = f"ms2l-probe-{secrets.token_hex(3)}"
    head.submit(sid, ["python", "-c", PROBE])
    assert head.wait(sid, timeout_s=120) == "SUCCEEDED", head.logs(sid)
    line = next(x for x in head.logs(sid).splitlines() if x.startswith("PROBE "))
    probe = json.loads(line[len("PROBE "):])
    assert probe["module"].startswith(probe["cwd"]) and not probe["cwd"].startswith(str(REPO))
    assert {"ms2l_ray", "ablations", "cluster", "pyproject.toml"} <= set(probe["files"])
    assert not {".git", ".mypy_cache", "mlflow.db", "ray_results", "outputs", "__pycache__"} & set(probe["files"])
    assert probe["env"] == {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_PASSWORD": "",
                            "RAY_AUTH_MODE": "token"}


def test_stop_and_resume_ablation_job(head: RayHead, submitted: tuple[str, Path], tmp_path: Path,
                                      sqlite_uri: str) -> None:
    """Stop a job after its first cell-seed finished; ``--resume`` with the same --name/--storage-path
    completes it without running a finished cell-seed again. (``submitted`` runs alongside.)"""
    first = f"ms2l-stop-{secrets.token_hex(3)}"
    head.submit(first, _ablate(tmp_path, "interrupted"))

    # Stop the job once its first cell-seed run has FINISHED (and before the last one has).
    deadline, finished = time.monotonic() + JOB_TIMEOUT_S, list[str]()
    while time.monotonic() < deadline and not finished:
        assert head.status(first) not in TERMINAL, f"job ended before it could be stopped:\n{head.logs(first)}"
        finished = _finished_cell_seeds(tmp_path / "mlflow.db")
        time.sleep(1)
    assert finished, f"no cell-seed run finished in {JOB_TIMEOUT_S}s:\n{head.logs(first)[-4000:]}"
    stop = head.ray_job("stop", first)
    assert stop.returncode == 0, stop.stderr
    assert head.wait(first, timeout_s=60) == "STOPPED"
    _, cells, _ = _tree(sqlite_uri, "interrupted")
    assert len([r for r in cells if r.info.status == "FINISHED"]) < len(_grid_cell_seeds()), "stopped too late"

    again = f"ms2l-resume-{secrets.token_hex(3)}"
    head.submit(again, _ablate(tmp_path, "interrupted", "--resume"))
    status = head.wait(again)
    logs = head.logs(again)
    assert status == "SUCCEEDED", logs[-4000:]

    parent, cells, below = _tree(sqlite_uri, "interrupted")
    assert parent.info.status == "FINISHED"
    done = [r for r in cells if r.info.status == "FINISHED"]
    keys = [(r.data.tags["cell"], int(r.data.tags["seed"])) for r in done]
    assert sorted(keys) == sorted(_grid_cell_seeds()), f"duplicate or missing finished cell-seeds: {keys}"
    assert set(finished) <= {r.info.run_id for r in done}, "a finished cell-seed was rerun"
    # Nothing is left RUNNING, and every run below a finished cell-seed finished exactly once.
    assert all(r.info.status != "RUNNING" for r in below)
    done_ids = {r.info.run_id for r in done}
    children = [r for r in below if r.data.tags.get("mlflow.parentRunId") in done_ids]
    per_cell = [(r.data.tags.get("mlflow.parentRunId"), r.data.tags.get("kind"), r.data.tags.get("evaluation"))
                for r in children]
    assert len(per_cell) == len(set(per_cell)), f"duplicate runs under a finished cell-seed: {per_cell}"
    assert all(r.info.status == "FINISHED" for r in children)


def test_submit_ablation_job(head: RayHead, submitted: tuple[str, Path]) -> None:
    """``ray job submit -- ms2l ablate ...`` succeeds and leaves the whole run tree FINISHED in MLflow."""
    sid, tmp = submitted
    status = head.wait(sid)
    logs = head.logs(sid)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "[ablate]" in logs

    parent, cells, below = _tree(sqlite_uri_in(tmp), "submitted")
    assert parent.info.status == "FINISHED"
    assert {(r.data.tags["cell"], int(r.data.tags["seed"])) for r in cells} == _grid_cell_seeds()
    assert all(r.info.status == "FINISHED" for r in below), [(r.info.run_name, r.info.status) for r in below]
    kinds = {r.data.tags.get("kind") for r in below}
    assert {"ablation_cell", "pretrain", "evaluate"} <= kinds
    assert (tmp / "out" / "table.md").exists()
