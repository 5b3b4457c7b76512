"""One exit-code policy and one error format for every ``ms2l`` command.

Why: scripts branch on the exit code, and a user facing bad input needs the file, field and value, not a
traceback. :func:`exit_code` alone decides the code of an error (its table is :func:`policy`); every command
reaches it through :func:`report_error` — :func:`ms2l_ray.cli.main.main` for all of them, and the ``data``
handlers themselves, so they keep returning a code when called without ``main``. Policy:

* ``2`` — the command could not start with what it was given (usage or configuration): a bad flag or
  config value (:class:`~ms2l_ray.config.ConfigError`, which names, refused overwrites and argparse errors
  are), a file or folder named on the command line that does not exist, an unusable tracking URI.
* ``1`` — the command ran and failed on data or at run time: a malformed dataset file
  (:class:`~ms2l_ray.data.errors.DataFormatError`), a failed training job (a non-finite loss:
  :class:`~ms2l_ray.train.errors.TrainingError`), an I/O error.
* ``130`` — interrupted (Ctrl-C), including a search Tune stopped early
  (:class:`~ms2l_ray.studies.search.tuner.SearchInterrupted`, a ``KeyboardInterrupt``: its message says how
  to continue it).
* ``0`` / ``1`` returned, not raised — a command that ran to its end: ``ms2l ablate`` returns 1 when some
  cell-seeds failed (the others' table is still written).

Errors are printed as one ``ms2l <command>: error: <message>`` block without a traceback; ``--debug`` (or
``MS2L_DEBUG=1``) prints the traceback too. Errors raised inside Ray workers arrive wrapped (their text
carries the worker's traceback): the original exception is unwrapped first, so they follow the same policy.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TextIO

from ms2l_ray.redact import redact_text

USAGE = 2
FAILURE = 1
INTERRUPTED = 130


def _inner(exc: BaseException) -> BaseException | None:
    """The exception a Ray wrapper carries.

    That is ``RayTaskError.cause``, ``ControllerError.controller_failure``, the lowest rank of
    ``WorkerGroupError.worker_failures``, else the chained ``__cause__``.
    """
    for attr in ("cause", "controller_failure"):
        inner = getattr(exc, attr, None)
        if isinstance(inner, BaseException):
            return inner
    failures = getattr(exc, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        first = failures[min(failures)]
        if isinstance(first, BaseException):
            return first
    return exc.__cause__


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind Ray's wrappers (Train's ``WorkerGroupError``, core's ``RayTaskError``)."""
    seen = {id(exc)}
    while _is_wrapper(exc):
        inner = _inner(exc)
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner
    return exc


def _is_wrapper(exc: BaseException) -> bool:
    """Ray's transport exceptions, whose own text is a remote traceback rather than a message."""
    module = type(exc).__module__ or ""
    return module.startswith("ray.") or type(exc).__name__ in ("RayTaskError", "TrainingFailedError")


def policy() -> tuple[tuple[tuple[type[BaseException], ...], int], ...]:
    """The policy as a table: ``(error types, exit code)`` rows, the first matching row decides.

    Built on call so that importing the CLI loads none of the data, tracking or config modules early.
    Not in the table: a plain ``ValueError`` (exactly that type: an argument check such as ``--workers must
    be >= 1``) is usage; anything else is a run-time failure (see :func:`exit_code`).
    """
    from ms2l_ray.config import ConfigError
    from ms2l_ray.data.errors import DataFormatError
    from ms2l_ray.tracking.store import TrackingError

    return (
        ((KeyboardInterrupt,), INTERRUPTED),
        ((DataFormatError,), FAILURE),  # before the ValueError family it belongs to: bad data, not bad usage
        ((ConfigError, TrackingError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError),
         USAGE),
    )


def exit_code(exc: BaseException) -> int:
    """The exit code of :mod:`this policy <ms2l_ray.cli.errors>` for ``exc`` (after unwrapping)."""
    exc = root_cause(exc)
    for types, code in policy():
        if isinstance(exc, types):
            return code
    if type(exc) is ValueError:  # plain ValueErrors are argument checks (--workers must be >= 1, ...)
        return USAGE
    return FAILURE


def message(exc: BaseException) -> str:
    """The error's own text, credentials redacted, cut before any remote traceback; typed when not ours."""
    from ms2l_ray.config import ConfigError
    from ms2l_ray.data.errors import DataFormatError
    from ms2l_ray.tracking.store import TrackingError
    from ms2l_ray.train.errors import TrainingError

    exc = root_cause(exc)
    lines = []
    for line in str(exc).splitlines():
        if line.lstrip().startswith("Traceback (most recent call last)"):
            break
        lines.append(line)
    text = redact_text("\n".join(lines).strip())
    if not text:
        return type(exc).__name__
    ours = (ConfigError, DataFormatError, TrackingError, TrainingError, FileNotFoundError, FileExistsError)
    return text if isinstance(exc, ours) or type(exc) is ValueError else f"{type(exc).__name__}: {text}"


def debug_enabled(flag: bool | None = None) -> bool:
    """``--debug`` given, or ``MS2L_DEBUG`` set to anything but ``0``: show tracebacks."""
    return bool(flag) or os.environ.get("MS2L_DEBUG", "") not in ("", "0")


def report_error(prog: str, exc: BaseException, *, debug: bool | None = None, stream: TextIO | None = None) -> int:
    """Print ``exc`` under the policy and return its exit code; the traceback only with ``--debug``."""
    out = stream or sys.stderr
    if debug_enabled(debug):
        traceback.print_exception(exc, file=out)
    code = exit_code(exc)
    if code == INTERRUPTED:  # a bare Ctrl-C says nothing; a stopped search says how to continue it
        text = redact_text(str(root_cause(exc)).strip())
        print(f"{prog}: {text or 'interrupted'}", file=out)
        return code
    hint = "" if debug_enabled(debug) or code == USAGE else " (--debug shows the traceback)"
    print(f"{prog}: error: {message(exc)}{hint}", file=out)
    return code
