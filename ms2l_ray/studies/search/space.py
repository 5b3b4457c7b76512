"""Search spaces as data: one YAML file names the parameters, the objective, the sampler and the scheduler.

A space file (``search_spaces/*.yaml``) looks like::

    preset: small                     # config preset every trial starts from
    config: {pretrain: {epochs: 12}}  # fixed deltas, same for every trial
    evaluation: {strategy: linear}    # the job whose validation metric is the objective
    metric: val_top1                  # validation top-1 of that job (test metrics are never selectable)
    mode: max
    proxy: val_knn_top1               # what ASHA cuts on: val_knn_top1|5, or val_probe_top1|5 (linear probe)
    num_samples: 16
    sampler: {type: tpe, seed: 0}     # tpe | multivariate_tpe | random | grid | bohb
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2, max_t: 12}  # asha | hyperband | bohb | none
    fidelity: {min_rho: 0.5}          # how the proxy's agreement with the objective is judged (search.fidelity)
    parameters:                       # dotted config paths, sampled in this order (define-by-run)
      tasks.contrastive_weight: {type: categorical, choices: [0.0, 1.0]}
      tasks.temperature: {type: loguniform, low: 0.05, high: 1.0, when: {tasks.contrastive_weight: {gt: 0}}}

Everything is checked when the file is loaded — unknown keys, bad distributions, ``low >= high``, config paths
that do not exist in :class:`~ms2l_ray.config.Config`, values the config would reject — and the
:class:`~ms2l_ray.config.ConfigError` names the file and the key (STYLE.md: config validated at the edge).
Parameters (distributions, conditions, checks against the config) live in :mod:`ms2l_ray.studies.search.params`;
sampling in :mod:`ms2l_ray.studies.search.sampling`.

Multi-fidelity choices are data too, so a benchmark compares them through the product itself:

- ``sampler.type``: ``tpe``, ``multivariate_tpe``, ``random`` (Bergstra & Bengio 2012: as good as a grid at a
  fraction of its cost when few parameters matter), ``grid`` (every point of a finite space once — categorical and
  int parameters only, no conditions), or ``bohb`` (TuneBOHB's model; only with ``scheduler.type: bohb``).
- ``scheduler.type``: ``asha`` (Li et al. 2020), ``hyperband`` (asynchronous Hyperband: ASHA over several
  brackets, Li et al. 2018/2020), ``bohb`` (Tune's ``HyperBandForBOHB`` + ``TuneBOHB``, Falkner et al. 2018; needs
  the optional ``hpbandster`` and ``ConfigSpace`` packages), or ``none`` (every trial gets the full budget).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ms2l_ray.config import Config, ConfigError, check_preset, compose
from ms2l_ray.names import check_name
from ms2l_ray.safe_yaml import load_yaml_file
from ms2l_ray.studies.evaluation import Evaluation, parse_evaluations
from ms2l_ray.studies.search.params import Param, as_mapping, known_keys, number, parse_param
from ms2l_ray.tracking import tags as tag

SAMPLERS = ("tpe", "multivariate_tpe", "random", "grid", "bohb")
SCHEDULERS = ("asha", "hyperband", "bohb", "none")
EARLY_STOPPING = ("asha", "hyperband", "bohb")  # schedulers that cut trials on the proxy at rungs
BOHB_PACKAGES = ("hpbandster", "ConfigSpace")  # what Tune's TuneBOHB imports (optional, not dependencies)
OBJECTIVE_METRICS = tag.VAL_METRICS  # validation only: test accuracy is reported, never selected on
# what pretraining reports at its probe epochs (ms2l_ray.train.pretrain.knn_probe): KNN, and the linear probe on the
# same cached features (ms2l_ray.train.probe_proxy)
PROXY_METRICS = ("val_knn_top1", "val_knn_top5", "val_probe_top1", "val_probe_top5")
SPACE_KEYS = ("name", "description", "preset", "config", "evaluation", "metric", "mode", "proxy", "num_samples",
              "max_concurrent", "sampler", "scheduler", "fidelity", "parameters", "points_to_evaluate")


@dataclass(frozen=True)
class SamplerSpec:
    """The space's ``sampler`` section: which Optuna sampler proposes trials, and its seed."""

    type: str = "tpe"
    seed: int = 0  # a seeded sampler: the same space and seed propose the same trials
    n_startup_trials: int = 10  # random trials before TPE models the results


