"""Join the user's Ray cluster or start a local one sized to this machine, reachable from this machine only.

No ``RAY_ADDRESS`` (and no ``--address``) → a local instance with this machine's CPUs/GPUs; with one, the
command joins that cluster (which is how ``ray job submit`` entrypoints find their cluster).

A local instance is bound to loopback and uses token authentication. Why: Ray's GCS, raylet and workers
accept work that runs arbitrary code; Ray's own local start on Linux binds them to every interface, so
anyone on the network could run code as this user. :func:`loopback_node` makes Ray take ``127.0.0.1`` as
the node address (the mode Ray uses on macOS and Windows), and ``RAY_AUTH_MODE=token`` makes every gRPC and
dashboard call carry a token that only this user can read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Ray Train V2's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default) and a
# worker's report() waits for that poll, so every short epoch and every job start pays up to 2 s. Our jobs are
# many and short: on 2 cores, 0.2 s halved the wall time of a pretrain + linear-evaluation pipeline (114 s → 58 s).
# Set before ray.init so a local instance's processes inherit it; a value the user set wins.
TRAIN_POLL_ENV, TRAIN_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"

LOOPBACK = "127.0.0.1"
AUTH_MODE_ENV = "RAY_AUTH_MODE"  # "token" unless the user set it (RAY_AUTH_MODE=disabled is their explicit choice)
TOKEN_ENVS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")  # a token the user supplies; then we create none
# Ray reads this at import (ray._private.ray_constants.ENABLE_RAY_CLUSTER); off, a node's address is loopback.
MULTI_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ensure_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> dict[str, Any]:
    """``ray.init`` once per process; returns the cluster's total resources."""
    import ray

    os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_S)
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            # Ray rewrites a loopback address to this machine's network address before it connects, where a
            # loopback-only instance (ours) does not listen; on loopback it keeps the address as given
            with loopback_node() if is_loopback_address(address) else contextlib.nullcontext():
                ray.init(address=address, log_to_driver=log_to_driver)
        else:
            start_local_ray(num_cpus, log_to_driver)
    return dict(ray.cluster_resources())


def start_local_ray(num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """A new local instance on loopback with token auth; refuses to go on if Ray bound another address."""
    import ray

    if token_auth_on():
        private_token_file(Path.home())
    kwargs: dict[str, Any] = {"log_to_driver": log_to_driver, "include_dashboard": True,  # Train V2 polls its state API
                              "dashboard_host": LOOPBACK}
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    with loopback_node():
        ray.init(**kwargs)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # a Ray release that ignores the setting: better no cluster than an exposed one
        ray.shutdown()
        raise RuntimeError(f"the local Ray instance took node address {node_ip}, not {LOOPBACK}, so it would "
                           f"listen on the network; start a cluster yourself (`ray start --head "
                           f"--node-ip-address=...`) and pass --address")


def is_loopback_address(address: str) -> bool:
    """``127.0.0.1:6379``, ``localhost:6379``, ``ray://127.0.0.1:10001`` → True; any other host → False."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def token_auth_on() -> bool:
    """``RAY_AUTH_MODE=token`` unless the user chose a mode; True when token auth is on.

    Set through Ray's own switch where it has one, which also refreshes the config Ray cached at import, so
    this process (not only the ones it starts) sends the token.
    """
    if AUTH_MODE_ENV not in os.environ:
        try:
            from ray._private.authentication.authentication_token_setup import _enable_token_auth
        except ImportError:  # pragma: no cover - another Ray layout: the environment still reaches Ray's processes
            os.environ[AUTH_MODE_ENV] = "token"
        else:
            _enable_token_auth()
    return os.environ[AUTH_MODE_ENV].lower() == "token"


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """While a local instance starts, Ray takes ``127.0.0.1`` as this node's address.

    So its GCS, raylet, agents and workers listen on loopback only (they bind every interface unless the node
    address is loopback).

    Ray decides this from ``ENABLE_RAY_CLUSTER``, read from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when Ray is
    imported: both are set for the start (its processes inherit the environment) and restored afterwards, so
    a ``ray start`` this process runs later still joins clusters as usual.
    """
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(MULTI_NODE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[MULTI_NODE_ENV], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(MULTI_NODE_ENV, None)
        else:
            os.environ[MULTI_NODE_ENV] = saved_env


def private_token_file(home: Path) -> Path | None:
    """The token file Ray reads (``~/.ray/auth_token``), created readable by this user only if missing.

    Why: Ray creates a missing one with the default umask (``-rw-r--r--``), so another user of the machine
    could read the token and, the ports being on loopback, use the instance. A token the user supplies
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``) is left alone (None); an existing file that others can read
    is kept but named in a warning, since it may be shared on purpose.
    """
    import secrets

    if any(os.environ.get(name) for name in TOKEN_ENVS):
        return None
    path = home / ".ray" / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(f"warning: Ray's token file {path} is readable by other users; `chmod 600 {path}` keeps them "
                  f"off this machine's Ray instance", file=sys.stderr)
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # Ray's own format: 256 random bits as hex
    return path


def node_cpus_per_worker(workers: int) -> float:
    """A whole node's CPUs shared by a job's ``workers`` (at least 1 each): the default for a single job.

    Ray gives a worker as many torch threads as it has CPUs (``OMP_NUM_THREADS``), so the old default of one
    CPU per worker left half of a 2-core laptop idle: ``ms2l pretrain --preset small`` took 308 s there
    against 268 s with both cores (and a different trajectory: the thread count changes reduction order).
    The largest alive node bounds it, so the job still fits on one node.
    Ray must be initialised.
    """
    import ray

    cpus = [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    return max(1.0, float(int(max(cpus, default=1.0) // max(1, workers))))
