"""``ms2l tune <search_space.yaml>``: Ray Tune + Optuna search over pretraining hyperparameters.

Each trial pretrains, then runs the space's evaluation (linear by default) and is ranked on its *validation*
top-1; ASHA cuts trials early on the pretraining KNN proxy. One MLflow parent run per search. A killed search
continues with ``ms2l tune <space> --resume --name <name>`` (the name is printed when it starts).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ms2l_ray.cli.common import absolute_dataset_delta, write_json
from ms2l_ray.cli.execution import add_execution_options, start_ray, tracking_from_args
from ms2l_ray.config import ConfigError, merge_deltas, parse_override
from ms2l_ray.names import absolute_path, check_name


def _resources(args: argparse.Namespace) -> Any:
    """Per-trial totals split evenly over the trial's Train workers."""
    from ms2l_ray.jobs.spec import Resources

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    cpus = args.cpus_per_trial if args.cpus_per_trial is not None else float(args.workers)
    return Resources(args.workers, cpus / args.workers, args.gpus_per_trial / args.workers)


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """Config deltas for every trial: ``--set`` pairs, ``--dataset``, ``--seed``."""
    delta: dict[str, Any] = {}
    for item in args.overrides:
        delta = merge_deltas(delta, parse_override(item))
    if args.dataset is not None:  # absolute: trials run with the trial directory as working directory
        delta = merge_deltas(delta, {"data": {"dataset": absolute_path(args.dataset)}})
    if args.seed is not None:
        delta["seed"] = args.seed
    return absolute_dataset_delta(delta)


def _confirm(args: argparse.Namespace) -> Any:
    """``--confirm-top K --confirm-seeds S`` as a ConfirmSpec (None without --confirm-top); bad values → exit 2."""
    from ms2l_ray.studies.search.confirm import ConfirmSpec

    if args.confirm_top is None:
        if args.confirm_seeds is not None:
            raise ConfigError("--confirm-seeds needs --confirm-top K (how many of the best configurations to rerun)")
        return None
    seeds = 3 if args.confirm_seeds is None else args.confirm_seeds
    if args.confirm_top < 1 or seeds < 1:
        raise ConfigError(f"--confirm-top and --confirm-seeds must be >= 1, got {args.confirm_top} and {seeds}")
    return ConfirmSpec(args.confirm_top, seeds)


def _storage(args: argparse.Namespace) -> str | None:
    return absolute_path(args.storage_path)


def _tune(args: argparse.Namespace) -> int:
    from ms2l_ray.studies.search.tuner import SearchInterrupted

    try:
        return _run(args)
    except SearchInterrupted as exc:
        print(f"ms2l tune: {exc}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from ms2l_ray.studies.search.space import load_space, with_overrides
    from ms2l_ray.studies.search.tuner import resume_search, run_search

    t0 = time.perf_counter()
    confirm = _confirm(args)
    if args.name is not None:
        check_name("--name", args.name)
    if args.resume:
        if not args.name:
            raise ConfigError("--resume needs --name NAME (printed when the search started)")
        start_ray(args, Path("outputs") / args.name)
        result = resume_search(args.name, storage_path=_storage(args),
                               tracking_uri=args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), confirm=confirm,
                               verbose=1 if args.verbose else 0)
    else:
        overrides = {k: v for k, v in {"preset": args.preset, "num_samples": args.num_samples,
                                       "max_concurrent": args.max_concurrent, "seed": args.seed}.items()
                     if v is not None}
        space = with_overrides(load_space(args.space), **overrides)
        extra = _extra(args)
        dataset = space.base_config(extra).data.dataset  # fails on a bad --set before Ray starts
        if absolute_path(dataset) != dataset:  # a relative store named in the space file: the user's folder
            extra = merge_deltas(extra, {"data": {"dataset": absolute_path(dataset)}})
        resources = _resources(args)
        tracking = tracking_from_args(args)
        start_ray(args, Path("outputs") / (args.name or args.space.stem))
        result = run_search(space, name=args.name, storage_path=_storage(args), tracking=tracking,
                            resources=resources, extra=extra, max_failures=args.max_failures, confirm=confirm,
                            verbose=1 if args.verbose else 0)  # Tune's status tables: with the internals
    payload = result.to_json()
    payload["wall_time_s"] = time.perf_counter() - t0
    print(f"[tune] search {result.name} done in {payload['wall_time_s']:.0f}s"
          + (f"; MLflow parent run {result.parent_run_id}" if result.parent_run_id else ""))
    write_json(args.json_out, payload)
    return 0


def add_search_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("tune", help="Ray Tune + Optuna hyperparameter search (pretrain → linear eval per trial)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", type=Path, help="search space YAML (see search_spaces/)")
    p.add_argument("--name", default=None, help="search name (Tune experiment and MLflow parent run); "
                                                "default <space>-<timestamp>")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted search --name NAME (with the space and settings it recorded)")
    p.add_argument("--preset", default=None, help="override the space's config preset")
    p.add_argument("--dataset", default=None, help="'builtin' or an Arrow store from `ms2l data prepare`")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed config override for every trial (repeatable); searched keys are refused")
    p.add_argument("--seed", type=int, default=None, help="experiment seed of every trial and the sampler's seed")
    p.add_argument("--num-samples", type=int, default=None, help="trials (default: the space's num_samples)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: the space's, else cluster CPUs (GPUs) / per-trial need)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial job")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="CPUs each trial's TorchTrainer takes, split over --workers (default 1 per worker)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (> 0 trains on GPUs)")
    p.add_argument("--max-failures", type=int, default=2, help="worker failures each trial job recovers from")
    p.add_argument("--confirm-top", type=int, default=None, metavar="K",
                   help="after the search, rerun the K best configurations over fresh seeds and report mean ± std "
                        "(runs nested under the search's MLflow parent, tagged confirm=1)")
    p.add_argument("--confirm-seeds", type=int, default=None, metavar="S",
                   help="fresh seeds per confirmed configuration (seed+1 … seed+S; default 3)")
    p.add_argument("--json", dest="json_out", type=Path, default=None,
                   help="write best config, best objective and trial counts to this file")
    add_execution_options(p, engines=False, workers=False)
    p.set_defaults(func=_tune)