@dataclass(frozen=True)
class SchedulerSpec:
    """The space's ``scheduler`` section: how Tune stops trials early on the KNN proxy (ASHA, Hyperband, none)."""

    type: str = "asha"
    grace_period: int = 1  # epochs before a trial can be cut (and the KNN probe interval)
    reduction_factor: float = 2.0
    max_t: int = 0  # epochs; 0 → the trials' pretraining epochs
    brackets: int = 0  # hyperband only: 0 → as many brackets as the rungs allow


@dataclass(frozen=True)
class FidelitySpec:
    """How the proxy's agreement with the final objective is judged (:mod:`ms2l_ray.studies.search.fidelity`)."""

    min_rho: float = 0.5  # warn when Spearman's rho at a rung is below this
    tolerance: float = 0.0  # points: proxies closer than this are "within noise"; 0 → binomial standard errors
    z: float = 1.0  # standard errors of the difference that count as noise (when tolerance is 0)
    probe_every: int = 0  # epochs between proxy probes; 0 → the grace period (early stopping) or last epoch only


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
    fidelity: FidelitySpec = field(default_factory=FidelitySpec)
    parameters: tuple[Param, ...] = ()
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)  # the mapping as loaded (recorded for --resume)
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line overrides applied by with_overrides

    @property
    def keys(self) -> list[str]:
        """The searched parameters' dotted config paths, in file order."""
        return [p.key for p in self.parameters]

    def base_config(self, extra: dict[str, Any] | None = None) -> Config:
        """Preset → fixed ``config`` → ``extra`` (CLI ``--set``/``--seed``/``--dataset``), validated."""
        clash = sorted(set(_flat_keys(extra or {})) & set(self.keys))
        if clash:
            raise ConfigError(f"{self.source}: {clash} are searched parameters; drop them from --set or from "
                              f"'parameters'")
        return compose(self.preset, layers=[(f"{self.source}: config", self.config), ("command line", extra)],
                       where=f"{self.source}: preset")

    @property
    def early_stopping(self) -> bool:
        """Whether the scheduler cuts trials before their last epoch."""
        return self.scheduler.type in EARLY_STOPPING

    def max_t(self, cfg: Config) -> int:
        """The scheduler's horizon in pretraining epochs; checked against the trials' epochs."""
        s = self.scheduler
        max_t = s.max_t or cfg.pretrain.epochs
        if "pretrain.epochs" in self.keys and self.early_stopping:
            raise ConfigError(f"{self.source}: parameters.pretrain.epochs: cannot be searched with the {s.type} "
                              f"scheduler (its max_t is in pretraining epochs); use scheduler: {{type: none}}")
        if not s.grace_period <= max_t <= cfg.pretrain.epochs:
            raise ConfigError(f"{self.source}: scheduler.max_t: need grace_period ({s.grace_period}) <= max_t "
                              f"({max_t}) <= pretrain.epochs ({cfg.pretrain.epochs})")
        if s.type == "hyperband" and s.brackets > max_brackets(s, max_t):
            raise ConfigError(f"{self.source}: scheduler.brackets: at most {max_brackets(s, max_t)} brackets fit "
                              f"grace_period {s.grace_period}, reduction_factor {s.reduction_factor:g} and max_t "
                              f"{max_t}, got {s.brackets}")
        return max_t

    def knn_every(self) -> int:
        """The trials' ``knn_every``: probe KNN at every rung, or every ``fidelity.probe_every`` epochs.

        Rungs sit at grace_period·rf^k, all multiples of grace_period; 0 → only at the last epoch.
        """
        if self.fidelity.probe_every:
            return self.fidelity.probe_every
        return self.scheduler.grace_period if self.early_stopping else 0

    def rung_epochs(self, cfg: Config) -> list[int]:
        """The epochs whose proxy fidelity is measured.

        They are the scheduler's rungs (rounded up to a probed epoch), or — without early stopping — every probed
        epoch and the last one.
        """
        epochs = cfg.pretrain.epochs
        every = self.knn_every()
        if not self.early_stopping:
            return sorted({*(range(every, epochs + 1, every) if every else ()), epochs})
        s, max_t = self.scheduler, self.max_t(cfg)
        rungs = [s.grace_period * s.reduction_factor ** k for k in range(max_brackets(s, max_t))]
        return sorted({min(max_t, math.ceil(r / every - 1e-9) * every) for r in rungs})

    def grid_size(self) -> int:
        """Points of the grid sampler: the product of each parameter's values."""
        return math.prod(len(grid_values(p)) for p in self.parameters)


