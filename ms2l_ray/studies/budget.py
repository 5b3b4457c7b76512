"""Wall-clock budgets for searches and ablations (``--time-budget 2h``): parsed once, checked by the drivers.

Why our own and not Tune's ``time_budget_s``: Tune's stopper ends an experiment through ``set_finished``, which
closes the searcher for good (the search can never be resumed), and a trial whose last report arrives as the
budget expires loses that report. Here a budget ends a search the way Ctrl-C does — Tune saves its state and the
unfinished trials stay resumable (:mod:`ms2l_ray.studies.search.budget`) — and a trial that finished is read back
from its own MLflow run, so no finished result is lost. An ablation stops its running cell-seeds and starts no
new ones; ``--resume`` runs the rest.

A budget is wall time from the moment the driver arms it (after Ray is up and the parent run exists), so
start-up is not counted against it. ``clock`` is injectable: tests end a budget at a chosen point of a run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ms2l_ray.config import ConfigError

_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"(?:{_NUM}d)?(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s?)?")  # units in order; a bare number: s
_UNIT_S = (86400.0, 3600.0, 60.0, 1.0)
MAX_BUDGET_S = 366 * 86400.0  # a year: beyond it a typo (2000h) is likelier than an intent


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """``"90"``/``"90s"`` → 90, ``"45m"`` → 2700, ``"2h"`` → 7200, ``"1h30m"`` → 5400, ``"1.5h"`` → 5400.

    Anything else (empty, zero, negative, units out of order or unknown, more than a year) is a
    :class:`ConfigError` naming the option and the value.
    """
    s = str(text).strip().lower().replace(" ", "")
    m = _DURATION.fullmatch(s)
    if not s or m is None:
        raise ConfigError(f"{option} {text!r}: expected a duration such as 90s, 45m, 2h or 1h30m")
    total = sum(float(v) * unit for v, unit in zip(m.groups(), _UNIT_S, strict=True) if v is not None)
    if not 0 < total <= MAX_BUDGET_S:
        raise ConfigError(f"{option} {text!r}: must be more than 0 s and at most {MAX_BUDGET_S / 86400:.0f} days")
    return total


def format_duration(seconds: float) -> str:
    """``5400`` → ``1h30m``, ``90`` → ``1m30s``, ``42.5`` → ``42s``: how budgets and elapsed times are printed."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec or not (h or m) else "")


@dataclass
class Budget:
    """A wall-clock budget: ``seconds`` from :meth:`start`; :meth:`expired` once they are spent."""

    seconds: float
    label: str = ""  # as the user wrote it (``2h``), for messages and the parent run's ``time_budget`` tag
    clock: Callable[[], float] = time.monotonic
    started: float | None = None
    wall_started: float | None = None  # time.monotonic() at start, whatever ``clock`` is: for "ended after …"
    fired: bool = False  # set by the driver that acted on the expiry (once)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None, option: str = "--time-budget") -> Budget | None:
        """The budget ``--time-budget text`` asks for; None without one."""
        if text is None:
            return None
        return cls(parse_duration(text, option), label=str(text).strip())

    def start(self) -> Budget:
        """Start the clock (idempotent: a driver that arms twice keeps the first start)."""
        if self.started is None:
            self.started, self.wall_started = self.clock(), time.monotonic()
        return self

    def wall_elapsed(self) -> float:
        """Real seconds since :meth:`start` (what a person is told the run took)."""
        return 0.0 if self.wall_started is None else time.monotonic() - self.wall_started

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (0 before it)."""
        return 0.0 if self.started is None else self.clock() - self.started

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self.seconds - self.elapsed())

    def expired(self) -> bool:
        """True once the budget is spent (never before :meth:`start`)."""
        return self.started is not None and self.elapsed() >= self.seconds

    @property
    def shown(self) -> str:
        """The budget as the user wrote it (``2h``), else formatted: what messages and the parent run's tag show."""
        return self.label or format_duration(self.seconds)

    def describe(self) -> str:
        """``time budget 2h``."""
        return f"time budget {self.shown}"
