"""Options that say *where* jobs run and *where* runs are recorded (shared by every job command)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from ms2l_ray.jobs.spec import Resources
from ms2l_ray.jobs.tracked import Execution, Tracking


def add_execution_options(p: argparse.ArgumentParser, engines: bool = True, workers: bool = True) -> None:
    if engines:
        p.add_argument("--engine", choices=("ray", "local"), default="ray",
                       help="ray: a Ray Train TorchTrainer (default); local: the plain loop in this process, untracked")
    if workers:
        p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP) per job")
        p.add_argument("--cpus-per-worker", type=float, default=None,
                       help="CPUs (= torch threads) per worker; default: the largest node's CPUs / --workers")
        p.add_argument("--gpus-per-worker", type=float, default=0.0, help="> 0 trains on GPUs (NCCL)")
        p.add_argument("--max-failures", type=int, default=2, help="worker failures a job recovers from")
    p.add_argument("--storage-path", default=None, help="Ray storage for checkpoints (default ./ray_results)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    p.add_argument("--experiment", default="ms2l", help="MLflow experiment name")
    p.add_argument("--no-tracking", action="store_true", help="do not record runs in MLflow")
    p.add_argument("--address", default=None, help="Ray cluster address (default $RAY_ADDRESS, else a local instance)")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's and MLflow's own messages here (default: in OUT/ms2l.log, path printed once)")


def tracking_from_args(args: argparse.Namespace) -> Tracking | None:
    """Resolve and probe the tracking store *before* any compute is spent."""
    if args.no_tracking:
        return None
    from ms2l_ray.tracking.store import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_reachable(uri)
    return Tracking(uri=uri, experiment=args.experiment)


def storage_from_args(args: argparse.Namespace) -> str | None:
    """``--storage-path`` made absolute (Ray workers run elsewhere); URIs as given."""
    from ms2l_ray.names import absolute_path

    return absolute_path(args.storage_path)


def execution_from_args(args: argparse.Namespace, **extra: Any) -> Execution:
    """Where jobs run; call after :func:`start_ray` (the default ``--cpus-per-worker`` asks the cluster)."""
    cpus = args.cpus_per_worker
    if cpus is None:
        from ms2l_ray.jobs.cluster import node_cpus_per_worker

        cpus = node_cpus_per_worker(args.workers)
    return Execution(resources=Resources(args.workers, cpus, args.gpus_per_worker),
                     storage_path=storage_from_args(args), max_failures=args.max_failures, **extra)


_CONSOLE = contextlib.ExitStack()  # the command's console session; cli.main runs a command inside console_scope()


def open_console(args: argparse.Namespace, out_dir: Path | None) -> None:
    """Start the command's console (:mod:`ms2l_ray.console`): internals to ``out_dir/ms2l.log``. Once per command."""
    from ms2l_ray import console

    if not getattr(args, "_console_open", False):
        _CONSOLE.enter_context(console.session(out_dir, verbose=bool(getattr(args, "verbose", False))))
        args._console_open = True


def console_scope() -> contextlib.ExitStack:
    """Where a command runs: on the way out, the console session it opened (if any) ends with its error (if any)."""
    return _CONSOLE


def start_ray(args: argparse.Namespace, out_dir: Path | None = None) -> None:
    """Open the console (before ``ray.init``, whose own messages it files), join or start Ray, route its output."""
    from ms2l_ray.console import route_ray_logs
    from ms2l_ray.jobs.cluster import ensure_ray

    open_console(args, out_dir)
    ensure_ray(args.address)
    route_ray_logs()
