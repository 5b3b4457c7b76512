"""After the search: one row per trial, the best config, and what the parent run keeps (tables, plot, best metrics).

A row's status says how the trial ended: ``finished`` (evaluated; its objective is the validation metric),
``early_stopped`` (cut by ASHA on the proxy; it has no objective, only its last proxy value),
``rejected`` (a config the model refuses, e.g. every task weight 0), ``error``, ``interrupted`` (the search
was stopped with Ctrl-C before the trial ended; ``--resume`` continues it), and, when the time budget ended the
search, ``budget_stopped`` (it was running) or ``not_started`` (it was queued); ``--resume`` continues those too.
A trial whose MLflow run says it finished is ``finished`` whatever Tune last heard from it: Tune can lose a
trial's last report when the search stops just as it arrives (:func:`recover_finished`).

Every summary also measures the proxy's fidelity (:mod:`ms2l_ray.studies.search.fidelity`): how well the proxy at each
rung ranks the finished trials like their final objective, and whether a cut trial was within noise of a survivor.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import Config, to_dict
from ms2l_ray.studies.search.fidelity import Fidelity, Noise, TrialHistory, proxy_fidelity
from ms2l_ray.studies.search.importance import Importance, param_importance, write_importance
from ms2l_ray.studies.search.sampling import FINAL, OBJECTIVE, PHASE, REJECTED
from ms2l_ray.studies.search.space import SearchSpace
from ms2l_ray.studies.search.trial import PRETRAIN_EPOCHS, REPORTED, TrialSetup
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger

SUMMARY_DIR = "summary"
BUDGET_STOPPED = "budget_stopped"  # running when the time budget ran out
NOT_STARTED = "not_started"  # queued when the time budget ran out
STATUSES = ("finished", "early_stopped", "rejected", "error", BUDGET_STOPPED, NOT_STARTED)


@dataclass
class TrialRow:
    """One trial of a search as the summary table, the report and the confirmation reruns read it."""

    trial_id: str
    status: str
    objective: float | None  # the evaluation's validation metric; finished trials only
    proxy: float | None  # last proxy value (at the cut for early_stopped trials)
    epoch: int | None  # last pretraining epoch
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)  # val/test top-1/top-5 of finished trials
    rungs: dict[int, float] = field(default_factory=dict)  # pretraining epoch → proxy reported there

    def history(self) -> TrialHistory:
        """The trial's proxy per rung and final objective, as the fidelity check takes them."""
        return TrialHistory(self.trial_id, self.status, self.rungs, self.objective)


@dataclass
class SearchResult:
    """What a search returns: its trials, best trial and config, parent run, importance and proxy fidelity."""

    name: str
    path: str
    rows: list[TrialRow]
    best: TrialRow | None
    best_config: dict[str, Any] | None
    parent_run_id: str | None
    importance: Importance
    counts: dict[str, int]
    fidelity: Fidelity = field(default_factory=Fidelity)
    confirmation: Any = None  # ms2l_ray.studies.search.confirm.Confirmation when --confirm-top ran
    ended_by_budget: bool = False  # the time budget stopped it (--resume continues the unfinished trials)

    def to_json(self) -> dict[str, Any]:
        """What ``ms2l tune --json`` writes."""
        best = self.best
        return {"name": self.name, "path": self.path, "parent_run_id": self.parent_run_id,
                "best_trial_id": best.trial_id if best else None, "best_objective": best.objective if best else None,
                "best_metrics": best.metrics if best else {}, "best_params": best.params if best else {},
                "best_config": self.best_config, "num_trials": len(self.rows), **self.counts,
                "importance": self.importance.values,
                "proxy_fidelity": {"metrics": self.fidelity.metrics(), "warnings": self.fidelity.warnings(),
                                   "noise": self.fidelity.noise},
                "confirmation": self.confirmation.to_json() if self.confirmation is not None else None,
                "ended_by": "time_budget" if self.ended_by_budget else None}


def _status(trial: Any, ended_by_budget: bool = False) -> str:
    last = trial.last_result or {}
    if trial.status == "ERROR":
        return "error"
    if trial.status != "TERMINATED":
        if ended_by_budget:  # Tune stopped the live trials as on Ctrl-C; --resume continues them
            return BUDGET_STOPPED if trial.status == "RUNNING" or last else NOT_STARTED
        return "interrupted"  # PENDING/RUNNING/PAUSED after Ctrl-C: --resume continues it
    if last.get(FINAL):
        return "finished"
    return "rejected" if last.get(REJECTED) or OBJECTIVE not in last else "early_stopped"


