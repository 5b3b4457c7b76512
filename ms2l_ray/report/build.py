"""``ms2l report``: a Markdown + self-contained HTML report of an ablation, a search or an experiment run.

Everything is read back from MLflow, never from a driver's memory, so a report can be built any time
after the fact, for runs made by other commands. A run's *kind* tag picks the section:

- ``ablation``: the mean ± std table (recomputed by :mod:`ms2l_ray.studies.ablation.table`), bars with error bars
  per metric, and pretraining loss curves per task (mean ± std over seeds, a line per cell);
- ``search`` (or any parent whose children carry ``trial_id``): the best trials, objective vs trial,
  parameter importance (from a ``param_importance.csv`` artifact, when the search logged one), parallel
  coordinates of the best trials, and the best trials' pretraining loss curves;
- anything else (an ``ms2l run`` experiment): its child runs and pretraining loss curves.

Every section ends with "Pretext-task health": the notes of each of its pretrain runs (their ``health``
tag, :mod:`ms2l_ray.train.health`) — a cell whose task sat at chance is visible next to its numbers.

The report is written to ``--out`` and logged as the parent run's ``report/`` artifacts (``report.md``,
``report.html``, the PNGs). The Markdown links the PNGs beside it; the HTML embeds them as base64.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.names import check_name
from ms2l_ray.report import plots
from ms2l_ray.report.render import Section, write_report
from ms2l_ray.studies.ablation.plots import ablation_bars
from ms2l_ray.tracking import query
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.artifacts import find_artifact, read_artifact_text
from ms2l_ray.tracking.runs import RunLogger, RunRef
from ms2l_ray.train.health import parse_health_tag

TASK_LOSSES = tuple(f"train_{k}" for k in tag.PRETRAIN_LOSSES)
RUN_ID = re.compile(r"[0-9a-f]{32}")
REPORT_KINDS = (tag.KIND_ABLATION, tag.KIND_SEARCH)


def _children(uri: str, run: Any) -> list[Any]:
    return query.children(uri, run.info.run_id, run.info.experiment_id)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------------------------- curves
def pretrain_curves(uri: str, groups: dict[str, list[str]]) -> bytes | None:
    """Loss curves of pretrain runs: per task loss, a line per group (mean ± std over its runs per epoch)."""
    per: dict[str, dict[str, tuple[list[float], list[float], list[float]]]] = {}
    for group, run_ids in groups.items():
        hist: dict[str, list[dict[int, float]]] = {}
        for rid in run_ids:
            metrics = query.get_run(uri, rid).data.metrics
            for key in (k for k in TASK_LOSSES if k in metrics):
                points = query.metric_history(uri, rid, key)
                hist.setdefault(key, []).append({m.step: m.value for m in sorted(points, key=lambda m: m.timestamp)})
        for key, series in hist.items():
            steps = sorted({s for h in series for s in h})
            vals = [[h[s] for h in series if s in h] for s in steps]
            std = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals]
            per.setdefault(key, {})[group] = ([float(s) for s in steps], [float(np.mean(v)) for v in vals], std)
    if not per:
        return None
    return plots.loss_curves({k: per[k] for k in TASK_LOSSES if k in per})


# --------------------------------------------------------------------------------------------- health
def health_rows(runs: list[tuple[str, str | None]]) -> list[list[str]]:
    """Rows ``[run label, notes]`` from each pretrain run's ``health`` tag (``ms2l_ray.train.health``).

    ``healthy`` for an empty list; ``not assessed`` for a run without the tag (made before it existed, or
    still running) — saying so, rather than leaving the run out, keeps "no notes" from reading as healthy.
    """
    rows = []
    for label, value in runs:
        messages = parse_health_tag(value)
        text = "not assessed" if messages is None else ("healthy" if not messages else "; ".join(messages))
        rows.append([label, text])
    return rows


def health_section(sec: Section, runs: list[tuple[str, str | None]]) -> None:
    """The "Pretext-task health" part of a section: one row per pretrain run (nothing without pretrain runs)."""
    if not runs:
        return
    rows = health_rows(runs)
    flagged = sum(r[1] not in ("healthy", "not assessed") for r in rows)
    sec.text(f"**Pretext-task health** ({flagged} of {len(rows)} pretrain runs flagged: a task stuck at chance, "
             f"solved from the first epoch, loss terms orders of magnitude apart, or collapsed features):")
    sec.table(["pretrain run", "health"], rows)


def _health_tag(uri: str, run_id: str) -> str | None:
    return query.get_run(uri, run_id).data.tags.get(tag.HEALTH)


# --------------------------------------------------------------------------------------------- sections
def ablation_section(uri: str, run: Any) -> Section:
    """An ablation parent run's section: its grid and settings, the mean ± std table, figures and time split."""
    from ms2l_ray.studies.ablation.table import ablation_table, fetch_cell_seed_runs

    p = run.data.params
    sec = Section(f"Ablation {run.info.run_name}", run.info.run_id)
    sec.text(f"Grid `{p.get('ablation.grid', '?')}` (preset `{p.get('ablation.preset', '?')}`, seeds "
             f"{p.get('ablation.seeds', '?')}, evaluations {p.get('ablation.evaluations', '?')}); parent run "
             f"`{run.info.run_id}`, status {run.info.status}.")
    table = ablation_table(uri, run.info.run_id)
    head, rows = table.text_rows()
    sec.table(head, rows)
    sec.text(table.footnote())
    if table.rows:
        cells = [r.cell for r in table.rows]
        means = {col: [r.mean(col) for r in table.rows] for col in table.columns}
        stds = {col: [r.std(col) for r in table.rows] for col in table.columns}
        png = ablation_bars(cells, table.columns, means, stds, [r.n for r in table.rows])
        sec.figure("ablation_bars.png", png, "Mean per cell with ± std error bars over seeds (n under each bar).")
    results = fetch_cell_seed_runs(uri, run.info.run_id)
    split = time_split(uri, run)
    if split:
        sec.text(describe_time_split(split))
    groups: dict[str, list[str]] = {}
    for r in results:
        if r.status == "FINISHED" and r.pretrain_run_id:
            groups.setdefault(r.cell, []).append(r.pretrain_run_id)
    sec.figure("pretrain_losses.png", pretrain_curves(uri, groups),
               "Pretraining losses per task (mean ± std over seeds); a task switched off logs no curve.")
    health_section(sec, [(f"{r.cell} seed {r.seed}", _health_tag(uri, r.pretrain_run_id))
                         for r in results if r.pretrain_run_id])
    sec.text("Cell-seed runs:")
    sec.table(["cell", "seed", "status", "run id"], [[r.cell, str(r.seed), r.status, f"`{r.run_id}`"] for r in results])
    return sec


