"""``ms2l ablate <grid.yaml>``: an ablation grid (cells × seeds) and its mean ± std table.

``ms2l report`` lives in :mod:`ms2l_ray.cli.report_cmds`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ms2l_ray.cli.common import absolute_dataset_delta, write_json
from ms2l_ray.cli.execution import start_ray, storage_from_args, tracking_from_args, trial_resources
from ms2l_ray.cli.options import (
    ABLATE_CPUS_PER_TRIAL,
    add_execution_options,
    add_json,
    add_name_and_resume,
    add_study_config_options,
    add_trial_resource_options,
    resume_name,
)
from ms2l_ray.config import ConfigError
from ms2l_ray.names import check_name, unique_name


def _setup(args: argparse.Namespace) -> tuple[Any, str, Any, Any]:
    """Grid, name, tracking and execution from the flags — every check that needs no Ray runs here."""
    from ms2l_ray.jobs.driver import default_storage_path
    from ms2l_ray.jobs.tracked import Execution, Tracking
    from ms2l_ray.studies.ablation.grid import load_grid
    from ms2l_ray.studies.ablation.runner import read_ablation_record, record_location
    from ms2l_ray.tracking.store import restore_uri

    if args.no_tracking:
        raise ConfigError("ablate builds its table from MLflow runs; drop --no-tracking")
    resumed = resume_name(args, "ablation")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
    grid = load_grid(args.grid, preset=args.preset, overrides=args.overrides, dataset=args.dataset,
                     num_samples=args.num_samples)  # --dataset is absolute already (cli.main.absolute_args)
    for delta in (grid.config, grid.overrides, *(c.delta for c in (*grid.cells, *grid.baselines))):
        absolute_dataset_delta(delta)  # a relative store in the grid file or --set means the user's folder
    storage = storage_from_args(args)
    name = resumed or (check_name("--name", args.name) if args.name else unique_name(grid.name))
    tracking = tracking_from_args(args)
    record = read_ablation_record(storage or default_storage_path(), name)
    if record is not None and not args.resume:  # before Ray starts: fail in a second, not after a minute
        raise ConfigError(f"an ablation named {name!r} already exists "
                          f"({record_location(storage or default_storage_path(), name)}); pass --resume to "
                          f"continue it, or another --name")
    if args.resume and args.tracking_uri is None and record is not None:  # the recorded store unless the user names one
        uri = restore_uri(record["tracking_uri"], os.environ.get("MLFLOW_TRACKING_URI"), f"ablation {name!r}")
        tracking = Tracking(uri, record["experiment"])
    return grid, name, tracking, Execution(resources=trial_resources(args), storage_path=storage,
                                           max_failures=args.max_failures)


def _ablate(args: argparse.Namespace) -> int:
    from ms2l_ray.report.build import describe_time_split
    from ms2l_ray.studies.ablation.runner import run_ablation
    from ms2l_ray.studies.budget import Budget

    budget = Budget.parse(args.time_budget)
    grid, name, tracking, execution = _setup(args)
    out_dir = args.out or Path("outputs") / name
    start_ray(args, out_dir)
    print(f"[ablate] ablation name {name} (continue an interrupted run with --resume --name {name})", flush=True)
    result = run_ablation(grid, name=name, tracking=tracking, execution=execution, out_dir=out_dir, resume=args.resume,
                          max_concurrent=args.max_concurrent, budget=budget)
    print()
    print(result.table.to_markdown())
    ended = (f"; ended by the {budget.describe()} ({len(result.budget_stopped)} stopped, {len(result.not_started)} "
             f"not started: --resume --name {name} runs them)" if budget is not None and result.ended_by_budget else "")
    print(f"[ablate] {len(result.ran)} cell-seeds run, {len(result.skipped)} already finished, "
          f"{len(result.failed)} failed{ended}; wall time {result.wall_time_s:.0f}s; table in {result.out_dir}; "
          f"parent run {result.parent_run_id} (ms2l report {result.parent_run_id})")
    split = _time_split(tracking.uri, result.parent_run_id)
    if split:
        print(f"[ablate] {describe_time_split(split)}")
    write_json(args.json_out, {"name": name, "parent_run_id": result.parent_run_id, "columns": result.table.columns,
                               "rows": result.table.records(), "wall_time_s": result.wall_time_s,
                               "failed": [list(f) for f in result.failed], "time_split": split,
                               "ended_by": "time_budget" if result.ended_by_budget else None,
                               "budget_stopped": [list(c) for c in result.budget_stopped],
                               "not_started": [list(c) for c in result.not_started]})
    return 1 if result.failed else 0


def _time_split(uri: str, run_id: str) -> dict[str, float]:
    from ms2l_ray.report.build import time_split
    from ms2l_ray.tracking.query import get_run

    return time_split(uri, get_run(uri, run_id))


def add_ablate_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``ms2l ablate`` (an ablation grid of cells × seeds, summarised as mean ± std) on ``sub``."""
    a = sub.add_parser("ablate", help="run an ablation grid (cells × seeds) and print its mean ± std table")
    a.add_argument("grid", type=Path, help="ablation grid YAML (see ablations/)")
    add_study_config_options(a, "grid", set_help="config override applied to every cell (repeatable)", seed_help=None)
    a.add_argument("--num-samples", type=int, default=None, metavar="N",
                   help="seeds per cell: use seeds 0..N-1 instead of the grid's seeds list")
    a.add_argument("--max-concurrent", type=int, default=None,
                   help="cell-seeds run at once as Ray tasks (default: the grid's max_concurrent, else 1)")
    add_trial_resource_options(a, "cell-seed job", ABLATE_CPUS_PER_TRIAL,
                               "CPUs per cell-seed job, split over --workers (default: %(default)s)")
    add_name_and_resume(a, name_help="ablation name (default <grid name>-<time>); the key for --resume",
                        resume_help="continue the ablation --name: run only cell-seeds without a FINISHED run")
    a.add_argument("--out", type=Path, default=None, help="local folder for table.md/table.csv (default outputs/NAME)")
    a.add_argument("--time-budget", default=None, metavar="DURATION",
                   help="wall-clock budget, e.g. 90m or 2h: when it is spent, running cell-seeds stop, the table is "
                        "built from the finished ones, and --resume runs the rest")
    add_json(a, "write the table rows to this file")
    add_execution_options(a, engines=False, workers=False)
    a.set_defaults(func=_ablate)
