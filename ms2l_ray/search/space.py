"""Search spaces as data: one YAML file names the parameters, the objective, the sampler and the scheduler.

A space file (``search_spaces/*.yaml``) looks like::

    preset: small                     # config preset every trial starts from
    config: {pretrain: {epochs: 12}}  # fixed deltas, same for every trial
    evaluation: {strategy: linear}    # the job whose validation metric is the objective
    metric: val_top1                  # validation top-1 of that job (test metrics are never selectable)
    mode: max
    proxy: val_knn_top1               # pretraining metric ASHA cuts on (reported every grace_period epochs)
    num_samples: 16
    sampler: {type: tpe, seed: 0}
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2, max_t: 12}
    parameters:                       # dotted config paths, sampled in this order (define-by-run)
      tasks.contrastive_weight: {type: categorical, choices: [0.0, 1.0]}
      tasks.temperature: {type: loguniform, low: 0.05, high: 1.0, when: {tasks.contrastive_weight: {gt: 0}}}

Everything is checked when the file is loaded — unknown keys, bad distributions, ``low >= high``, config paths
that do not exist in :class:`~ms2l_ray.config.Config`, values the config would reject — and the
:class:`~ms2l_ray.config.ConfigError` names the file and the key (STYLE.md: config validated at the edge).
Sampling lives in :mod:`ms2l_ray.search.sampling`.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import PRESETS, Config, ConfigError, apply_delta, merge_deltas, unflatten
from ms2l_ray.pipeline import FROM_SCRATCH, Evaluation, parse_evaluations

DISTRIBUTIONS: dict[str, set[str]] = {  # distribution → keys it accepts (besides type and when)
    "uniform": {"low", "high"},
    "loguniform": {"low", "high"},
    "int": {"low", "high", "step", "log"},
    "categorical": {"choices"},
}
OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "in")
SAMPLERS = ("tpe", "multivariate_tpe", "random")
SCHEDULERS = ("asha", "none")
OBJECTIVE_METRICS = ("val_top1", "val_top5")  # validation only: test accuracy is reported, never selected on
PROXY_METRICS = ("val_knn_top1", "val_knn_top5")  # what pretraining reports (ms2l_ray.train.pretrain.knn_probe)
# Fixed for a whole search so that trials are comparable (or derived from the space: knn_every).
NOT_SEARCHABLE = ("seed", "device", "log_every", "knn_every", "data.dataset", "data.split", "data.builtin_seed",
                  "data.limit", "evaluation.strategy", "evaluation.label_fraction")
SPACE_KEYS = ("name", "description", "preset", "config", "evaluation", "metric", "mode", "proxy", "num_samples",
              "max_concurrent", "sampler", "scheduler", "parameters", "points_to_evaluate")


@dataclass(frozen=True)
class Condition:
    """``when: {<earlier parameter>: {gt: 0}}`` — the parameter is sampled only if this holds."""

    key: str
    op: str
    value: Any

    def holds(self, values: dict[str, Any]) -> bool:
        if self.key not in values:  # the parent itself was not sampled (its own condition failed)
            return False
        v = values[self.key]
        if self.op == "in":
            return bool(v in self.value)
        if self.op in ("eq", "ne"):
            return (v == self.value) == (self.op == "eq")
        ops = {"gt": v > self.value, "ge": v >= self.value, "lt": v < self.value, "le": v <= self.value}
        return bool(ops[self.op])


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
        return all(c.holds(values) for c in self.when)


@dataclass(frozen=True)
class SamplerSpec:
    type: str = "tpe"
    seed: int = 0  # a seeded sampler: the same space and seed propose the same trials
    n_startup_trials: int = 10  # random trials before TPE models the results


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = "asha"
    grace_period: int = 1  # epochs before a trial can be cut (and the KNN probe interval)
    reduction_factor: float = 2.0
    max_t: int = 0  # epochs; 0 → the trials' pretraining epochs


@dataclass
class SearchSpace:
    """A validated space file. ``config`` is the fixed delta on top of ``preset``."""

    name: str
    source: str
    preset: str = "small"
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation = field(default_factory=lambda: Evaluation("linear"))
    metric: str = "val_top1"
    mode: str = "max"
    proxy: str = "val_knn_top1"
    num_samples: int = 8
    max_concurrent: int | None = None
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    parameters: tuple[Param, ...] = ()
    points_to_evaluate: tuple[dict[str, Any], ...] = ()

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.parameters]

    def base_config(self, extra: dict[str, Any] | None = None) -> Config:
        """Preset → fixed ``config`` → ``extra`` (CLI ``--set``/``--seed``/``--dataset``), validated."""
        cfg = apply_delta(Config(), PRESETS[self.preset], f"preset {self.preset!r}")
        cfg = apply_delta(cfg, self.config, f"{self.source}: config") if self.config else cfg
        if extra:
            clash = sorted(set(_flat_keys(extra)) & set(self.keys))
            if clash:
                raise ConfigError(f"{self.source}: {clash} are searched parameters; drop them from --set or from "
                                  f"'parameters'")
            cfg = apply_delta(cfg, extra, "command-line overrides")
        return cfg

    def max_t(self, cfg: Config) -> int:
        """ASHA's horizon in pretraining epochs; checked against the trials' epochs."""
        s = self.scheduler
        max_t = s.max_t or cfg.pretrain.epochs
        if "pretrain.epochs" in self.keys and s.type == "asha":
            raise ConfigError(f"{self.source}: parameters.pretrain.epochs: cannot be searched with the asha scheduler "
                              f"(its max_t is in pretraining epochs); use scheduler: {{type: none}}")
        if not s.grace_period <= max_t <= cfg.pretrain.epochs:
            raise ConfigError(f"{self.source}: scheduler.max_t: need grace_period ({s.grace_period}) <= max_t "
                              f"({max_t}) <= pretrain.epochs ({cfg.pretrain.epochs})")
        return max_t

    def knn_every(self) -> int:
        """Probe KNN at every ASHA rung: rungs sit at grace_period·rf^k, all multiples of grace_period."""
        return self.scheduler.grace_period if self.scheduler.type == "asha" else 0


def _flat_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


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


def _number(value: Any, what: str, integer: bool = False) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise ConfigError(f"{what}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    return value  # type: ignore[no-any-return]


def _known(raw: dict[str, Any], allowed: set[str] | tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(allowed)}")


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    return raw


def _check_value(base: Config, key: str, value: Any, where: str) -> None:
    """Would the config accept ``key = value``? Type and range problems of this key only (cross-field rules such
    as 'not every task weight 0' are checked per trial, which is pruned when they fail)."""
    try:
        apply_delta(base, unflatten({key: value}), where)
    except ConfigError as exc:
        mine = [line.strip() for line in str(exc).splitlines()[1:] if line.strip().startswith(f"{key}:")]
        if mine:
            raise ConfigError(f"{where}: value {value!r} rejected by the config: {'; '.join(mine)}") from None


def _condition(key: str, raw: Any, earlier: list[str], where: str) -> Condition:
    if key not in earlier:
        raise ConfigError(f"{where}.when.{key}: must name a parameter declared earlier in 'parameters' "
                          f"(declared so far: {earlier})")
    if not isinstance(raw, dict):
        return Condition(key, "eq", raw)
    if len(raw) != 1 or next(iter(raw)) not in OPERATORS:
        raise ConfigError(f"{where}.when.{key}: expected a value or one of {{{', '.join(OPERATORS)}: value}}, "
                          f"got {raw!r}")
    op, value = next(iter(raw.items()))
    if op == "in" and not isinstance(value, list):
        raise ConfigError(f"{where}.when.{key}.in: expected a list, got {value!r}")
    return Condition(key, op, tuple(value) if op == "in" else value)


def parse_param(key: str, raw: Any, base: Config, earlier: list[str], where: str) -> Param:
    """Validate one ``parameters`` entry against its distribution and the config field it sets."""
    where = f"{where}.{key}"
    try:
        tp = field_type(key)
    except KeyError as exc:
        raise ConfigError(f"{where}: {exc.args[0]}") from None
    if key in NOT_SEARCHABLE:
        raise ConfigError(f"{where}: not searchable (fixed for a whole search so trials are comparable, or derived "
                          f"from the scheduler); set it in 'config' instead")
    raw = _mapping(raw, where)
    kind = raw.get("type")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}.type: must be one of {sorted(DISTRIBUTIONS)}, got {kind!r}")
    _known(raw, DISTRIBUTIONS[kind] | {"type", "when"}, where)
    when = tuple(_condition(k, v, earlier, where) for k, v in _mapping(raw.get("when"), f"{where}.when").items())
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
    low, high = _number(raw["low"], f"{where}.low", integer), _number(raw["high"], f"{where}.high", integer)
    if low >= high:
        raise ConfigError(f"{where}: low ({low}) must be < high ({high})")
    if tp is int and not integer:
        raise ConfigError(f"{where}.type: {key} is an integer field; use type: int (or categorical)")
    if tp not in (int, float):
        raise ConfigError(f"{where}.type: {key} is a {tp.__name__} field; only categorical fits it")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.low: must be > 0 for loguniform, got {low}")
    step = int(_number(raw.get("step", 1), f"{where}.step", integer=True))
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


def _sampler(raw: Any, where: str) -> SamplerSpec:
    raw = {"type": raw} if isinstance(raw, str) else _mapping(raw, where)
    _known(raw, {f.name for f in dataclasses.fields(SamplerSpec)}, where)
    spec = SamplerSpec(**raw)
    if spec.type not in SAMPLERS:
        raise ConfigError(f"{where}.type: must be one of {list(SAMPLERS)}, got {spec.type!r}")
    _number(spec.seed, f"{where}.seed", integer=True)
    if _number(spec.n_startup_trials, f"{where}.n_startup_trials", integer=True) < 0:
        raise ConfigError(f"{where}.n_startup_trials: must be >= 0, got {spec.n_startup_trials}")
    return spec


def _scheduler(raw: Any, where: str) -> SchedulerSpec:
    raw = {"type": raw} if isinstance(raw, str) else _mapping(raw, where)
    _known(raw, {f.name for f in dataclasses.fields(SchedulerSpec)}, where)
    spec = SchedulerSpec(**raw)
    if spec.type not in SCHEDULERS:
        raise ConfigError(f"{where}.type: must be one of {list(SCHEDULERS)}, got {spec.type!r}")
    if _number(spec.grace_period, f"{where}.grace_period", integer=True) < 1:
        raise ConfigError(f"{where}.grace_period: must be >= 1, got {spec.grace_period}")
    if _number(spec.reduction_factor, f"{where}.reduction_factor") <= 1:
        raise ConfigError(f"{where}.reduction_factor: must be > 1, got {spec.reduction_factor}")
    if _number(spec.max_t, f"{where}.max_t", integer=True) < 0:
        raise ConfigError(f"{where}.max_t: must be >= 1 (or 0 for the pretraining epochs), got {spec.max_t}")
    return spec


def _evaluation(raw: Any, where: str) -> Evaluation:
    ev = parse_evaluations([raw if raw is not None else "linear"], where)[0]
    if ev.strategy in FROM_SCRATCH:
        raise ConfigError(f"{where}: evaluation.strategy {ev.strategy!r} trains from scratch and would ignore the "
                          f"pretrained encoder; a search evaluates pretraining (linear, semi, finetune, knn, ...)")
    return ev


def _count(raw: dict[str, Any], key: str, default: int | None, where: str) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if _number(value, f"{where}: {key}", integer=True) < 1:
        raise ConfigError(f"{where}: {key}: must be >= 1, got {value}")
    return int(value)


def parse_space(raw: Any, source: str, name: str | None = None) -> SearchSpace:
    """Validate a loaded space mapping; every error names ``source`` and the offending key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(raw).__name__}")
    _known(raw, SPACE_KEYS, source)
    name = raw.get("name", name or "search")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{source}: name: letters, digits, '_', '.', '-' only, got {name!r}")
    preset = raw.get("preset", "small")
    if preset not in PRESETS:
        raise ConfigError(f"{source}: preset: must be one of {sorted(PRESETS)}, got {preset!r}")
    checks = {"metric": OBJECTIVE_METRICS, "mode": ("max", "min"), "proxy": PROXY_METRICS}
    for key, allowed in checks.items():
        if key in raw and raw[key] not in allowed:
            hint = " (test metrics are reported for information, never used for selection)" if key == "metric" else ""
            raise ConfigError(f"{source}: {key}: must be one of {list(allowed)}, got {raw[key]!r}{hint}")
    space = SearchSpace(name=name, source=source, preset=preset, description=str(raw.get("description", "")),
                        config=_mapping(raw.get("config"), f"{source}: config"),
                        evaluation=_evaluation(raw.get("evaluation"), source),
                        metric=raw.get("metric", "val_top1"), mode=raw.get("mode", "max"),
                        proxy=raw.get("proxy", "val_knn_top1"),
                        num_samples=_count(raw, "num_samples", 8, source) or 8,
                        max_concurrent=_count(raw, "max_concurrent", None, source),
                        sampler=_sampler(raw.get("sampler"), f"{source}: sampler"),
                        scheduler=_scheduler(raw.get("scheduler"), f"{source}: scheduler"))
    base = space.base_config()  # the fixed deltas are validated here, naming their key
    where = f"{source}: parameters"
    params: list[Param] = []
    for key, spec in _mapping(raw.get("parameters"), where).items():
        params.append(parse_param(str(key), spec, base, [p.key for p in params], where))
    if not params:
        raise ConfigError(f"{where}: at least one parameter is needed")
    space.parameters = tuple(params)
    points = raw.get("points_to_evaluate") or []
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"{source}: points_to_evaluate: expected a list of {{parameter: value}} mappings")
    for i, point in enumerate(points):
        _known(point, tuple(space.keys), f"{source}: points_to_evaluate[{i}]")
    space.points_to_evaluate = tuple(points)
    space.max_t(base)
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate ``search_spaces/<name>.yaml``; the search name defaults to the file's stem."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read search space {p}: {exc}") from exc
    return parse_space(raw if raw is not None else {}, str(p), name=p.stem)


def with_overrides(space: SearchSpace, *, preset: str | None = None, num_samples: int | None = None,
                   max_concurrent: int | None = None, seed: int | None = None) -> SearchSpace:
    """Command-line overrides of the space's own settings (``--preset``, ``--num-samples``, ...), re-validated."""
    changes: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"--preset: must be one of {sorted(PRESETS)}, got {preset!r}")
        changes["preset"] = preset
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError(f"--num-samples: must be >= 1, got {num_samples}")
        changes["num_samples"] = num_samples
    if max_concurrent is not None:
        if max_concurrent < 1:
            raise ConfigError(f"--max-concurrent: must be >= 1, got {max_concurrent}")
        changes["max_concurrent"] = max_concurrent
    if seed is not None:
        changes["sampler"] = dataclasses.replace(space.sampler, seed=seed)
    out = dataclasses.replace(space, **changes)
    out.max_t(out.base_config())
    return out


def merge_extra(*deltas: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in deltas:
        out = merge_deltas(out, d or {})
    return out
