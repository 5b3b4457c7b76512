"""The search's MLflow tree: parent (kind=search) → one run per trial (kind=trial) → its pretrain and evaluation.

Trial processes can die without a ``finally`` — ASHA stops a trial by ending its actor, a killed driver takes its
trials with it — so runs are closed from the outside too: :class:`TrialRunsCallback` (on the Tune driver) closes
the runs of trials that were cut or failed, and :func:`close_orphans` closes what a killed driver left behind.
A trial run is found again by its ``trial_id`` tag under the parent; that is how a resumed search avoids
duplicating a trial that already finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from ms2l_ray.tracking import query
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, RunRef


@dataclass(frozen=True)
class SearchRuns:
    """Where the tree lives (plain strings: travels to trial actors and into Tune's pickled callbacks)."""

    tracking_uri: str
    parent_run_id: str

    def children(self, run_id: str) -> list[Any]:
        """The runs directly under ``run_id`` (a trial's pretrain and evaluation runs), in start order."""
        return query.children(self.tracking_uri, run_id)

    def trial_runs(self) -> list[Any]:
        """Every trial run of the search, whatever its status."""
        return query.children_of_kind(self.tracking_uri, self.parent_run_id, tag.KIND_TRIAL)

    def find_trial(self, trial_id: str) -> Any | None:
        """The trial's run (the most recent one, should an old driver have left two)."""
        runs = [r for r in self.trial_runs() if r.data.tags.get(tag.TRIAL_ID) == trial_id]
        return max(runs, key=lambda r: r.info.start_time) if runs else None

    def logger(self, run_id: str) -> RunLogger:
        """A logger into one run of the tree."""
        return RunLogger(RunRef(self.tracking_uri, run_id))

    def close_children(self, run_id: str, status: str = "KILLED") -> None:
        """End the still-RUNNING jobs under a trial run (their process is gone)."""
        query.end_open_children(self.tracking_uri, run_id, status)

    def close_trial(self, trial_id: str, outcome: str, status: str, metrics: dict[str, float] | None = None) -> None:
        """Close a trial run that its own process could not close; a FINISHED run is left alone."""
        run = self.find_trial(trial_id)
        if run is None or run.info.status == "FINISHED":
            return
        log = self.logger(run.info.run_id)
        self.close_children(run.info.run_id)
        log.set_tags({tag.OUTCOME: outcome})
        if metrics:
            log.log_metrics(metrics, step=0)
        log.end(status)

    def close_orphans(self, known_trial_ids: set[str]) -> int:
        """Trial runs that no Tune trial will ever finish (created just before a driver was killed)."""
        n = 0
        for r in self.trial_runs():
            if r.info.status == "RUNNING" and r.data.tags.get(tag.TRIAL_ID) not in known_trial_ids:
                self.close_children(r.info.run_id)
                self.logger(r.info.run_id).set_tags({tag.OUTCOME: tag.OUTCOME_ORPHANED})
                self.logger(r.info.run_id).end("KILLED")
                n += 1
        return n


class TrialRunsCallback(Callback):  # type: ignore[misc]
    """Driver-side: close the MLflow runs of trials ASHA cut (FINISHED, outcome=early_stopped) or that failed."""

    def __init__(self, runs: SearchRuns, objective: str, final: str, rejected: str) -> None:
        self.runs, self.objective, self.final, self.rejected = runs, objective, final, rejected

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Close the run of a trial the scheduler cut (FINISHED, early_stopped); finished trials closed their own."""
        last = trial.last_result or {}
        if last.get(self.final) or last.get(self.rejected) or self.objective not in last:
            return  # finished or rejected: the trial closed its own run
        metrics = {"stopped_at_epoch": float(last.get("epoch", 0)), "last_proxy": float(last[self.objective])}
        self.runs.close_trial(trial.trial_id, tag.OUTCOME_EARLY_STOPPED, "FINISHED", metrics)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Close a failed trial's run as FAILED, so no run stays RUNNING after the search."""
        self.runs.close_trial(trial.trial_id, tag.OUTCOME_FAILED, "FAILED")
