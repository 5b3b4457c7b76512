"""Driver-side console lines of a search: a live line per running trial, one result line per finished one.

Why: trials run in Tune's trial processes, whose output goes to the log file (:mod:`ms2l_ray.console`);
Tune's own status table is kept for ``--verbose``. What a person needs from the terminal is which trial
is where and what each finished one scored, which Tune tells the driver through its callbacks.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from ms2l_ray.console import current, say
from ms2l_ray.studies.search.sampling import FINAL, OBJECTIVE, PHASE, REJECTED


class TrialLines(Callback):  # type: ignore[misc]
    """``[tune] 3/8 trial 7a1c_00002: val_top1=41.20`` per finished trial; a live ``phase epoch objective`` line.

    The count is out of ``total`` (the search's trials), not out of the trials Tune has created so far: Tune
    creates them one by one, so that count reads ``2/2`` while a third trial is still to come.
    """

    def __init__(self, metric: str, total: int = 0) -> None:
        self.metric = metric
        self.total = total
        self.done = 0

    def _count(self, trials: list[Any]) -> str:
        return f"{self.done}/{max(self.total, len(trials))}"

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        """Update ``trial``'s live line with its phase, epoch and objective."""
        if OBJECTIVE in result:
            current().progress(f"trial {trial.trial_id}", f"{result.get(PHASE, '?')} epoch {result.get('epoch', '?')} "
                                                          f"objective={float(result[OBJECTIVE]):.2f}")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Replace ``trial``'s live line by its result line: objective, rejected, or stopped early."""
        self.done += 1
        last = trial.last_result or {}
        if last.get(REJECTED):
            what = "rejected (config outside the space's constraints)"
        elif last.get(FINAL):
            what = f"{self.metric}={float(last[OBJECTIVE]):.2f}"
        else:
            what = f"stopped early at epoch {last.get('epoch', '?')} (proxy {float(last.get(OBJECTIVE, 0.0)):.2f})"
        current().finish(f"trial {trial.trial_id}")
        say(f"[tune] {self._count(trials)} trial {trial.trial_id}: {what}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Replace ``trial``'s live line by a FAILED line pointing at the log file."""
        self.done += 1
        current().finish(f"trial {trial.trial_id}")
        where = f"; details in {current().log_path}" if current().log_path else ""
        say(f"[tune] {self._count(trials)} trial {trial.trial_id}: FAILED{where}")