def time_split(uri: str, run: Any) -> dict[str, float]:
    """Where an ablation's time went: parent wall time, Σ job run durations, Σ ``epoch_time_s`` (training steps).

    Jobs of concurrent cell-seeds overlap, so Σ jobs can exceed the wall time; the training fraction is
    Σ epoch times / wall time, the rest is Ray/Tune/MLflow overhead (process start-up, placement,
    checkpointing, artifact logging), data generation and evaluation feature extraction.
    """
    jobs = [r for r in query.ablation_runs(uri, run.info.run_id, run.info.experiment_id)
            if r.data.tags.get(tag.KIND) in tag.JOB_KINDS and r.info.end_time]
    if not jobs or not run.info.end_time:
        return {}
    train = 0.0
    for j in jobs:
        if tag.EPOCH_TIME in j.data.metrics:
            train += sum(m.value for m in query.metric_history(uri, j.info.run_id, tag.EPOCH_TIME))
    wall = (run.info.end_time - run.info.start_time) / 1000
    return {"wall_s": wall, "jobs_s": sum((j.info.end_time - j.info.start_time) / 1000 for j in jobs),
            "train_s": train, "n_jobs": float(len(jobs)), "train_fraction": train / wall if wall > 0 else 0.0}


def describe_time_split(split: dict[str, float]) -> str:
    """One sentence on where a study's wall time went: jobs, training epochs, and the rest as overhead."""
    return (f"Time: {split['wall_s']:.0f} s wall for the parent run (including any pause before a resume); "
            f"{split['n_jobs']:.0f} jobs took {split['jobs_s']:.0f} s in all (concurrent jobs overlap); training "
            f"epochs (Σ epoch_time_s) {split['train_s']:.0f} s = {100 * split['train_fraction']:.0f}% of the wall "
            f"time, the rest is Ray/MLflow overhead, data generation and evaluation.")


def _search_mode(run: Any) -> tuple[str, str]:
    """(mode, metric) of a search parent, default (max, objective).

    Read from its ``mode``/``metric`` tags (as ``ms2l tune`` sets them), else from any tag or param ending in
    ``.mode``/``.direction``/``.metric``.
    """
    tags, items = run.data.tags, {**run.data.params, **run.data.tags}
    mode, metric = str(tags.get(tag.MODE, "")).lower(), str(tags.get(tag.METRIC, ""))
    for k, v in items.items():
        leaf = k.rpartition(".")[2]
        if not mode and leaf in ("mode", "direction") and str(v).lower() in ("min", "minimize", "max", "maximize"):
            mode = str(v).lower()
        elif not metric and leaf == "metric" and v:
            metric = str(v)
    return ("min" if mode.startswith("min") else "max"), (metric or tag.OBJECTIVE)


