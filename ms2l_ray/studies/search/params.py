"""One searched parameter: its distribution, its condition, and its check against the config field it sets.

A parameter is keyed by its dotted config path (``tasks.temperature``), which is also its Optuna name and its
Tune config key. Bounds and choices are checked against :class:`~ms2l_ray.config.Config` itself — the field must
exist and be a value (not a section), the distribution must fit its type, and the config's own range rules must
accept every bound and choice — so a typo or an impossible range fails when the space is loaded, not in trial 17.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from dataclasses import dataclass
from typing import Any

from ms2l_ray.config import Config, ConfigError, apply_delta, unflatten

DISTRIBUTIONS: dict[str, set[str]] = {  # distribution → keys it accepts (besides type and when)
    "uniform": {"low", "high"},
    "loguniform": {"low", "high"},
    "int": {"low", "high", "step", "log"},
    "categorical": {"choices"},
}
_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt,
            "le": operator.le}
OPERATORS = (*_COMPARE, "in")
# Fixed for a whole search so that trials are comparable (or derived from the space: knn_every).
NOT_SEARCHABLE = ("seed", "device", "log_every", "knn_every", "data.dataset", "data.split", "data.builtin_seed",
                  "data.limit", "evaluation.strategy", "evaluation.label_fraction")


@dataclass(frozen=True)
class Condition:
    """``when: {<earlier parameter>: {gt: 0}}`` — the parameter is sampled only if this holds."""

    key: str
    op: str
    value: Any

    def holds(self, values: dict[str, Any]) -> bool:
        """Whether the condition holds for the values sampled so far (False when its parent was not sampled)."""
        if self.key not in values:  # the parent itself was not sampled (its own condition failed)
            return False
        v = values[self.key]
        if self.op == "in":
            return bool(v in self.value)
        return bool(_COMPARE[self.op](v, self.value))  # numeric for gt/ge/lt/le: checked when the space loads


@dataclass(frozen=True)
class Param:
    """One searched config field. ``key`` is its dotted path (``tasks.temperature``) and its Optuna name."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: int = 1
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: tuple[Condition, ...] = ()

    def active(self, values: dict[str, Any]) -> bool:
        """Whether this parameter is sampled, given the values sampled before it: all its ``when`` hold."""
        return all(c.holds(values) for c in self.when)


def field_type(dotted: str) -> type:
    """The annotated type of a leaf of :class:`Config`; ``KeyError`` with the known keys when it is not one."""
    node: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(node)
        if part not in hints:
            raise KeyError(f"unknown config key {'.'.join(parts[:i + 1])!r}; known keys here: {sorted(hints)}")
        node = hints[part]
        if dataclasses.is_dataclass(node) and i == len(parts) - 1:
            known = sorted(typing.get_type_hints(node))
            raise KeyError(f"{dotted!r} is a config section, not a value; known keys in it: {known}")
    return node  # type: ignore[no-any-return]


def number(value: Any, what: str, integer: bool = False) -> float | int:
    """``value`` when it is a number (an integer if ``integer``; never a bool), else a ``ConfigError`` on ``what``."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise ConfigError(f"{what}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    return value  # type: ignore[no-any-return]


def known_keys(raw: dict[str, Any], allowed: set[str] | tuple[str, ...], where: str) -> None:
    """Raise ``ConfigError`` at ``where`` for keys of ``raw`` outside ``allowed``, so a typo is not ignored."""
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(allowed)}")


def as_mapping(raw: Any, where: str) -> dict[str, Any]:
    """``raw`` as a mapping (``{}`` for an empty YAML section), else a ``ConfigError`` at ``where``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    return raw


def _check_value(base: Config, key: str, value: Any, where: str) -> None:
    """Would the config accept ``key = value``? Type and range problems of this key only.

    Cross-field rules such as 'not every task weight 0' are checked per trial, which is pruned when they fail.
    """
    try:
        apply_delta(base, unflatten({key: value}), where)
    except ConfigError as exc:
        mine = [line.strip() for line in str(exc).splitlines()[1:] if line.strip().startswith(f"{key}:")]
        if mine:
            raise ConfigError(f"{where}: value {value!r} rejected by the config: {'; '.join(mine)}") from None


