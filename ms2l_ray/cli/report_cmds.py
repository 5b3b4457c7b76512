"""``ms2l report <parent-run-id | experiment-name>``: Markdown + HTML report of an ablation, search or experiment.

Its own module because it runs no job: it only reads the MLflow store (:mod:`ms2l_ray.report`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ms2l_ray.cli.options import add_tracking_options


def _report(args: argparse.Namespace) -> int:
    from ms2l_ray.report.build import build_report
    from ms2l_ray.tracking.store import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_reachable(uri)
    paths = build_report(args.target, tracking_uri=uri, out_dir=args.out, attach_to_runs=not args.no_attach,
                         top_k=args.top_k)
    for p in paths:
        print(f"[report] wrote {p}")
    return 0


def add_report_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``ms2l report`` on the main parser's subcommands."""
    r = sub.add_parser("report", help="Markdown + HTML report (tables, plots) of an ablation, search or experiment")
    r.add_argument("target", help="a parent run id, or an experiment name (reports its ablation/search parents)")
    r.add_argument("--out", type=Path, default=None, help="local folder for the report (default reports/<target>)")
    add_tracking_options(r)
    r.add_argument("--top-k", type=int, default=10, help="best trials drawn in the parallel-coordinates plot")
    r.add_argument("--no-attach", action="store_true", help="do not log the report as artifacts of the parent run")
    r.set_defaults(func=_report)