def _objective(trial: Any, metric: str) -> float | None:
    """A trial's objective: its ``objective`` metric, else the metric the search optimised (e.g. ``val_top1``)."""
    m = trial.data.metrics
    value = m.get(tag.OBJECTIVE, m.get(metric, m.get(metric.rpartition(".")[2])))
    return None if value is None else float(value)


def _importance_values(uri: str, run: Any) -> tuple[list[str], list[float]] | None:
    """From a ``param_importance.csv``/``importance.csv`` artifact, else the parent's ``importance.*`` metrics."""
    for name in ("param_importance.csv", "importance.csv"):
        rows = _read_csv_artifact(uri, run.info.run_id, name)
        found = _importance(rows) if rows else None
        if found:
            return found
    metrics = {k.partition(".")[2]: v for k, v in run.data.metrics.items() if k.startswith("importance.")}
    return (list(metrics), list(metrics.values())) if metrics else None


def _read_csv_artifact(uri: str, run_id: str, name: str) -> list[dict[str, str]] | None:
    path = find_artifact(uri, run_id, name)
    if path is None:
        return None
    return list(csv.DictReader(io.StringIO(read_artifact_text(uri, run_id, path))))


def _importance(rows: list[dict[str, str]]) -> tuple[list[str], list[float]] | None:
    """The name column (first non-numeric) and value column (first numeric) of a parameter-importance CSV."""
    if not rows:
        return None
    cols = list(rows[0])

    def numeric(col: str) -> bool:
        try:
            [float(r[col]) for r in rows]
        except (TypeError, ValueError):
            return False
        return True

    name_col = next((k for k in cols if not numeric(k)), None)
    value_col = next((k for k in cols if numeric(k)), None)
    if name_col is None or value_col is None:
        return None
    return [r[name_col] for r in rows], [float(r[value_col]) for r in rows]


def search_section(uri: str, run: Any, top_k: int) -> Section:
    """A search parent's section: its ``top_k`` trials by objective, history, importance and curves.

    That is the objective history, importance, parallel coordinates and the best trials' pretraining curves,
    everything read from ``uri``.
    """
    mode, metric = _search_mode(run)
    sec = Section(f"Search {run.info.run_name}", run.info.run_id)
    trials = [r for r in _children(uri, run) if tag.TRIAL_ID in r.data.tags or tag.OBJECTIVE in r.data.metrics]
    scored = [(r, v) for r in trials if (v := _objective(r, metric)) is not None]
    sec.text(f"Parent run `{run.info.run_id}`, status {run.info.status}: {len(trials)} trials, {len(scored)} with an "
             f"objective ({metric}, {mode}); trials stopped early or rejected have none.")
    if not scored:
        return sec
    sign = 1.0 if mode == "max" else -1.0
    best = sorted(scored, key=lambda rv: -sign * rv[1])[:top_k]
    searched = [k for k in run.data.params.get("parameters", "").split(",") if k]  # ``ms2l tune`` lists them
    varying = [k for k in searched if any(k in r.data.params for r, _ in scored)] or sorted(
        k for k in {k for r, _ in scored for k in r.data.params} if len({r.data.params.get(k) for r, _ in scored}) > 1)
    head = ["rank", "trial", "objective", "status"] + varying
    sec.table(head, [[str(i + 1), r.data.tags.get(tag.TRIAL_ID, r.info.run_name), _fmt(v), r.info.status]
                     + [r.data.params.get(k, "") for k in varying] for i, (r, v) in enumerate(best)])
    sec.figure("search_history.png", plots.search_history([v for _, v in scored], mode, metric),
               f"Objective ({metric}) per trial in start order, with the best so far.")
    imp = _importance_values(uri, run)
    if imp:
        sec.figure("param_importance.png", plots.importance_bars(*imp), "Parameter importance (from the search).")
    if varying and len(best) > 1:
        sec.figure("parallel_coordinates.png",
                   plots.parallel_coordinates(varying, [r.data.params for r, _ in best], [v for _, v in best], mode),
                   f"Parallel coordinates of the {len(best)} best trials (colour: objective; thick: best).")
    groups: dict[str, list[str]] = {}
    health: list[tuple[str, str | None]] = []
    for r, _ in best[:5]:
        jobs = [j for j in _children(uri, r)
                if j.data.tags.get(tag.KIND) == tag.KIND_PRETRAIN and j.info.status == "FINISHED"]
        label = f"trial {r.data.tags.get(tag.TRIAL_ID, r.info.run_name)}"
        if jobs:
            groups[label] = [j.info.run_id for j in jobs]
        health += [(label, j.data.tags.get(tag.HEALTH)) for j in jobs]
    sec.figure("pretrain_losses.png", pretrain_curves(uri, groups), "Pretraining losses per task of the best trials.")
    health_section(sec, health)
    return sec


