"""``ms2l tune <search_space.yaml>``: Ray Tune + Optuna search over pretraining hyperparameters.

Each trial pretrains, then runs the space's evaluation (linear by default) and is ranked on its *validation*
top-1; ASHA cuts trials early on the pretraining KNN proxy. One MLflow parent run per search. A killed search
continues with ``ms2l tune <space> --resume --name <name>`` (the name is printed when it starts).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ms2l_ray.cli import options
from ms2l_ray.cli.common import absolute_dataset, absolute_dataset_delta, write_json
from ms2l_ray.cli.execution import start_ray, storage_from_args, tracking_from_args, trial_resources
from ms2l_ray.config import ConfigError, merge_deltas, parse_override
from ms2l_ray.names import check_name


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """Config deltas for every trial: ``--set`` pairs, ``--dataset``, ``--seed``."""
    delta: dict[str, Any] = {}
    for item in args.overrides:
        delta = merge_deltas(delta, parse_override(item))
    if args.dataset is not None:
        delta = merge_deltas(delta, {"data": {"dataset": args.dataset}})
    if args.seed is not None:
        delta["seed"] = args.seed
    return absolute_dataset_delta(delta)  # absolute: trials run with the trial directory as working directory


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


def _trial_count(args: argparse.Namespace) -> int | None:
    """``--num-samples`` or its budget spelling ``--max-trials`` (the same count; both given must agree)."""
    given = {v for v in (args.num_samples, args.max_trials) if v is not None}
    if len(given) > 1:
        raise ConfigError(f"--num-samples {args.num_samples} and --max-trials {args.max_trials}: give one (they set "
                          f"the same trial count)")
    n = given.pop() if given else None
    if n is not None and n < 1:
        raise ConfigError(f"--max-trials/--num-samples must be >= 1, got {n}")
    return n


def _tune(args: argparse.Namespace) -> int:
    """``ms2l tune``; an interrupted search raises ``SearchInterrupted``, exit 130 (:mod:`ms2l_ray.cli.errors`)."""
    from ms2l_ray.studies.budget import Budget
    from ms2l_ray.studies.search.space import load_space, with_overrides
    from ms2l_ray.studies.search.tuner import resume_search, run_search

    t0 = time.perf_counter()
    confirm = _confirm(args)
    budget = Budget.parse(args.time_budget)
    num_samples = _trial_count(args)
    if args.study_storage is not None:  # sqlite:///study.db means the user's folder, on resume too
        from ms2l_ray.tracking.store import absolute_store_uri

        args.study_storage = absolute_store_uri(args.study_storage)
    if args.name is not None:
        check_name("--name", args.name)
    resumed = options.resume_name(args, "search")
    if resumed is not None:
        if num_samples is not None or args.out is not None:  # before Ray starts: fail in a second
            raise ConfigError("--resume continues the search as recorded: --num-samples/--max-trials and --out "
                              "cannot change on resume")
        start_ray(args, Path("outputs") / resumed)
        result = resume_search(resumed, storage_path=storage_from_args(args),
                               tracking_uri=args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), confirm=confirm,
                               verbose=1 if args.verbose else 0, study_storage=args.study_storage, budget=budget)
    else:
        overrides = {k: v for k, v in {"preset": args.preset, "num_samples": num_samples,
                                       "max_concurrent": args.max_concurrent, "seed": args.seed}.items()
                     if v is not None}
        space = with_overrides(load_space(args.space), **overrides)
        extra = _extra(args)
        base = space.base_config(extra)  # fails on a bad --set before Ray starts
        if absolute_dataset(base) is not base:  # a relative store named in the space file: the user's folder
            extra = merge_deltas(extra, {"data": {"dataset": absolute_dataset(base).data.dataset}})
        resources = trial_resources(args)
        tracking = tracking_from_args(args)
        start_ray(args, Path("outputs") / (args.name or args.space.stem))
        result = run_search(space, name=args.name, storage_path=storage_from_args(args), tracking=tracking,
                            resources=resources, extra=extra, max_failures=args.max_failures, confirm=confirm,
                            verbose=1 if args.verbose else 0,  # Tune's status tables: with the internals
                            out=args.out, study_storage=args.study_storage, budget=budget)
    payload = result.to_json()
    payload["wall_time_s"] = time.perf_counter() - t0
    print(f"[tune] search {result.name} done in {payload['wall_time_s']:.0f}s"
          + (f"; MLflow parent run {result.parent_run_id}" if result.parent_run_id else ""))
    write_json(args.json_out, payload)
    return 0


def add_search_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``ms2l tune`` (a Ray Tune + Optuna search, pretrain → linear eval per trial) on ``sub``."""
    p = sub.add_parser("tune", help="Ray Tune + Optuna hyperparameter search (pretrain → linear eval per trial)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", type=Path, help="search space YAML (see search_spaces/)")
    options.add_name_and_resume(p, name_help="search name (Tune experiment and MLflow parent run); default "
                                             "<space>-<timestamp>",
                        resume_help="continue the interrupted search --name NAME (with the space and settings it "
                                    "recorded)")
    options.add_study_config_options(p, "space", set_help="fixed config override for every trial (repeatable); "
                                                          "searched keys are refused",
                             seed_help="experiment seed of every trial and the sampler's seed")
    p.add_argument("--num-samples", type=int, default=None, help="trials (default: the space's num_samples)")
    p.add_argument("--max-trials", type=int, default=None, metavar="N",
                   help="the trial budget: at most N trials (the same count as --num-samples)")
    p.add_argument("--time-budget", default=None, metavar="DURATION",
                   help="wall-clock budget, e.g. 90m or 2h: when it is spent, running trials stop, finished ones are "
                        "kept, and --resume continues the rest (a resume may give a new budget)")
    p.add_argument("--study-storage", default=None, metavar="URL",
                   help="database of the Optuna study, reachable from wherever the search resumes (e.g. "
                        "postgresql://host/db); default SQLite in the search's local folder")
    p.add_argument("--out", type=Path, default=None,
                   help="local folder for the trials' outputs and the summary (default: the search's storage folder; "
                        "outputs/NAME when --storage-path is a URI)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: the space's, else cluster CPUs (GPUs) / per-trial need)")
    options.add_trial_resource_options(p, "trial job", options.TUNE_CPUS_PER_TRIAL,
                               "CPUs each trial's TorchTrainer takes, split over --workers (default 1 per worker)")
    p.add_argument("--confirm-top", type=int, default=None, metavar="K",
                   help="after the search, rerun the K best configurations over fresh seeds and report mean ± std "
                        "(runs nested under the search's MLflow parent, tagged confirm=1)")
    p.add_argument("--confirm-seeds", type=int, default=None, metavar="S",
                   help="fresh seeds per confirmed configuration (seed+1 … seed+S; default 3)")
    options.add_json(p, "write best config, best objective and trial counts to this file")
    options.add_execution_options(p, engines=False, workers=False)
    p.set_defaults(func=_tune)
