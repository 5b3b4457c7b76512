"""The ``ms2l`` command: assembles the command groups and turns errors into one message and an exit code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ms2l_ray.cli.ablate_cmds import add_ablate_commands
from ms2l_ray.cli.data_cmds import add_data_commands
from ms2l_ray.cli.errors import report_error
from ms2l_ray.cli.report_cmds import add_report_commands
from ms2l_ray.cli.search_cmds import add_search_commands
from ms2l_ray.cli.train_cmds import add_train_commands
from ms2l_ray.names import absolute_path

# Options whose values are local paths (or URIs / keywords, left as given): made absolute before dispatch.
PATH_OPTIONS = ("dataset", "encoder", "out", "config", "storage_path", "experiment_file", "grid", "space",
                "json_out", "source")
DEBUG_HELP = "show the traceback of an error (also MS2L_DEBUG=1)"


def _add_debug(parser: argparse.ArgumentParser, top: bool) -> None:
    """``--debug`` before or after the command; a subcommand's copy leaves the top-level value alone."""
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS, help=DEBUG_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_debug(child, top=False)


def build_parser() -> argparse.ArgumentParser:
    """The ``ms2l`` parser with every command group and the ``--debug`` flags; :func:`main` parses with it."""
    parser = argparse.ArgumentParser(prog="ms2l", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_commands(sub)
    add_search_commands(sub)
    add_ablate_commands(sub)
    add_report_commands(sub)
    add_data_commands(sub)
    _add_debug(parser, top=True)
    return parser


def absolute_args(args: argparse.Namespace) -> argparse.Namespace:
    """Every path option made absolute in the user's shell (Ray workers run in another working directory).

    The values keep their type (``Path`` options stay ``Path``); ``builtin``, ``random``, ``-`` and URIs
    (``s3://``, ``runs:/``) stay as given. ``data prepare``'s positional source is included (``-`` kept).
    """
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if value is None or (name == "source" and getattr(args, "command", None) != "data"):
            continue
        resolved = absolute_path(value)
        setattr(args, name, Path(resolved) if isinstance(value, Path) and resolved is not None else resolved)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become one message and an exit code (:mod:`ms2l_ray.cli.errors`)."""
    from ms2l_ray.cli.execution import console_scope

    args = build_parser().parse_args(argv)
    try:
        with console_scope():  # the console session a command opens ends here: Ray's printing back, log closed
            return int(args.func(absolute_args(args)))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one exit-code policy for every command
        return report_error(f"ms2l {args.command}", exc, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
