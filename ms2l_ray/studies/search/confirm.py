"""Confirm the winners: rerun a search's top-k configurations over fresh seeds and report mean ± std.

A search selects the maximum of noisy objectives, so the winner's own value is biased upwards (the winner's
curse) and a lucky seed can beat a better configuration. ``ms2l tune … --confirm-top K --confirm-seeds S``
reruns the K best finished configurations with S new experiment seeds (``seed + 1 … seed + S``; the search's
own seed is excluded, so the mean is not contaminated by the selection) and ranks them by their mean.

The reruns are ordinary trials — the same trainable, pretrain then evaluation — in a second Tune experiment
(``<search>/confirm/``), so they run in parallel like the search did. In MLflow they are trial runs nested under
the search's parent run, tagged ``confirm=1``, ``confirm_of=<trial id>`` and ``confirm_rank=<k>``.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ms2l_ray.studies.search.sampling import FINAL, OBJECTIVE, REJECTED
from ms2l_ray.studies.search.summary import SUMMARY_DIR, TrialRow, best_row
from ms2l_ray.studies.search.trial import TrialSetup, run_trial
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger

CONFIRM_DIR = "confirm"
TAG_PREFIX = "_"  # trial config keys starting with it are run tags, not config (see trial.run_trial)


@dataclass(frozen=True)
class ConfirmSpec:
    """``--confirm-top``/``--confirm-seeds``: how many of the best configurations to rerun, over how many seeds.

    Why: the search's best objective is selected from many noisy trials, hence optimistic; fresh seeds give an
    unbiased mean ± std of the chosen configurations.
    """

    top: int  # configurations to rerun (the best finished ones)
    seeds: int  # fresh seeds per configuration

    def __post_init__(self) -> None:
        if self.top < 1 or self.seeds < 1:
            raise ValueError(f"--confirm-top and --confirm-seeds must be >= 1, got {self.top} and {self.seeds}")


@dataclass
class ConfirmedConfig:
    """One rerun configuration: its search result beside the objectives its confirmation seeds reached."""

    rank: int  # 1 = the search's best
    trial_id: str  # the search trial whose configuration this is
    search_objective: float  # its objective in the search (selected, hence optimistic)
    params: dict[str, Any]
    seeds: list[int] = field(default_factory=list)  # seeds that finished
    objectives: list[float] = field(default_factory=list)
    test_top1: list[float] = field(default_factory=list)  # for information, never for selection
    failed: int = 0

    @property
    def mean(self) -> float:
        """Mean objective over the seeds that finished (nan when none did)."""
        return statistics.fmean(self.objectives) if self.objectives else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (nan for a single seed)."""
        return statistics.stdev(self.objectives) if len(self.objectives) > 1 else math.nan

    def test_mean_std(self) -> tuple[float, float]:
        """Mean and sample std of test top-1 over the seeds (nan where undefined); shown, never selected on."""
        t = self.test_top1
        return (statistics.fmean(t) if t else math.nan, statistics.stdev(t) if len(t) > 1 else math.nan)


@dataclass
class Confirmation:
    """The confirmation reruns of a search: every rerun configuration, ranked as in the search."""

    metric: str
    mode: str
    configs: list[ConfirmedConfig]

    def best(self) -> ConfirmedConfig | None:
        """The configuration with the best mean over the confirmation seeds."""
        done = [c for c in self.configs if c.objectives]
        sign = 1.0 if self.mode == "max" else -1.0
        return max(done, key=lambda c: sign * c.mean) if done else None

    def table(self) -> list[list[str]]:
        """Header and one row per configuration: search objective, confirmation mean ± std, seeds, test top-1."""
        head = ["rank", "trial", f"search {self.metric}", f"confirm {self.metric} mean ± std", "seeds",
                "test_top1 mean ± std (info)", "failed"]
        return [head] + [[str(c.rank), c.trial_id, f"{c.search_objective:.2f}", pm(c.mean, c.std),
                          ",".join(map(str, c.seeds)), pm(*c.test_mean_std()), str(c.failed)] for c in self.configs]

    def metrics(self) -> dict[str, float]:
        """Parent-run metrics ``confirm_rank<k>_mean/_std/_n``; undefined (nan) values are left out."""
        out: dict[str, float] = {}
        for c in self.configs:
            out[f"confirm_rank{c.rank}_mean"] = c.mean
            if not math.isnan(c.std):
                out[f"confirm_rank{c.rank}_std"] = c.std
            out[f"confirm_rank{c.rank}_n"] = float(len(c.objectives))
        return {k: v for k, v in out.items() if not math.isnan(v)}

    def to_json(self) -> dict[str, Any]:
        """The confirmation as a JSON document: the best trial id and every configuration's seeds and results."""
        best = self.best()
        return {"metric": self.metric, "best_trial_id": best.trial_id if best else None,
                "configs": [{"rank": c.rank, "trial_id": c.trial_id, "search_objective": c.search_objective,
                             "mean": c.mean, "std": c.std, "seeds": c.seeds, "objectives": c.objectives,
                             "test_top1": c.test_top1, "failed": c.failed, "params": c.params}
                            for c in self.configs]}