def runs_section(uri: str, run: Any) -> Section:
    """Generic parent (e.g. ``ms2l run``): its child runs and their pretraining curves."""
    sec = Section(f"Run {run.info.run_name}", run.info.run_id)
    kids = _children(uri, run)
    sec.text(f"Run `{run.info.run_id}` (kind {run.data.tags.get(tag.KIND, '?')}), status {run.info.status}, "
             f"{len(kids)} child runs.")
    keys = (*tag.EVAL_METRICS, "train_loss")
    sec.table(["run", "kind", "evaluation", "status"] + list(keys),
              [[k.info.run_name, k.data.tags.get(tag.KIND, ""), k.data.tags.get(tag.EVALUATION, ""), k.info.status]
               + [_fmt(k.data.metrics[m]) if m in k.data.metrics else "" for m in keys] for k in kids])
    pretrain = [k for k in kids if k.data.tags.get(tag.KIND) == tag.KIND_PRETRAIN]
    sec.figure("pretrain_losses.png", pretrain_curves(uri, {k.info.run_name: [k.info.run_id] for k in pretrain}),
               "Pretraining losses per task.")
    health_section(sec, [(k.info.run_name, k.data.tags.get(tag.HEALTH)) for k in pretrain])
    return sec


def section_for(uri: str, run: Any, top_k: int = 10) -> Section:
    """The section a run's ``kind`` tag picks: ablation, search (or a parent of trials), else its child runs."""
    kind = run.data.tags.get(tag.KIND)
    if kind == tag.KIND_ABLATION:
        return ablation_section(uri, run)
    if kind == tag.KIND_SEARCH or any(tag.TRIAL_ID in r.data.tags for r in _children(uri, run)):
        return search_section(uri, run, top_k)
    return runs_section(uri, run)


# ------------------------------------------------------------------------------------------------ entry
def resolve_targets(uri: str, target: str) -> tuple[str, list[Any]]:
    """A run id → that run; an experiment name → its top-level ablation/search runs (else its top-level runs)."""
    if RUN_ID.fullmatch(target):
        try:
            run = query.get_run(uri, target)
        except Exception as exc:  # noqa: BLE001 - MLflow raises its own error type for a missing run
            if "not found" not in str(exc).lower() and "RESOURCE_DOES_NOT_EXIST" not in str(exc):
                raise
        else:
            return f"Report: {run.info.run_name}", [run]
    exp = query.find_experiment(uri, target)
    if exp is None:
        names = query.experiment_names(uri)
        raise ValueError(f"{target!r} is neither a run id nor an experiment name; experiments: {names}")
    top = query.top_level_runs(uri, exp.experiment_id)
    chosen = [r for r in top if r.data.tags.get(tag.KIND) in REPORT_KINDS] or top
    if not chosen:
        raise ValueError(f"experiment {target!r} has no runs")
    return f"Report: experiment {target}", sorted(chosen, key=lambda r: -(r.info.start_time or 0))


def attach(tracking_uri: str, section: Section, title: str) -> None:
    """Log one run's own report (md, html, PNGs) as its ``report/`` artifacts."""
    with tempfile.TemporaryDirectory() as tmp:
        write_report(Path(tmp), title, [section])
        RunLogger(RunRef(tracking_uri, section.run_id)).log_artifacts(tmp, "report")


def build_report(target: str, *, tracking_uri: str, out_dir: Path | None = None, attach_to_runs: bool = True,
                 top_k: int = 10) -> list[Path]:
    """Build the report of ``target`` (run id or experiment name); return the local files written."""
    title, runs = resolve_targets(tracking_uri, target)
    sections = [section_for(tracking_uri, r, top_k) for r in runs]
    out = out_dir or Path("reports") / check_name(  # an experiment named '..' must not write outside reports/
        "report folder reports/<target> (choose another with --out)", re.sub(r"[^A-Za-z0-9_.-]", "_", target))
    md, page = write_report(out, title, sections)
    if attach_to_runs:
        for s in sections:
            attach(tracking_uri, s, f"Report: {s.title}")
    return [md, page] + sorted(out.glob("*.png"))
