"""Time budgets: the durations ``--time-budget`` accepts and refuses, and when a budget counts as spent."""

from __future__ import annotations

import pytest

from ms2l_ray.config import ConfigError
from ms2l_ray.studies.budget import Budget, format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("45m", 2700.0), ("2h", 7200.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
    ("1d2h", 93600.0), (" 2 H ", 7200.0), ("1h0m30s", 3630.0), ("0.5s", 0.5),
])
def test_durations_that_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "why"), [
    ("", "expected a duration"), ("h", "expected a duration"), ("2x", "expected a duration"),
    ("-5m", "expected a duration"), ("30m1h", "expected a duration"), ("inf", "expected a duration"),
    ("nan", "expected a duration"), ("1h1h", "expected a duration"), ("0", "more than 0 s"),
    ("0h0m", "more than 0 s"), ("400d", "at most 366 days"),
])
def test_durations_that_are_refused_name_the_option_and_value(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as err:
        parse_duration(text, "--time-budget")
    assert str(err.value).startswith(f"--time-budget {text!r}: ")


@pytest.mark.parametrize(("seconds", "text"), [(5400, "1h30m"), (90, "1m30s"), (42.4, "42s"), (0, "0s"),
                                               (7200, "2h"), (3605, "1h5s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_budget_counts_from_start_and_is_spent_at_its_length() -> None:
    now = [100.0]
    b = Budget(60.0, "1m", clock=lambda: now[0])
    assert not b.expired() and b.remaining() == 60.0  # not started: never spent
    b.start()
    now[0] = 159.0
    assert not b.expired() and b.remaining() == pytest.approx(1.0) and b.elapsed() == pytest.approx(59.0)
    now[0] = 160.0
    assert b.expired() and b.remaining() == 0.0
    b.start()  # idempotent: a second start keeps the first
    assert b.expired()
    assert b.describe() == "time budget 1m" and Budget(5400.0).describe() == "time budget 1h30m"
    assert Budget.parse(None) is None and Budget.parse("2h") == Budget(7200.0, "2h")
