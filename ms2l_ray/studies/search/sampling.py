"""Optuna behind Ray Tune: the define-by-run space, the seeded sampler, and how trial outcomes are told to Optuna.

One metric name, two meanings (the "objective trick"). Every result a trial reports to Tune carries the key
:data:`OBJECTIVE`:

- during pretraining it is the cheap proxy (KNN top-1 on frozen validation features, ``val_knn_top1``),
  reported at each ASHA rung, so ASHA compares trials on it and cuts the weak ones;
- after the linear evaluation the trial's last report sets it to that job's *validation* top-1 and adds
  :data:`FINAL`; that is the value Optuna learns from.

:class:`ObjectiveOptunaSearch` makes the split explicit: a trial that ends without a ``FINAL`` result (cut by
ASHA, or rejected as an invalid config — its one report carries :data:`REJECTED` and the worst objective) is
told to Optuna as PRUNED — its proxy values stay as intermediate
values, which TPE uses to rank pruned trials — and never as a COMPLETE trial whose value is a KNN accuracy.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from ms2l_ray.studies.search.params import Param
from ms2l_ray.studies.search.space import SamplerSpec, SearchSpace, grid_values, max_brackets
from ms2l_ray.tracking import tags as tag

OBJECTIVE = tag.OBJECTIVE  # the one metric Tune, ASHA and Optuna see
FINAL = "objective_is_final"  # 1.0 in the last report: OBJECTIVE is the evaluation metric, not the proxy
PHASE = "phase"  # "pretrain" (proxy) or the evaluation label (final)
REJECTED = "config_rejected"  # 1.0 in the only report of a trial whose sampled config the model refuses


def worst_objective(mode: str) -> float:
    """The objective a rejected trial reports: 0 (max) or 100 (min), the worst accuracy in percent.

    Tune requires the metric in every result, and the objectives are accuracies in percent, so this ranks the
    trial last without an infinity in the logs.
    """
    return 0.0 if mode == "max" else 100.0


class SpaceSampler:
    """Optuna define-by-run function for a :class:`SearchSpace` (a class, not a closure: Tune pickles it).

    Parameters are suggested in file order; one whose ``when`` fails is not suggested at all, so Optuna
    sees a conditional space (``tasks.temperature`` exists only in trials with a contrastive task).
    """

    def __init__(self, parameters: tuple[Param, ...]) -> None:
        self.parameters = parameters

    def __call__(self, trial: Any) -> None:
        """Suggest every active parameter on the Optuna ``trial``, in file order."""
        values: dict[str, Any] = {}
        for p in self.parameters:
            if p.active(values):
                values[p.key] = suggest(trial, p)


def suggest(trial: Any, p: Param) -> Any:
    """One Optuna suggestion for ``p`` (the Optuna parameter name is the dotted config path)."""
    if p.type == "categorical":
        return trial.suggest_categorical(p.key, list(p.choices))
    if p.type == "int":
        return trial.suggest_int(p.key, int(p.low), int(p.high), step=p.step, log=p.log)  # type: ignore[arg-type]
    return trial.suggest_float(p.key, float(p.low), float(p.high), log=p.type == "loguniform")  # type: ignore[arg-type]


def make_sampler(spec: SamplerSpec, parameters: tuple[Param, ...] = ()) -> Any:
    """Seeded Optuna sampler for the space's ``sampler`` spec.

    ``multivariate_tpe`` uses ``group=True`` so conditional parameters are modelled within the sub-spaces where
    they exist; ``grid`` visits the product of ``parameters``' values in a seeded
    random order (so a grid cut short is still a uniform sample of it).
    """
    import optuna

    if spec.type == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.type == "grid":
        return _grid_sampler({p.key: grid_values(p) for p in parameters}, spec.seed)
    multivariate = spec.type == "multivariate_tpe"
    return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=spec.n_startup_trials,
                                      multivariate=multivariate, group=multivariate)


class TuneGridSampler(optuna.samplers.GridSampler):  # type: ignore[misc]
    """Optuna's ``GridSampler`` without its end-of-grid ``study.stop()``.

    Tune drives the study by ask/tell, where ``stop()`` raises; the search ends after ``num_samples`` trials
    instead, which the space caps at the grid's size (and defaults to it). Module-level: Tune pickles it.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        """Do nothing: the parent would ``study.stop()`` at the end of the grid, which raises under Tune."""
        return None


def _grid_sampler(grid: dict[str, list[Any]], seed: int) -> Any:
    return TuneGridSampler(grid, seed=seed)


