"""A search's time budget inside Tune: end the search the way Ctrl-C does, so it stays resumable.

Tune calls :class:`BudgetWatch` at the start of every controller step, on the driver. When the armed budget
(:mod:`ms2l_ray.studies.budget`) is spent it sends the driver ``SIGUSR1``, which Tune handles exactly like
Ctrl-C: the loop ends after this step, the experiment state is saved with the running trials still RUNNING and
the queued ones PENDING, and the trial actors are stopped. ``ms2l tune --resume`` then continues those trials
(each restores its Train checkpoint), whereas Tune's own ``time_budget_s`` would close the searcher for good.
Where no Tune handler is installed (Tune driven from a non-main thread, where ``SIGUSR1`` would kill the
process) the budget falls back to :class:`BudgetStopper`, which ends the search but not resumably.

The budget lives in this driver process, armed per search name (:func:`arm`): Tune pickles its callbacks and
stopper into the experiment state, so they carry only the name, and a resumed search gets the budget of the
command that resumed it (or none).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from ms2l_ray.console import say
from ms2l_ray.studies.budget import Budget

_ARMED: dict[str, Budget] = {}


def arm(search: str, budget: Budget | None) -> Budget | None:
    """Start ``budget`` for ``search`` in this process (None disarms); returns it."""
    if budget is None:
        _ARMED.pop(search, None)
        return None
    _ARMED[search] = budget.start()
    return budget


def armed(search: str) -> Budget | None:
    """The budget armed for ``search`` here, if any."""
    return _ARMED.get(search)


def fired(search: str) -> bool:
    """Did the budget of ``search`` end it?"""
    b = _ARMED.get(search)
    return b is not None and b.fired


def _tune_handles_sigusr1() -> bool:
    handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    return callable(handler)  # Tune's handler; SIG_DFL (terminate) and SIG_IGN are ints


class BudgetWatch(Callback):  # type: ignore[misc]
    """Driver-side: at the first step after the budget is spent, stop the search resumably (see the module doc)."""

    def __init__(self, search: str) -> None:
        self.search = search

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Fire once when the armed budget has expired: say so, then hand Tune its graceful-stop signal."""
        budget = _ARMED.get(self.search)
        if budget is None or budget.fired or not budget.expired():
            return
        budget.fired = True
        running = sum(t.status == "RUNNING" for t in trials)
        say(f"[tune] {budget.describe()} spent: stopping {running} running trial(s); finished trials are kept")
        if _tune_handles_sigusr1():
            os.kill(os.getpid(), signal.SIGUSR1)
        else:
            budget.notes.append("Tune ran outside the main thread: the budget ended the search for good "
                                "(its unfinished trials cannot be resumed)")


class BudgetStopper(Stopper):  # type: ignore[misc]
    """The fallback: ``stop_all`` once the watch fired and could not signal Tune (not resumable)."""

    def __init__(self, search: str) -> None:
        self.search = search

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Never stop a single trial: the budget ends the whole search or nothing."""
        return False

    def stop_all(self) -> bool:
        """True when the budget fired without Tune's signal handler (see :class:`BudgetWatch`)."""
        budget = _ARMED.get(self.search)
        return budget is not None and budget.fired and bool(budget.notes)
