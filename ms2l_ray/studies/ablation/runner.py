"""Run an ablation grid: every cell × seed as one pipeline (pretrain + evaluations), tracked and resumable.

MLflow tree: one parent run per ablation (``kind=ablation``), one child per cell-seed
(``kind=ablation_cell``, tags ``cell``, ``seed``), and that cell-seed's pretrain and evaluation runs
beneath it (``run_pipeline(..., parent=cell_seed_run, make_parent=False)``). A baseline cell
(``grid.baselines``) is a cell-seed run like the others, with the tag ``baseline=<kind>`` on it and on its
evaluation runs, and no pretrain run: its evaluations start from a random encoder (``encoder_source=random``,
as ``ms2l evaluate --encoder random`` tags it) and carry ``reported_as`` — the grid evaluation labels whose
table columns they fill.

Resume: ``<storage>/<name>/ms2l_ablation.json`` holds the parent run id. ``--resume`` reopens that parent,
marks the runs a killed driver left RUNNING as KILLED, and runs only the cell-seeds without a FINISHED
run — so a finished cell-seed is never run twice, and an interrupted one is rerun from scratch (a
cell-seed's jobs are minutes; restoring half of one is not worth the bookkeeping).

Concurrency: with ``max_concurrent > 1`` each cell-seed pipeline runs inside a zero-CPU Ray task (the
Ray Train jobs it launches hold the resources), at most ``max_concurrent`` at a time.

Budget (``--time-budget``, :mod:`ms2l_ray.studies.budget`): cell-seeds then always run as Ray tasks, so that when
the budget is spent the running ones can be stopped (their runs KILLED with ``outcome=budget_stopped``) and no new
one starts. The table is built from the cell-seeds that finished, the parent is tagged ``ended_by=time_budget``,
and ``--resume`` runs the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import Config, ConfigError, config_hash
from ms2l_ray.console import current as current_console
from ms2l_ray.console import say
from ms2l_ray.jobs.driver import default_storage_path
from ms2l_ray.jobs.records import read_record, write_record
from ms2l_ray.jobs.tracked import ChainEvaluation, Execution, Tracking, log_dataset_input, tracked_chain
from ms2l_ray.names import unique_stamp
from ms2l_ray.studies.ablation.grid import Cell, Grid
from ms2l_ray.studies.ablation.table import AblationTable, ablation_table
from ms2l_ray.studies.budget import Budget, format_duration
from ms2l_ray.studies.experiment import Evaluation, run_pipeline
from ms2l_ray.tracking import query
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, RunRef, start_run, tracked_run
from ms2l_ray.tracking.store import redact_uri

RECORD = "ms2l_ablation.json"
SUMMARY_KEYS = tag.EVAL_METRICS


@dataclass
class AblationResult:
    """What an ablation returns: its mean ± std table and which cell-seeds ran, were skipped (resume) or failed."""

    name: str
    parent_run_id: str
    table: AblationTable
    ran: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    wall_time_s: float = 0.0
    out_dir: Path = Path(".")
    budget_stopped: list[tuple[str, int]] = field(default_factory=list)  # running when the budget ran out
    not_started: list[tuple[str, int]] = field(default_factory=list)  # still queued then
    ended_by_budget: bool = False


def read_ablation_record(storage_path: str, name: str) -> dict[str, Any] | None:
    """``<storage>/<name>/ms2l_ablation.json`` (local folder or ``s3://``-style URI), or None when absent."""
    return read_record(storage_path, name, RECORD)


def record_location(storage_path: str, name: str) -> str:
    """Where ablation ``name``'s record lives, for messages that tell a person what to resume or remove."""
    return f"{storage_path.rstrip('/')}/{name}/{RECORD}"


def _driver_alive(record: dict[str, Any]) -> bool:
    """True when the driver that wrote ``record`` still runs on this host (resuming it would race)."""
    pid = record.get("driver_pid")
    if record.get("host") != socket.gethostname() or not pid or pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "ablate" in cmdline or "ablation" in cmdline


def _open_parent(grid: Grid, name: str, tracking: Tracking, storage: str, out_dir: Path,
                 resume: bool) -> tuple[RunLogger, Path]:
    """Create the parent run and its record, or (``resume``) reopen the recorded one."""
    record = read_ablation_record(storage, name)
    if resume:
        if record is None:
            raise FileNotFoundError(f"--resume: no ablation named {name!r} (missing "
                                    f"{record_location(storage, name)}); pass the --name and --storage-path it "
                                    f"was started with")
        recorded, current = redact_uri(record["tracking_uri"]), redact_uri(tracking.uri)
        if recorded != current:  # the record keeps no credentials (older records may): compare redacted forms
            raise ConfigError(f"--resume: ablation {name!r} was tracked in {recorded}, not {current}")
        if _driver_alive(record):
            raise ConfigError(f"--resume: ablation {name!r} is still running (driver pid {record['driver_pid']})")
        parent = RunLogger(RunRef(tracking.uri, record["parent_run_id"]))
        parent.resume()
        record.update(tracking_uri=recorded, driver_pid=os.getpid(), host=socket.gethostname(),
                      resumed_at=time.strftime("%Y%m%d-%H%M%S"))
        write_record(storage, name, RECORD, record)
        return parent, Path(record["out_dir"])
    if record is not None:
        raise ConfigError(f"an ablation named {name!r} already exists ({record_location(storage, name)}); pass "
                          f"--resume to continue it, or another --name")
    parent = start_run(tracking.uri, tracking.experiment, name, None,
                       {tag.KIND: tag.KIND_ABLATION, tag.ABLATION: grid.name, tag.ABLATION_NAME: name})
    parent.log_params({"ablation.grid": grid.name, "ablation.source": grid.source, "ablation.preset": grid.preset,
                       "ablation.seeds": ",".join(map(str, grid.seeds)),
                       "ablation.cells": ",".join(c.name for c in grid.cells),
                       "ablation.baselines": ",".join(b.name for b in grid.baselines),
                       "ablation.columns": ",".join(grid.metrics),
                       "ablation.evaluations": ",".join(e.label for e in grid.evaluations)})
    parent.log_text(yaml.safe_dump(grid.to_dict(), sort_keys=False), "ablation/grid.yaml")
    write_record(storage, name, RECORD, {
        "name": name, "parent_run_id": parent.run_id, "tracking_uri": redact_uri(tracking.uri),
        "experiment": tracking.experiment, "out_dir": str(out_dir), "grid": grid.to_dict(),
        "driver_pid": os.getpid(), "host": socket.gethostname(),
        "created": time.strftime("%Y%m%d-%H%M%S")})
    return parent, out_dir


def _plan(grid: Grid, tracking: Tracking, parent_id: str, log: Callable[[str], None]) -> tuple[list[tuple[Cell, int]],
                                                                                              list[tuple[str, int]]]:
    """Cell-seeds still to run; runs left RUNNING by a dead driver are marked KILLED on the way."""
    done: dict[tuple[str, int], Any] = {}
    for r in query.ablation_runs(tracking.uri, parent_id):
        t = r.data.tags
        if r.info.status in ("RUNNING", "SCHEDULED"):
            RunLogger(RunRef(tracking.uri, r.info.run_id)).end("KILLED")
            log(f"[ablate] marked {t.get(tag.KIND)} run {r.info.run_id} (cell {t.get(tag.CELL)}, seed "
                f"{t.get(tag.SEED)}) KILLED: its driver is gone; the cell-seed reruns")
        elif r.info.status == "FINISHED" and t.get(tag.KIND) == tag.KIND_CELL:
            done[(t[tag.CELL], int(t[tag.SEED]))] = r
    todo, skipped = [], []
    for cell, seed in grid.cell_seeds():
        run = done.get((cell.name, seed))
        if run is None:
            todo.append((cell, seed))
            continue
        want = config_hash(grid.cell_config(cell, seed))
        if run.data.tags.get(tag.CONFIG_HASH) != want:
            raise ConfigError(f"--resume: cell {cell.name!r} seed {seed} finished with another config "
                              f"(hash {run.data.tags.get(tag.CONFIG_HASH)} vs {want} now): the grid or --set changed "
                              f"since the ablation started; start a new ablation with another --name")
        skipped.append((cell.name, seed))
    return todo, skipped


def _baseline(cfg: Config, jobs: list[tuple[Evaluation, list[str]]], name: str, out_dir: str, tracking: Tracking,
              execution: Execution, cell_ref: RunRef, tags: dict[str, Any], title: str) -> dict[str, float]:
    """A baseline cell-seed: no pretraining, each job on a fresh random encoder (``Grid.baseline_runs``).

    All its jobs run in one Train run (``tracked_chain`` without a pretraining).
    """
    chain_jobs = [ChainEvaluation(ev.apply(cfg), f"{name}-{labels[0]}", Path(out_dir) / labels[0],
                                  {**tags, tag.EVALUATION: labels[0], tag.REPORTED_AS: ",".join(labels),
                                   tag.ENCODER_SOURCE: tag.ENCODER_RANDOM}, pretrained=False,
                                  title=f"{title} / {labels[0]}")
                  for ev, labels in jobs]
    chain = tracked_chain(None, chain_jobs, name=f"{name}-{unique_stamp()}", pretrain_name="",
                          pretrain_out=Path(out_dir), tracking=tracking, execution=execution,
                          parent=RunLogger(cell_ref))
    summary: dict[str, float] = {}
    for (_, labels), outcome in zip(jobs, chain.evaluations, strict=True):
        summary.update({f"{lab}.{k}": v for lab in labels for k, v in outcome.metrics.items() if k in SUMMARY_KEYS})
    return summary


def _pipeline(cfg: Config, evaluations: list[Evaluation], name: str, out_dir: str, tracking: Tracking,
              execution: Execution, cell_ref: RunRef, tags: dict[str, Any],
              baseline_jobs: list[tuple[Evaluation, list[str]]] | None = None, title: str = "") -> dict[str, float]:
    """One cell-seed: pretrain + evaluations (or a baseline's jobs) under the cell-seed run; the summary metrics.

    ``name`` keys Ray storage; ``title`` (:func:`cell_seed_title`) begins the MLflow names of its runs.
    """
    title = title or name
    if baseline_jobs is not None:
        return _baseline(cfg, baseline_jobs, name, out_dir, tracking, execution, cell_ref, tags, title)
    result = run_pipeline(cfg, evaluations, name=name, out_root=Path(out_dir), tracking=tracking,
                          execution=execution, parent=RunLogger(cell_ref), tags=tags, make_parent=False, title=title)
    summary = {f"{lab}.{k}": v for lab, m in result.evaluations.items() for k, v in m.items() if k in SUMMARY_KEYS}
    summary.update({f"pretrain.{k}": v for k, v in result.pretrain.items() if k.startswith("train_")})
    return summary


def cell_seed_title(grid: str, cell: str, seed: int) -> str:
    """A cell-seed's MLflow run name, read like the study: ``quick / contrastive / seed 1``.

    Its jobs append ``/ pretrain``, ``/ linear`` … (the parent run carries the ablation's unique name).
    """
    return f"{grid} / {cell} / seed {seed}"


class _CellSeedJobs:
    """Starts and finishes cell-seed runs; runs pipelines in-process or as Ray tasks."""

    def __init__(self, grid: Grid, name: str, tracking: Tracking, execution: Execution, parent: RunLogger,
                 out_dir: Path, log: Callable[[str], None]) -> None:
        self.grid, self.name, self.tracking, self.execution = grid, name, tracking, execution
        self.parent, self.out_dir, self.log = parent, out_dir, log
        self.ran: list[tuple[str, int]] = []
        self.failed: list[tuple[str, int, str]] = []
        self.budget_stopped: list[tuple[str, int]] = []
        self.not_started: list[tuple[str, int]] = []

    def start(self, cell: Cell, seed: int) -> tuple[RunLogger, tuple[Any, ...]]:
        cfg = self.grid.cell_config(cell, seed)
        tags: dict[str, Any] = {tag.CELL: cell.name, tag.SEED: seed, tag.ABLATION: self.grid.name,
                                tag.ABLATION_RUN_ID: self.parent.run_id}
        if cell.baseline:
            tags[tag.BASELINE] = cell.baseline
        title = cell_seed_title(self.grid.name, cell.name, seed)
        run = start_run(self.tracking.uri, self.tracking.experiment, title, self.parent,
                        {tag.KIND: tag.KIND_CELL, tag.CONFIG_HASH: config_hash(cfg), **tags})
        run.log_params({"cell": cell.name, "seed": seed, "cell.delta": json.dumps(cell.delta, sort_keys=True)})
        log_dataset_input(run, cfg)  # the compare unit shows its data too (the runs table's Dataset column)
        out = (self.out_dir / cell.name / f"seed{seed}").resolve()
        return run, (cfg, self.grid.evaluations, f"{self.name}-{cell.name}-s{seed}", str(out), self.tracking,
                     self.execution, run.ref, tags, self.grid.baseline_runs(cell) if cell.baseline else None, title)

    def finish(self, cell: Cell, seed: int, run: RunLogger, t0: float, summary: dict[str, float] | None,
               error: BaseException | None, total: int) -> None:
        current_console().finish(f"{self.name}-{cell.name}-s{seed}-")  # its jobs' live lines, should any be left
        if error is None and summary is not None:
            run.log_metrics(summary, step=0)
            run.end("FINISHED")
            self.ran.append((cell.name, seed))
            shown = " ".join(f"{k}={v:.2f}" for k, v in summary.items() if k.endswith("top1"))
            self.log(f"[ablate] {len(self.ran)}/{total} cell={cell.name} seed={seed}: {shown} "
                     f"({time.perf_counter() - t0:.0f}s)")
        else:
            run.end("FAILED" if isinstance(error, Exception) else "KILLED")
            self.failed.append((cell.name, seed, repr(error)))
            where = current_console().log_path
            self.log(f"[ablate] cell={cell.name} seed={seed} FAILED: {error!r}"
                     + (f" (details in {where})" if where else ""))

    def sequential(self, todo: list[tuple[Cell, int]]) -> None:
        for cell, seed in todo:
            run, args = self.start(cell, seed)
            t0 = time.perf_counter()
            try:
                summary = _pipeline(*args)
            except Exception as exc:  # noqa: BLE001 - one failing cell must not lose the others
                self.finish(cell, seed, run, t0, None, exc, len(todo))
                continue
            except BaseException as exc:  # Ctrl-C (Ray Train's SIGINT handler exits via SystemExit)
                self.finish(cell, seed, run, t0, None, exc, len(todo))
                raise
            self.finish(cell, seed, run, t0, summary, None, len(todo))

    def stop_for_budget(self, cell: Cell, seed: int, run: RunLogger, budget: Budget) -> None:
        """A cell-seed the budget stopped: its run and its open jobs KILLED, ``outcome=budget_stopped``."""
        current_console().finish(f"{self.name}-{cell.name}-s{seed}-")
        query.end_open_children(self.tracking.uri, run.run_id, "KILLED", ("RUNNING", "SCHEDULED"))
        run.set_tags({tag.OUTCOME: tag.OUTCOME_BUDGET_STOPPED})
        run.end("KILLED")
        self.budget_stopped.append((cell.name, seed))
        self.log(f"[ablate] cell={cell.name} seed={seed}: stopped by the {budget.describe()}")

    def concurrent(self, todo: list[tuple[Cell, int]], max_concurrent: int, budget: Budget | None = None) -> None:
        import ray

        task = ray.remote(num_cpus=0, max_retries=0)(_pipeline)
        # RAY_ADDRESS: a cancelled task's Train controller is cleaned up by Train's PlacementGroupCleaner, which
        # finds this cluster only through it (see studies/search/trial.py); RAY_TRAIN_*: the driver's settings
        env = {k: v for k, v in os.environ.items() if k.startswith("RAY_TRAIN_")}
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        task = task.options(runtime_env={"env_vars": env})
        queue = list(todo)
        running: dict[Any, tuple[Cell, int, RunLogger, float]] = {}
        try:
            while queue or running:
                while queue and len(running) < max_concurrent and not (budget and budget.expired()):
                    cell, seed = queue.pop(0)
                    run, args = self.start(cell, seed)
                    running[task.remote(*args)] = (cell, seed, run, time.perf_counter())
                if budget is not None and budget.expired():
                    if running:  # what finished as the budget ran out is a result, not a stopped cell-seed
                        done, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
                        for ref in done:
                            self._collect(ref, running, len(todo))
                    self._end_by_budget(budget, running, queue)
                    return
                ready, _ = ray.wait(list(running), num_returns=1,
                                    timeout=None if budget is None else min(1.0, budget.remaining()))
                if ready:
                    self._collect(ready[0], running, len(todo))
        except BaseException as exc:  # interrupted: the in-flight cell-seeds are lost, mark them KILLED
            for ref, (cell, seed, run, t0) in running.items():
                ray.cancel(ref, force=True)
                self.finish(cell, seed, run, t0, None, exc, len(todo))
            raise

    def _collect(self, ref: Any, running: dict[Any, tuple[Cell, int, RunLogger, float]], total: int) -> None:
        """A finished task: its summary (or error) onto its cell-seed run."""
        import ray

        cell, seed, run, t0 = running.pop(ref)
        try:
            summary, error = ray.get(ref), None
        except Exception as exc:  # noqa: BLE001 - recorded on the cell-seed run, others continue
            summary, error = None, exc
        self.finish(cell, seed, run, t0, summary, error, total)

    def _end_by_budget(self, budget: Budget, running: dict[Any, tuple[Cell, int, RunLogger, float]],
                       queue: list[tuple[Cell, int]]) -> None:
        """Stop the running cell-seeds (their tasks, Train jobs and runs) and leave the queued ones for --resume."""
        import ray

        budget.fired = True
        self.log(f"[ablate] {budget.describe()} spent: stopping {len(running)} running cell-seed(s); "
                 f"{len(queue)} not started")
        for ref in running:
            ray.cancel(ref, force=True)
        for ref, (cell, seed, run, _) in running.items():
            with contextlib.suppress(Exception):  # wait for the task to be gone: its Train run must not log on
                ray.wait([ref], timeout=30)
            self.stop_for_budget(cell, seed, run, budget)
        self.not_started.extend((cell.name, seed) for cell, seed in queue)


def _publish(parent: RunLogger, table: AblationTable, out_dir: Path) -> None:
    """Table as Markdown + CSV and its bar plot (local and on the parent run), per-cell mean/std as parent metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(table.to_markdown())
    (out_dir / "table.csv").write_text(table.to_csv())
    parent.log_artifact(out_dir / "table.md", "ablation")
    parent.log_artifact(out_dir / "table.csv", "ablation")
    if table.rows:  # the table's picture beside it: the parent run's artifacts read without `ms2l report`
        from ms2l_ray.studies.ablation.plots import ablation_bars

        png = ablation_bars([r.cell for r in table.rows], table.columns,
                            {col: [r.mean(col) for r in table.rows] for col in table.columns},
                            {col: [r.std(col) for r in table.rows] for col in table.columns}, [r.n for r in table.rows])
        (out_dir / "ablation_bars.png").write_bytes(png)
        parent.log_artifact(out_dir / "ablation_bars.png", "ablation")
    metrics: dict[str, float] = {}
    for row in table.rows:
        metrics[f"{row.cell}.n"] = row.n
        for col in table.columns:
            for stat, value in (("mean", row.mean(col)), ("std", row.std(col))):
                if value == value:  # not NaN
                    metrics[f"{row.cell}.{col}.{stat}"] = value
            for ref, cmps in (("vs_best", table.vs_best), ("vs_random", table.vs_random)):
                cmp = cmps.get((row.cell, col))
                if cmp is None:
                    continue
                for stat, value in (("diff", cmp.mean), ("p", cmp.p)):
                    if value == value:
                        metrics[f"{row.cell}.{col}.{ref}.{stat}"] = value
    parent.log_metrics(metrics, step=0)


def run_ablation(grid: Grid, *, name: str, tracking: Tracking, execution: Execution, out_dir: Path,
                 resume: bool = False, max_concurrent: int | None = None,
                 log: Callable[[str], None] = say, budget: Budget | None = None) -> AblationResult:
    """Run (or resume) every cell-seed of ``grid``, then build the table from MLflow and log it.

    ``budget``: a wall-clock budget from now; when it is spent the running cell-seeds stop and the table is built
    from those that finished (see the module doc).
    """
    t0 = time.perf_counter()
    storage = execution.storage_path or default_storage_path()
    execution = dataclasses.replace(execution, storage_path=storage)  # absolute: Ray tasks have another cwd
    parent, out_dir = _open_parent(grid, name, tracking, storage, out_dir.resolve(), resume)
    jobs = _CellSeedJobs(grid, name, tracking, execution, parent, out_dir, log)
    with tracked_run(parent, interrupted="KILLED"):
        todo, skipped = _plan(grid, tracking, parent.run_id, log)
        concurrent = max(1, max_concurrent or grid.max_concurrent)
        extra = f" + baselines {', '.join(b.name for b in grid.baselines)}" if grid.baselines else ""
        log(f"[ablate] {name}: {len(grid.cells)} cells{extra} × {len(grid.seeds)} seeds; {len(skipped)} finished, "
            f"{len(todo)} to run ({concurrent} at a time); parent run {parent.run_id}")
        if budget is not None:
            parent.set_tags({tag.TIME_BUDGET: budget.shown})
            jobs.concurrent(todo, concurrent, budget.start())  # as tasks: a running cell-seed can then be stopped
        elif concurrent > 1 and len(todo) > 1:
            jobs.concurrent(todo, concurrent)
        else:
            jobs.sequential(todo)
        ended_by_budget = budget is not None and budget.fired
        if budget is not None and budget.fired:
            parent.set_tags({tag.ENDED_BY: tag.ENDED_BY_TIME_BUDGET})
            log(f"[ablate] the {budget.describe()} ended ablation {name} after "
                f"{format_duration(budget.wall_elapsed())}: {len(jobs.ran)} cell-seed(s) finished and kept, "
                f"{len(jobs.budget_stopped)} stopped while running, {len(jobs.not_started)} not started; run them "
                f"with --resume --name {name}")
        table = ablation_table(tracking.uri, parent.run_id, grid.metrics)
        _publish(parent, table, out_dir)
        parent.end("FAILED" if jobs.failed else "FINISHED")
    return AblationResult(name, parent.run_id, table, jobs.ran, skipped, jobs.failed, time.perf_counter() - t0,
                          out_dir, jobs.budget_stopped, jobs.not_started, ended_by_budget)
