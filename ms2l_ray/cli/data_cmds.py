"""``ms2l data prepare`` and ``ms2l data info``: the dataset commands, registered on the main CLI's subparsers.

Handlers return an exit code instead of raising, so a bad file ends the command with its file and line
on stderr, not a traceback, under the one policy of :mod:`ms2l_ray.cli.errors` (1: bad data,
2: bad arguments, a missing source, a refused OUT); an unknown format is refused by argparse with the known
ones listed. ``prepare`` never writes over its source, nor over an existing OUT without ``--force``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ms2l_ray.cli.errors import report_error
from ms2l_ray.config import ConfigError


def add_data_commands(subparsers: Any) -> None:
    """Register ``data prepare`` and ``data info`` on an ``argparse`` subparsers object."""
    from ms2l_ray.data.prepare import FORMATS

    data = subparsers.add_parser("data", help="convert datasets into Arrow stores and inspect them")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{prepare,info}")

    prep = sub.add_parser("prepare", help="convert a dataset into an Arrow store",
                          description="Convert a dataset into a memory-mapped Arrow store. Formats: "
                                      + ", ".join(FORMATS) + ". For 'builtin' the source is ignored (use '-').")
    prep.add_argument("format", choices=FORMATS, help="source format")
    prep.add_argument("source", help="dataset directory or file ('-' for builtin)")
    prep.add_argument("out", help="store file to write (e.g. ntu60.arrow)")
    prep.add_argument("--force", action="store_true",
                      help="replace an existing file or symlink at OUT (never the source)")
    prep.add_argument("--skip-bad", action="store_true", help="skip and report bad files instead of stopping")
    prep.add_argument("--no-denoise", action="store_true", help="raw NTU: keep the first two bodies as they are")
    prep.add_argument("--no-center", action="store_true", help="do not centre on the centre joint")
    prep.add_argument("--no-align", action="store_true", help="do not rotate the hip axis onto x")
    prep.add_argument("--scale-normalize", action="store_true", help="divide by the mean spine length")
    prep.add_argument("--resample", type=int, default=None, metavar="N", help="resample every sequence to N frames")
    prep.add_argument("--missing-list", action="append", default=[], metavar="FILE",
                      help="ntu: a published missing-skeleton list (repeatable; *missing*.txt beside the files "
                           "are used too)")
    prep.add_argument("--num-sequences", type=int, default=1000, metavar="N", help="builtin: number of sequences")
    prep.add_argument("--seed", type=int, default=0, metavar="S", help="builtin: generator seed")
    prep.set_defaults(func=run_prepare)

    inf = sub.add_parser("info", help="summarise an Arrow store")
    inf.add_argument("store", help="store file")
    inf.set_defaults(func=run_info)


def run_prepare(args: argparse.Namespace) -> int:
    """Handler of ``data prepare``."""
    from ms2l_ray.data.prepare import prepare
    from ms2l_ray.data.preprocess import PreprocessConfig

    try:
        if args.resample is not None and args.resample < 1:
            raise ConfigError(f"--resample must be >= 1, got {args.resample}")
        config = PreprocessConfig(denoise=not args.no_denoise, center=not args.no_center, align=not args.no_align,
                                  scale_normalize=args.scale_normalize, resample=args.resample)
        report = prepare(args.format, args.source, args.out, skip_bad=args.skip_bad, preprocess=config,
                         num_sequences=args.num_sequences, seed=args.seed, missing_lists=args.missing_list,
                         force=args.force)
    except Exception as e:  # noqa: BLE001 - every error goes through the one exit-code policy
        return report_error("ms2l data prepare", e, debug=getattr(args, "debug", False))
    print(report.summary())
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Handler of ``data info``."""
    from ms2l_ray.data.prepare import info

    try:
        print(info(args.store))
    except Exception as e:  # noqa: BLE001 - every error goes through the one exit-code policy
        return report_error("ms2l data info", e, debug=getattr(args, "debug", False))
    return 0
