"""Errors that no retry can fix: a worker reports them once instead of letting Ray Train retry the job.

Why: Ray Train restarts a failed worker group up to ``FailureConfig.max_failures`` times, whatever failed — right
for a lost node, wasted for a bad dataset file, an invalid config or a non-finite loss, which fail the same way
on every attempt (about three minutes of restarts before the user saw the message, issue 14). Those errors
arise on every rank alike (data and config are read by each rank; the non-finite guard all-reduces its
verdict), so each worker stops cleanly, rank 0 writes the error to the stage's folder as JSON (type name and
message, never a pickle), and the driver raises the same error type with the same message.
"""

from __future__ import annotations

import json
from pathlib import Path

from ms2l_ray.config import ConfigError
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.train.errors import NonFiniteLossError, TrainingError

FATAL_FILE = "error.json"
FATAL_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    DataFormatError, ConfigError, NonFiniteLossError, TrainingError)}


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` fails the same way on every attempt (one of :data:`FATAL_ERRORS`, or a subclass)."""
    return isinstance(exc, tuple(FATAL_ERRORS.values()))


def write_fatal(out_dir: str | Path, exc: BaseException) -> None:
    """Record ``exc`` in ``out_dir`` as the nearest :data:`FATAL_ERRORS` type and its message."""
    name = next(n for n, cls in FATAL_ERRORS.items() if isinstance(exc, cls))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / FATAL_FILE).write_text(json.dumps({"type": name, "message": str(exc)}))


def raise_if_fatal(out_dir: str | Path) -> None:
    """Raise the error a worker recorded in ``out_dir``, if any (same type, same message)."""
    path = Path(out_dir) / FATAL_FILE
    if not path.exists():
        return
    record = json.loads(path.read_text())
    cls = FATAL_ERRORS.get(record.get("type"), TrainingError)
    message = str(record.get("message", ""))
    raise cls.from_message(message) if cls is DataFormatError else cls(message)  # type: ignore[attr-defined]