def max_brackets(s: SchedulerSpec, max_t: int) -> int:
    """Rungs at grace_period·rf^k ≤ max_t — also how many Hyperband brackets fit."""
    return int(math.log(max_t / s.grace_period) / math.log(s.reduction_factor) + 1e-9) + 1


def grid_values(p: Param) -> list[Any]:
    """The values the grid sampler tries for ``p`` (categorical choices, or every step of an int range)."""
    if p.type == "categorical":
        return list(p.choices)
    if p.type == "int":
        return list(range(int(p.low), int(p.high) + 1, p.step))  # type: ignore[arg-type]
    raise ValueError(f"{p.key}: a {p.type} parameter has no finite grid")


_Spec = TypeVar("_Spec")


def _flat_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def _typed_spec(raw: Any, where: str, cls: type[_Spec], types: Any) -> _Spec:
    """A ``{type: …, …}`` mapping (or a bare type name) as ``cls``; unknown keys and types name ``where``."""
    raw = {"type": raw} if isinstance(raw, str) else as_mapping(raw, where)
    known_keys(raw, {f.name for f in dataclasses.fields(cls)}, where)  # type: ignore[arg-type]
    spec = cls(**raw)
    if spec.type not in types:  # type: ignore[attr-defined]
        raise ConfigError(f"{where}.type: must be one of {list(types)}, got {spec.type!r}")  # type: ignore[attr-defined]
    return spec


def _sampler(raw: Any, where: str) -> SamplerSpec:
    spec = _typed_spec(raw, where, SamplerSpec, SAMPLERS)
    number(spec.seed, f"{where}.seed", integer=True)
    if number(spec.n_startup_trials, f"{where}.n_startup_trials", integer=True) < 0:
        raise ConfigError(f"{where}.n_startup_trials: must be >= 0, got {spec.n_startup_trials}")
    return spec


def _scheduler(raw: Any, where: str) -> SchedulerSpec:
    spec = _typed_spec(raw, where, SchedulerSpec, SCHEDULERS)
    if number(spec.grace_period, f"{where}.grace_period", integer=True) < 1:
        raise ConfigError(f"{where}.grace_period: must be >= 1, got {spec.grace_period}")
    if number(spec.reduction_factor, f"{where}.reduction_factor") <= 1:
        raise ConfigError(f"{where}.reduction_factor: must be > 1, got {spec.reduction_factor}")
    if number(spec.max_t, f"{where}.max_t", integer=True) < 0:
        raise ConfigError(f"{where}.max_t: must be >= 1 (or 0 for the pretraining epochs), got {spec.max_t}")
    if number(spec.brackets, f"{where}.brackets", integer=True) < 0:
        raise ConfigError(f"{where}.brackets: must be >= 0 (0: as many as fit), got {spec.brackets}")
    if spec.type != "hyperband" and spec.brackets:
        raise ConfigError(f"{where}.brackets: only the hyperband scheduler has brackets, got {spec.brackets} "
                          f"with {spec.type!r}")
    return spec