def collect_rows(grid: Any, space: SearchSpace, ended_by_budget: bool = False) -> list[TrialRow]:
    """Rows from Tune's experiment state (every trial, including those finished before a resume)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(grid.experiment_path)
    frames = analysis.trial_dataframes
    rows = []
    for t in analysis.trials:  # creation order
        last, status = t.last_result or {}, _status(t, ended_by_budget)
        epoch = last.get("epoch", last.get(PRETRAIN_EPOCHS))
        rows.append(TrialRow(trial_id=t.trial_id, status=status,
                             objective=float(last[OBJECTIVE]) if status == "finished" else None,
                             proxy=float(last[space.proxy]) if space.proxy in last else None,
                             epoch=int(epoch) if epoch is not None else None,
                             params={k: t.config[k] for k in space.keys if k in t.config},
                             metrics={k: float(last[k]) for k in REPORTED if k in last},
                             rungs=proxy_history(frames.get(t.trial_id), space.proxy)))
    return rows


def recover_finished(rows: list[TrialRow], setup: TrialSetup) -> list[TrialRow]:
    """Rows whose trial's MLflow run FINISHED with ``outcome=finished`` become ``finished`` with its metrics.

    Why: the trial logs its result and closes its run before its last report reaches Tune; a search that stops
    in between (a budget, Ctrl-C) would otherwise list a finished trial as stopped and drop its objective. The
    run is the trial's own record, so it wins. Likewise a trial with a run but no report yet was started, so the
    budget stopped it rather than found it queued. Untracked searches have only Tune's view.
    """
    runs = setup.runs
    if runs is None:
        return rows
    every = runs.trial_runs()
    started = {r.data.tags.get(tag.TRIAL_ID) for r in every}
    by_id = {r.data.tags.get(tag.TRIAL_ID): r for r in every
             if r.info.status == "FINISHED" and r.data.tags.get(tag.OUTCOME) == tag.OUTCOME_FINISHED}
    out = []
    for row in rows:
        if row.status == NOT_STARTED and row.trial_id in started:  # started, stopped before its first report
            row = dataclasses.replace(row, status=BUDGET_STOPPED)
        run = by_id.get(row.trial_id)
        if row.status == "finished" or run is None or setup.metric not in run.data.metrics:
            out.append(row)
            continue
        m = run.data.metrics
        out.append(dataclasses.replace(row, status="finished", objective=float(m[setup.metric]),
                                       proxy=float(m[setup.proxy]) if setup.proxy in m else row.proxy,
                                       metrics={k: float(m[k]) for k in REPORTED if k in m}))
    return out


def proxy_history(frame: Any, proxy: str) -> dict[int, float]:
    """Epoch → proxy from a trial's reported results (Tune's per-trial dataframe): the pretraining reports."""
    if frame is None or "epoch" not in getattr(frame, "columns", ()) or proxy not in frame.columns:
        return {}
    out: dict[int, float] = {}
    for _, r in frame.iterrows():
        phase_ok = PHASE not in frame.columns or r[PHASE] == "pretrain"
        if phase_ok and _finite(r["epoch"]) and _finite(r[proxy]):
            out[int(r["epoch"])] = float(r[proxy])
    return out


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def validation_count(cfg: Config) -> int | None:
    """How many validation samples the proxy is measured on (for its binomial noise); None if unknown."""
    from ms2l_ray.data.source import load_dataset

    try:
        return len(load_dataset(cfg.data, cfg.seed)[1].val) or None
    except (OSError, ValueError) as exc:
        print(f"[tune] proxy noise: cannot count validation samples ({exc})")
        return None


def measure_fidelity(rows: list[TrialRow], space: SearchSpace, cfg: Config) -> Fidelity:
    """The proxy's rank agreement with the objective at each rung, judged by the space's ``fidelity`` settings."""
    f = space.fidelity
    noise = Noise(tolerance=f.tolerance, n=None if f.tolerance > 0 else validation_count(cfg), z=f.z)
    return proxy_fidelity([r.history() for r in rows], space.rung_epochs(cfg), space.mode, noise, f.min_rho)


def fidelity_markdown(fid: Fidelity, proxy: str, metric: str) -> str:
    """The proxy-fidelity table (per-rung Spearman and Kendall tau-b) and its warnings, as Markdown."""
    head = [f"Proxy fidelity: {proxy} at each rung vs. the final {metric} (finished trials); noise = {fid.noise}",
            "", "| epoch | trials | Spearman | Kendall tau-b |", "|---|---|---|---|"]
    body = [f"| {r.epoch} | {r.n} | {_fmt(r.spearman)} | {_fmt(r.kendall)} |" for r in fid.rungs]
    warn = [""] + [f"- WARNING: {w}" for w in fid.warnings()] if fid.warnings() else []
    return "\n".join(head + body + warn) + "\n"


def best_row(rows: list[TrialRow], mode: str) -> TrialRow | None:
    """The finished trial with the best finite objective (``mode`` ``max`` or ``min``); None when none finished."""
    done = [r for r in rows if r.status == "finished" and r.objective is not None and math.isfinite(r.objective)]
    if not done:
        return None
    sign = 1.0 if mode == "max" else -1.0
    return max(done, key=lambda r: sign * r.objective)  # type: ignore[operator]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[TrialRow], keys: list[str], metric: str, proxy: str) -> list[list[str]]:
    """Header + one line per trial: id, status, objective, last proxy, epochs, test top-1 (info), parameters."""
    head = ["trial", "status", f"objective={metric}", proxy, "epochs", "test_top1(info)", *keys]
    body = [[r.trial_id, r.status, _fmt(r.objective), _fmt(r.proxy), _fmt(r.epoch), _fmt(r.metrics.get("test_top1")),
             *[_fmt(r.params.get(k)) for k in keys]] for r in rows]
    return [head, *body]


def format_table(lines: list[list[str]]) -> str:
    """Header and rows as aligned plain-text columns with a dashed rule under the header, for the terminal."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def to_csv(lines: list[list[str]]) -> str:
    """Header and rows as CSV text."""
    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    return buf.getvalue()


