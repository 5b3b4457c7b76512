"""The ``ms2l`` command: assembles the command groups and turns known errors into clean exits."""

from __future__ import annotations

import argparse
import sys

from ms2l_ray.cli_data import add_data_commands
from ms2l_ray.commands.ablate_cmds import add_ablate_commands
from ms2l_ray.commands.search_cmds import add_search_commands
from ms2l_ray.commands.train_cmds import add_train_commands
from ms2l_ray.config import ConfigError
from ms2l_ray.tracking.store import TrackingError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ms2l", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_commands(sub)
    add_search_commands(sub)
    add_ablate_commands(sub)
    add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, TrackingError, FileNotFoundError, ValueError) as exc:
        print(f"ms2l {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