def _fidelity(raw: Any, where: str) -> FidelitySpec:
    raw = as_mapping(raw, where)
    known_keys(raw, {f.name for f in dataclasses.fields(FidelitySpec)}, where)
    spec = FidelitySpec(**raw)
    if not -1 <= number(spec.min_rho, f"{where}.min_rho") <= 1:
        raise ConfigError(f"{where}.min_rho: must be in [-1, 1], got {spec.min_rho}")
    for key in ("tolerance", "z"):
        if number(getattr(spec, key), f"{where}.{key}") < 0:
            raise ConfigError(f"{where}.{key}: must be >= 0, got {getattr(spec, key)}")
    if number(spec.probe_every, f"{where}.probe_every", integer=True) < 0:
        raise ConfigError(f"{where}.probe_every: must be >= 0 (0: derived from the scheduler), got {spec.probe_every}")
    return spec


def _bohb_missing() -> list[str]:
    return [m for m in BOHB_PACKAGES if importlib.util.find_spec(m) is None]


def _check_choices(space: SearchSpace) -> None:
    """Cross-field rules of sampler and scheduler; each error names the file, the field and the value."""
    src, s, sch = space.source, space.sampler, space.scheduler
    if (s.type == "bohb") != (sch.type == "bohb"):
        field_, value = ("sampler.type", s.type) if s.type == "bohb" else ("scheduler.type", sch.type)
        raise ConfigError(f"{src}: {field_}: {value!r} — BOHB is a pair: set both sampler.type and scheduler.type "
                          f"to 'bohb' (TuneBOHB proposes, HyperBandForBOHB schedules), got sampler {s.type!r} "
                          f"and scheduler {sch.type!r}")
    if sch.type == "bohb" and _bohb_missing():
        raise ConfigError(f"{src}: scheduler.type: 'bohb' needs the optional packages {list(BOHB_PACKAGES)} "
                          f"(missing: {_bohb_missing()}; pip install hpbandster ConfigSpace), or use 'asha' or "
                          f"'hyperband'")
    if sch.type == "bohb":
        for p in space.parameters:
            if p.when:
                raise ConfigError(f"{src}: parameters.{p.key}.when: TuneBOHB receives a flat space; drop the "
                                  f"condition or use another sampler")
    every = space.fidelity.probe_every
    if every and space.early_stopping and sch.grace_period % every:
        raise ConfigError(f"{src}: fidelity.probe_every: must divide scheduler.grace_period ({sch.grace_period}) so "
                          f"the proxy is probed at every rung, got {every}")
    if s.type == "grid":
        _check_grid(space)


def _check_grid(space: SearchSpace) -> None:
    where = f"{space.source}: parameters"
    for p in space.parameters:
        if p.type not in ("categorical", "int"):
            raise ConfigError(f"{where}.{p.key}.type: the grid sampler needs finite values (categorical or int), "
                              f"got {p.type!r}")
        if p.when:
            raise ConfigError(f"{where}.{p.key}.when: the grid sampler enumerates the full product; a conditional "
                              f"parameter would repeat configurations — drop the condition or use another sampler")
    if space.points_to_evaluate:
        raise ConfigError(f"{space.source}: points_to_evaluate: the grid sampler visits every point already")
    if space.num_samples > space.grid_size():
        raise ConfigError(f"{space.source}: num_samples: the grid has {space.grid_size()} points, got "
                          f"{space.num_samples} (leave num_samples out to run every point once)")


def _evaluation(raw: Any, where: str) -> Evaluation:
    ev = parse_evaluations([raw if raw is not None else "linear"], where)[0]
    if not ev.pretrained:
        raise ConfigError(f"{where}: evaluation.strategy {ev.strategy!r} trains from scratch and would ignore the "
                          f"pretrained encoder; a search evaluates pretraining (linear, semi, finetune, knn, ...)")
    return ev