def pm(mean: float, std: float) -> str:
    """``"mean ± std"`` to two decimals; just the mean when ``std`` is nan, ``"-"`` when the mean is."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def top_rows(rows: list[TrialRow], mode: str, k: int) -> list[TrialRow]:
    """The ``k`` best finished trials, best first."""
    out: list[TrialRow] = []
    rest = list(rows)
    while len(out) < k:
        best = best_row(rest, mode)
        if best is None:
            break
        out.append(best)
        rest = [r for r in rest if r is not best]
    return out


def confirmation_seeds(base_seed: int, n: int) -> list[int]:
    """Fresh seeds: never the search's own, whose value selected the configuration."""
    return [base_seed + i for i in range(1, n + 1)]


def confirmation_points(top: list[TrialRow], seeds: list[int]) -> list[dict[str, Any]]:
    """One trial config per (configuration, seed): the sampled parameters, the seed, and the run tags."""
    return [{**r.params, "seed": s, f"{TAG_PREFIX}{tag.CONFIRM}": 1, f"{TAG_PREFIX}{tag.CONFIRM_OF}": r.trial_id,
             f"{TAG_PREFIX}{tag.CONFIRM_RANK}": i} for i, r in enumerate(top, 1) for s in seeds]


def confirm_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable of a confirmation rerun: ``config["point"]`` is one of :func:`confirmation_points`."""
    run_trial(dict(config["point"]), setup)


def summarise(top: list[TrialRow], results: list[tuple[dict[str, Any], dict[str, Any] | None]], metric: str,
              mode: str) -> Confirmation:
    """Group the reruns' final reports (``(point, last result or None)``) by the configuration they confirm."""
    configs = [ConfirmedConfig(i, r.trial_id, float(r.objective or math.nan), dict(r.params))
               for i, r in enumerate(top, 1)]
    by_trial = {c.trial_id: c for c in configs}
    for point, last in sorted(results, key=lambda pr: int(pr[0]["seed"])):
        c = by_trial[point[f"{TAG_PREFIX}{tag.CONFIRM_OF}"]]
        if last is None or not last.get(FINAL) or last.get(REJECTED):
            c.failed += 1
            continue
        c.seeds.append(int(point["seed"]))
        c.objectives.append(float(last[OBJECTIVE]))
        if "test_top1" in last:
            c.test_top1.append(float(last["test_top1"]))
    return Confirmation(metric, mode, configs)


def run_confirmation(rows: list[TrialRow], spec: ConfirmSpec, setup: TrialSetup, directory: Path,
                     max_concurrent: int, verbose: int = 1) -> Confirmation | None:
    """Rerun the top ``spec.top`` configurations over ``spec.seeds`` fresh seeds; None when no trial finished.

    The reruns are a Tune grid under ``<directory>/confirm``.
    """
    from ray import tune

    from ms2l_ray.studies.search.runs import TrialRunsCallback
    from ms2l_ray.studies.search.tuner import TRIAL_DRIVER_RESOURCES

    top = top_rows(rows, setup.mode, spec.top)
    if not top:
        print("[tune] confirmation skipped: no trial finished")
        return None
    seeds = confirmation_seeds(setup.base.seed, spec.seeds)
    points = confirmation_points(top, seeds)
    print(f"[tune] confirming the top {len(top)} configurations over seeds {seeds} ({len(points)} reruns)")
    runs = setup.runs
    callbacks: list[Any] = [TrialRunsCallback(runs, OBJECTIVE, FINAL, REJECTED)] if runs else []
    trainable = tune.with_resources(tune.with_parameters(confirm_trial, setup=setup), TRIAL_DRIVER_RESOURCES)
    tuner = tune.Tuner(trainable, param_space={"point": tune.grid_search(points)},
                       tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
                       run_config=tune.RunConfig(name=CONFIRM_DIR, storage_path=str(directory), callbacks=callbacks,
                                                 failure_config=tune.FailureConfig(max_failures=0), verbose=verbose))
    grid = tuner.fit()
    results = [(dict((r.config or {})["point"]), None if r.error else dict(r.metrics or {}))
               for r in (grid[i] for i in range(len(grid)))]
    return summarise(top, results, setup.metric, setup.mode)


def report_confirmation(conf: Confirmation, directory: Path, parent: RunLogger | None) -> None:
    """Print the mean ± std table; write ``summary/confirm.{csv,md}``; log metrics and files on the parent."""
    from ms2l_ray.studies.search.summary import format_table, to_markdown

    lines = conf.table()
    out = directory / SUMMARY_DIR
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    (out / "confirm.csv").write_text(buf.getvalue())
    (out / "confirm.md").write_text(to_markdown(lines))
    best = conf.best()
    if parent is not None:
        parent.log_artifact(out / "confirm.csv")
        parent.log_artifact(out / "confirm.md")
        parent.log_metrics(conf.metrics(), step=0)
        if best is not None:
            parent.set_tags({tag.CONFIRMED_BEST_TRIAL_ID: best.trial_id})
    print("[tune] confirmation over fresh seeds (mean ± sample std; the search's own value is selection-biased):")
    print(format_table(lines))
    if best is not None:
        print(f"[tune] confirmed best: rank {best.rank} (trial {best.trial_id}), "
              f"{conf.metric} {pm(best.mean, best.std)}")
