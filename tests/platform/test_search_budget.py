"""The search budget's Tune hooks without a search: the watch fires once, through Tune's graceful-stop signal."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType, SimpleNamespace

import pytest

from ms2l_ray.studies.budget import Budget
from ms2l_ray.studies.search import budget as search_budget


@pytest.fixture
def clock() -> Iterator[list[float]]:
    now = [0.0]
    yield now
    search_budget.arm("s", None)


def _trials(*statuses: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(status=s, trial_id=f"t{i}") for i, s in enumerate(statuses)]


def test_the_watch_signals_tune_once_when_the_budget_is_spent(clock: list[float]) -> None:
    got: list[int] = []

    def handler(sig: int, frame: FrameType | None) -> None:  # stands in for Tune's SIGUSR1 handler
        got.append(sig)

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        search_budget.arm("s", Budget(10.0, "10s", clock=lambda: clock[0]))
        watch, stopper = search_budget.BudgetWatch("s"), search_budget.BudgetStopper("s")
        watch.on_step_begin(1, _trials("RUNNING", "PENDING"))
        assert got == [] and not search_budget.fired("s")
        clock[0] = 10.0
        watch.on_step_begin(2, _trials("RUNNING", "PENDING"))
        watch.on_step_begin(3, _trials("RUNNING", "PENDING"))  # fires once only
        assert got == [signal.SIGUSR1] and search_budget.fired("s")
        assert not stopper.stop_all() and not stopper("t0", {})  # Tune's own stop did it: no fallback
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_without_tunes_handler_the_stopper_ends_the_search_instead(clock: list[float]) -> None:
    old = signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # SIGUSR1 would now terminate the process
    try:
        search_budget.arm("s", Budget(10.0, clock=lambda: clock[0]))
        stopper = search_budget.BudgetStopper("s")
        clock[0] = 11.0
        search_budget.BudgetWatch("s").on_step_begin(1, _trials("RUNNING"))  # still alive: no signal was sent
        assert stopper.stop_all() and "cannot be resumed" in search_budget.armed("s").notes[0]  # type: ignore[union-attr]
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_no_budget_armed_never_stops() -> None:
    search_budget.arm("other", None)
    search_budget.BudgetWatch("other").on_step_begin(1, _trials("RUNNING"))
    assert not search_budget.BudgetStopper("other").stop_all() and not search_budget.fired("other")