def _count(raw: dict[str, Any], key: str, default: int | None, where: str) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if number(value, f"{where}: {key}", integer=True) < 1:
        raise ConfigError(f"{where}: {key}: must be >= 1, got {value}")
    return int(value)


def parse_space(raw: Any, source: str, name: str | None = None) -> SearchSpace:
    """Validate a loaded space mapping; every error names ``source`` and the offending key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(raw).__name__}")
    known_keys(raw, SPACE_KEYS, source)
    name = raw.get("name", name or "search")
    check_name(f"{source}: name", name)  # becomes the search's folder name
    preset = check_preset(raw.get("preset", "small"), f"{source}: preset")
    checks = {"metric": OBJECTIVE_METRICS, "mode": ("max", "min"), "proxy": PROXY_METRICS}
    for key, allowed in checks.items():
        if key in raw and raw[key] not in allowed:
            hint = " (test metrics are reported for information, never used for selection)" if key == "metric" else ""
            raise ConfigError(f"{source}: {key}: must be one of {list(allowed)}, got {raw[key]!r}{hint}")
    space = SearchSpace(name=name, source=source, preset=preset, description=str(raw.get("description", "")),
                        config=as_mapping(raw.get("config"), f"{source}: config"),
                        evaluation=_evaluation(raw.get("evaluation"), source),
                        metric=raw.get("metric", "val_top1"), mode=raw.get("mode", "max"),
                        proxy=raw.get("proxy", "val_knn_top1"),
                        num_samples=_count(raw, "num_samples", 8, source) or 8,
                        max_concurrent=_count(raw, "max_concurrent", None, source),
                        sampler=_sampler(raw.get("sampler"), f"{source}: sampler"),
                        scheduler=_scheduler(raw.get("scheduler"), f"{source}: scheduler"),
                        fidelity=_fidelity(raw.get("fidelity"), f"{source}: fidelity"))
    base = space.base_config()  # the fixed deltas are validated here, naming their key
    where = f"{source}: parameters"
    params: list[Param] = []
    for key, spec in as_mapping(raw.get("parameters"), where).items():
        params.append(parse_param(str(key), spec, base, {p.key: p for p in params}, where))
    if not params:
        raise ConfigError(f"{where}: at least one parameter is needed")
    space.parameters = tuple(params)
    points = raw.get("points_to_evaluate") or []
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"{source}: points_to_evaluate: expected a list of {{parameter: value}} mappings")
    for i, point in enumerate(points):
        known_keys(point, tuple(space.keys), f"{source}: points_to_evaluate[{i}]")
    space.points_to_evaluate = tuple(points)
    if space.sampler.type == "grid" and "num_samples" not in raw and all(
            p.type in ("categorical", "int") for p in params):
        space.num_samples = space.grid_size()  # a grid's default: every point once
    _check_choices(space)
    space.raw = copy.deepcopy(raw)
    space.max_t(base)
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate ``search_spaces/<name>.yaml``; the search name defaults to the file's stem."""
    p = Path(path)
    try:
        raw = load_yaml_file(p)  # size- and alias-bounded (ms2l_ray.safe_yaml)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read search space {p}: {exc}") from exc
    return parse_space(raw if raw is not None else {}, str(p), name=p.stem)


def with_overrides(space: SearchSpace, *, preset: str | None = None, num_samples: int | None = None,
                   max_concurrent: int | None = None, seed: int | None = None) -> SearchSpace:
    """Command-line overrides of the space's own settings (``--preset``, ``--num-samples``, ...), re-validated."""
    changes: dict[str, Any] = {}
    if preset is not None:
        changes["preset"] = check_preset(preset, "--preset")
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
    given = {"preset": preset, "num_samples": num_samples, "max_concurrent": max_concurrent, "seed": seed}
    out = dataclasses.replace(space, **changes, overrides={**space.overrides,
                                                          **{k: v for k, v in given.items() if v is not None}})
    if out.sampler.type == "grid":
        _check_grid(dataclasses.replace(out, source="--num-samples") if num_samples is not None else out)
    out.max_t(out.base_config())
    return out
