"""Where jobs run, where runs are recorded, and the command's console session, from the parsed options.

:mod:`ms2l_ray.cli.options` declares the options.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from ms2l_ray.jobs.spec import Resources
from ms2l_ray.jobs.tracked import Execution, Tracking


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


def trial_resources(args: argparse.Namespace) -> Resources:
    """Per-job resources of a study (``tune`` trials, ``ablate`` cell-seeds).

    ``--cpus-per-trial`` and ``--gpus-per-trial`` are totals split evenly over ``--workers``; no
    ``--cpus-per-trial``: 1 CPU a worker.

    Why one function: both studies size their jobs the same way, so ``--workers 0`` fails the same way too.
    """
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    cpus = args.cpus_per_trial if args.cpus_per_trial is not None else float(args.workers)
    return Resources(args.workers, cpus / args.workers, args.gpus_per_trial / args.workers)


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