class ObjectiveOptunaSearch(OptunaSearch):  # type: ignore[misc]
    """``OptunaSearch`` that completes a trial only on its final (evaluation) objective; see the module doc."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Report an intermediate objective; nothing for a trial the persistent study has already finished.

        Why: the study lives in a database, Tune's experiment state in a file saved every few seconds. A driver
        that dies after telling Optuna a trial ended, but before Tune saved that, leaves the trial running in
        Tune's state; on ``--resume`` it runs again and reports its stored result, which Optuna refuses
        (``UpdateFinishedTrialError``) and Tune turns into a ``TuneError`` that ends the search. The study
        already holds that trial's outcome, so the report is dropped and the trial counts as completed.
        """
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Tell Optuna the trial ended: COMPLETE only with its final objective, PRUNED when it was cut earlier."""
        if result is not None and not result.get(FINAL):
            result = {k: v for k, v in result.items() if k != self.metric}  # → PRUNED, not COMPLETE
        super().on_trial_complete(trial_id, result=result, error=error)


def make_search_alg(space: SearchSpace, study_name: str, storage_url: str | None) -> Any:
    """The Tune search algorithm: Optuna with the space's sampler, persisted in ``storage_url`` (SQLite) when given.

    Persisting the study is what lets importance be computed after the search — and after a resume — from
    every trial Optuna was told about, not just the ones this driver process saw.
    """
    import optuna

    if space.sampler.type == "bohb":
        return make_bohb_search(space)
    storage = optuna.storages.RDBStorage(storage_url) if storage_url else None
    return ObjectiveOptunaSearch(space=SpaceSampler(space.parameters), metric=OBJECTIVE, mode=space.mode,
                                sampler=make_sampler(space.sampler, space.parameters), study_name=study_name,
                                storage=storage, points_to_evaluate=[dict(p) for p in space.points_to_evaluate] or None)


def tune_distribution(p: Param) -> Any:
    """``p`` in Tune's search-space API (what TuneBOHB translates to ConfigSpace)."""
    from ray import tune

    if p.type == "categorical":
        return tune.choice(list(p.choices))
    if p.type == "int":
        if p.log:
            return tune.lograndint(int(p.low), int(p.high) + 1)  # type: ignore[arg-type]
        return tune.qrandint(int(p.low), int(p.high), p.step)  # type: ignore[arg-type]
    if p.type == "loguniform":
        return tune.loguniform(float(p.low), float(p.high))  # type: ignore[arg-type]
    return tune.uniform(float(p.low), float(p.high))  # type: ignore[arg-type]


def make_bohb_search(space: SearchSpace) -> Any:
    """TuneBOHB (Falkner et al. 2018): Hyperband's budgets with a kernel-density model proposing configs.

    Needs the optional ``hpbandster`` and ``ConfigSpace`` packages (checked when the space loads). The space has
    no conditions (checked too): TuneBOHB receives a flat space. Its study is not persisted, so parameter
    importance (Optuna's) is unavailable for BOHB searches.
    """
    from ray.tune.search.bohb import TuneBOHB

    return TuneBOHB(space={p.key: tune_distribution(p) for p in space.parameters}, metric=OBJECTIVE,
                    mode=space.mode, seed=space.sampler.seed,
                    points_to_evaluate=[dict(p) for p in space.points_to_evaluate] or None)


def make_scheduler(space: SearchSpace, max_t: int) -> Any:
    """The space's scheduler on the proxy, with pretraining epochs as time.

    - ``asha``: one bracket of successive halving, asynchronous (Li et al. 2020);
    - ``hyperband``: asynchronous Hyperband — ASHA over ``brackets`` brackets, each starting its first rung at
      ``grace_period·rf^s``, hedging against a proxy that misleads at the earliest rungs (Li et al. 2018, 2020);
    - ``bohb``: Tune's ``HyperBandForBOHB`` (synchronous Hyperband; it pauses trials between rungs);
    - ``none``: FIFO, every trial gets the full budget.

    ``stop_last_trials=False``: a trial that survives the last rung must go on to its evaluation — with
    the default, the scheduler would stop every trial at ``max_t`` before its objective exists.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = space.scheduler
    if s.type == "none":
        return FIFOScheduler()
    if s.type == "bohb":
        from ray.tune.schedulers import HyperBandForBOHB

        return HyperBandForBOHB(time_attr="epoch", metric=OBJECTIVE, mode=space.mode, max_t=max_t,
                                reduction_factor=s.reduction_factor, stop_last_trials=False)
    brackets = (s.brackets or max_brackets(s, max_t)) if s.type == "hyperband" else 1
    return ASHAScheduler(time_attr="epoch", metric=OBJECTIVE, mode=space.mode, max_t=max_t,
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor, brackets=brackets,
                         stop_last_trials=False)