def _numeric(p: Param) -> bool:
    plain = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p.choices)
    return p.type != "categorical" or plain


def _condition(key: str, raw: Any, earlier: dict[str, Param], where: str) -> Condition:
    if key not in earlier:
        raise ConfigError(f"{where}.when.{key}: must name a parameter declared earlier in 'parameters' "
                          f"(declared so far: {list(earlier)})")
    if not isinstance(raw, dict):
        return Condition(key, "eq", raw)
    if len(raw) != 1 or next(iter(raw)) not in OPERATORS:
        raise ConfigError(f"{where}.when.{key}: expected a value or one of {{{', '.join(OPERATORS)}: value}}, "
                          f"got {raw!r}")
    op, value = next(iter(raw.items()))
    if op == "in" and not isinstance(value, list):
        raise ConfigError(f"{where}.when.{key}.in: expected a list, got {value!r}")
    if op in ("gt", "ge", "lt", "le"):  # order comparisons: both sides numbers, or sampling would raise mid-search
        number(value, f"{where}.when.{key}.{op}")
        if not _numeric(earlier[key]):
            raise ConfigError(f"{where}.when.{key}.{op}: {key} has non-numeric choices; use eq, ne or in")
    return Condition(key, op, tuple(value) if op == "in" else value)


def parse_param(key: str, raw: Any, base: Config, earlier: dict[str, Param], where: str) -> Param:
    """Validate one ``parameters`` entry against its distribution and the config field it sets."""
    where = f"{where}.{key}"
    try:
        tp = field_type(key)
    except KeyError as exc:
        raise ConfigError(f"{where}: {exc.args[0]}") from None
    if key in NOT_SEARCHABLE:
        raise ConfigError(f"{where}: not searchable (fixed for a whole search so trials are comparable, or derived "
                          f"from the scheduler); set it in 'config' instead")
    raw = as_mapping(raw, where)
    kind = raw.get("type")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}.type: must be one of {sorted(DISTRIBUTIONS)}, got {kind!r}")
    known_keys(raw, DISTRIBUTIONS[kind] | {"type", "when"}, where)
    when = tuple(_condition(k, v, earlier, where) for k, v in as_mapping(raw.get("when"), f"{where}.when").items())
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list, got {choices!r}")
        scalar = all(isinstance(c, (bool, int, float, str)) for c in choices)
        if not scalar or len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}.choices: expected distinct scalar values, got {choices!r}")
        for c in choices:
            _check_value(base, key, c, f"{where}.choices")
        return Param(key, kind, choices=tuple(choices), when=when)
    for name in ("low", "high"):
        if name not in raw:
            raise ConfigError(f"{where}.{name}: required for a {kind} distribution")
    integer = kind == "int"
    low, high = number(raw["low"], f"{where}.low", integer), number(raw["high"], f"{where}.high", integer)
    if low >= high:
        raise ConfigError(f"{where}: low ({low}) must be < high ({high})")
    if tp is int and not integer:
        raise ConfigError(f"{where}.type: {key} is an integer field; use type: int (or categorical)")
    if tp not in (int, float):
        raise ConfigError(f"{where}.type: {key} is a {tp.__name__} field; only categorical fits it")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.low: must be > 0 for loguniform, got {low}")
    step = int(number(raw.get("step", 1), f"{where}.step", integer=True))
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false, got {log!r}")
    if integer and (step < 1 or (high - low) % step):
        raise ConfigError(f"{where}.step: must be >= 1 and divide high - low ({high - low}), got {step}")
    if log and (step != 1 or low <= 0):
        raise ConfigError(f"{where}.log: needs step 1 and low > 0")
    for v in (low, high):
        _check_value(base, key, float(v) if tp is float else v, where)
    return Param(key, kind, low=low, high=high, step=step, log=log, when=when)
