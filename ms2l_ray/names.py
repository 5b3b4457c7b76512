"""The one rule for names that become paths, unique default names, and user paths made absolute.

Why: run, search, ablation, cell and experiment names are joined into folders (``<storage>/<name>/``,
``outputs/<name>``, ``reports/<name>``). A name such as ``..`` or ``a/b`` would read or write outside those
folders (a planted ``ms2l_ablation.json`` taken over on ``--resume``), so every such name passes
:func:`check_name` first. Default names carry a random suffix so two launches in the same second never share
a Ray Train run (which would silently resume the other's checkpoint). Paths a user types are made absolute
in the user's shell by :func:`absolute_path`, because Ray workers run in another working directory.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from ms2l_ray.config import ConfigError

NAME_MAX_LEN = 100
# The rule as one regex too, for validators that only match (grid cell names): not '.'/'..', no leading '.'.
NAME_PATTERN = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9_.-]{{0,{NAME_MAX_LEN - 1}}}")
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # two characters at least: ``C:`` is a drive, not a scheme
NOT_PATHS = ("builtin", "random", "-")  # values that a path option takes as a keyword, not a file


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a safe path component, else :class:`~ms2l_ray.config.ConfigError` naming ``kind``.

    Safe: 1 to :data:`NAME_MAX_LEN` characters of letters, digits, ``_``, ``.``, ``-``; no path separator;
    not ``.``/``..`` and not starting with ``.`` (hidden, and where temporary files live).
    """
    if not isinstance(value, str):
        raise ConfigError(f"{kind}: must be a string, got {value!r}")
    if not value:
        raise ConfigError(f"{kind}: must not be empty")
    if len(value) > NAME_MAX_LEN:
        raise ConfigError(f"{kind}: at most {NAME_MAX_LEN} characters, got {len(value)} ({value[:20]!r}...)")
    if not _NAME.fullmatch(value):
        raise ConfigError(f"{kind}: letters, digits, '_', '.', '-' only, not starting with '.', and no path "
                          f"separators, got {value!r}")
    return value


def unique_stamp() -> str:
    """``<YYYYmmdd-HHMMSS>-<6 hex>``: sortable by time, distinct for launches in the same second."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def unique_name(prefix: str) -> str:
    """``<prefix>-<unique_stamp()>``, checked (a prefix from a file may already be at the length bound)."""
    return check_name("name", f"{prefix[:NAME_MAX_LEN - 23]}-{unique_stamp()}")


def is_uri(value: str) -> bool:
    """``s3://…``, ``runs:/…``, ``models:/…``, ``file:///…``: anything with a scheme is not a local path."""
    return bool(_URI_SCHEME.match(value))


def absolute_path(value: str | Path | None) -> str | None:
    """A local path made absolute against the current directory (``~`` expanded); URIs and keywords as given.

    The one "absolute unless URI" rule for every path a user gives (``--dataset``, ``--encoder``, ``--out``,
    ``--storage-path``, config and experiment files), applied in the user's shell before anything reaches
    a Ray worker. Symlinks are *not* resolved: a symlink given as an output stays the symlink (replacing it
    must not write through it), and ``..`` keeps the meaning the kernel gives it.
    """
    if value is None:
        return None
    text = str(value)
    if text in NOT_PATHS or is_uri(text):
        return text
    return str(Path(text).expanduser().absolute())