def to_markdown(lines: list[list[str]]) -> str:
    """Header and rows as a Markdown table."""
    md = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    return "\n".join(md + ["| " + " | ".join(line) + " |" for line in lines[1:]]) + "\n"


def finish_search(rows: list[TrialRow], space: SearchSpace, setup: TrialSetup, name: str, study_url: str,
                  directory: Path, parent: RunLogger | None) -> SearchResult:
    """Best trial, importance, local summary files, parent-run artifacts and metrics; print the table."""
    best = best_row(rows, space.mode)
    best_config = to_dict(setup.trial_config(best.params)) if best else None
    counts = {f"num_{s}": sum(r.status == s for r in rows) for s in STATUSES}
    imp = param_importance(study_url, name)
    fid = measure_fidelity(rows, space, setup.trial_config({}))
    out = directory / SUMMARY_DIR
    out.mkdir(parents=True, exist_ok=True)
    lines = table(rows, space.keys, space.metric, space.proxy)
    (out / "trials.csv").write_text(to_csv(lines))
    (out / "trials.md").write_text(to_markdown(lines))
    if best_config is not None:
        (out / "best_config.yaml").write_text(yaml.safe_dump(best_config, sort_keys=False))
    write_importance(imp, out)
    (out / "fidelity.md").write_text(fidelity_markdown(fid, space.proxy, space.metric))
    if parent is not None:
        for f in sorted(out.iterdir()):
            parent.log_artifact(f)
        metrics: dict[str, float] = {"num_trials": float(len(rows)), **{k: float(v) for k, v in counts.items()}}
        if best is not None:
            metrics["best_objective"] = float(best.objective)  # type: ignore[arg-type]
            metrics.update({f"best_{k}": v for k, v in best.metrics.items()})  # test_* for information only
            parent.set_tags({tag.BEST_TRIAL_ID: best.trial_id})
        metrics.update({f"importance.{k}": v for k, v in imp.values.items()})
        metrics.update(fid.metrics())
        parent.log_metrics(metrics, step=0)
        parent.set_tags({tag.PROXY_FIDELITY_WARNINGS: str(len(fid.warnings()))})
    print(format_table(lines))
    print(f"[tune] {len(rows)} trials: " + ", ".join(f"{v} {k[4:]}" for k, v in counts.items() if v))
    if imp.values:
        print("[tune] parameter importance (" + imp.evaluator + "): "
              + ", ".join(f"{k}={v:.2f}" for k, v in imp.values.items()))
    else:
        print(f"[tune] parameter importance unavailable: {imp.reason}")
    print(f"[tune] proxy fidelity ({space.proxy} vs. final {space.metric}; noise = {fid.noise}):")
    for line in fid.lines() or ["no rung with a reported proxy"]:
        print(f"[tune]   {line}")
    if best is not None:
        print(f"[tune] best trial {best.trial_id}: {space.metric}={best.objective:.2f} "
              f"(test_top1={best.metrics.get('test_top1', float('nan')):.2f}, for information only)")
        print("[tune] best config (" + str(out / "best_config.yaml") + "):")
        print(yaml.safe_dump(best.params, sort_keys=False).rstrip())
    else:
        print("[tune] no trial finished; no best config")
    return SearchResult(name=name, path=str(directory), rows=rows, best=best, best_config=best_config,
                        parent_run_id=parent.run_id if parent else None, importance=imp, counts=counts,
                        fidelity=fid)
