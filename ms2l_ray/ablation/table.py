"""Mean ± std over seeds per cell, computed from the MLflow runs (the store is the source of truth).

Nothing here reads the runner's memory: the table is rebuilt from the runs under an ablation's parent
run, so ``ms2l report`` and a resumed ablation print the same numbers as the original driver would.

Run tree (tags)::

    ablation parent        kind=ablation, ablation=<grid name>
    └── cell-seed run      kind=ablation_cell, cell, seed, ablation_run_id=<parent id>
        ├── pretrain run   kind=pretrain, cell, seed, ablation_run_id
        └── evaluation run kind=evaluate, evaluation=<label>, cell, seed, ablation_run_id

Only FINISHED cell-seed runs count. The std is the sample std (ddof = 1) — the usual "± over seeds";
with one seed it is undefined and shown as ``n/a``.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ms2l_ray.tracking.runs import client
from ms2l_ray.tracking.store import retrying

CELL_KIND = "ablation_cell"
PARENT_KIND = "ablation"
NO_DIRECTION = ("best_epoch", "train_labelled", "epoch")


@dataclass
class CellSeedRun:
    """One finished (or not) cell-seed run and its metrics, keyed ``<evaluation>.<metric>``/``pretrain.<m>``."""

    cell: str
    seed: int
    run_id: str
    status: str
    config_hash: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    pretrain_run_id: str | None = None


def direction(column: str) -> str | None:
    """``max`` for accuracies, ``min`` for losses and times, None where "best" means nothing."""
    metric = column.rpartition(".")[2]
    if metric in NO_DIRECTION:
        return None
    if "loss" in metric or metric.endswith("time_s"):
        return "min"
    return "max"


def search_all(tracking_uri: str, experiment_ids: list[str], filter_string: str) -> list[Any]:
    """Every run matching ``filter_string`` (paged; deleted runs excluded)."""
    c = client(tracking_uri)
    runs: list[Any] = []
    token = None
    while True:
        page = retrying(functools.partial(c.search_runs, experiment_ids, filter_string, max_results=1000,
                                          page_token=token))
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def fetch_cell_seed_runs(tracking_uri: str, parent_run_id: str) -> list[CellSeedRun]:
    """All cell-seed runs under ``parent_run_id`` with the metrics of their pretrain and evaluation runs."""
    c = client(tracking_uri)
    parent = retrying(lambda: c.get_run(parent_run_id))
    runs = search_all(tracking_uri, [parent.info.experiment_id], f"tags.ablation_run_id = '{parent_run_id}'")
    jobs: dict[str, list[Any]] = {}
    cells: list[Any] = []
    for r in runs:
        if r.data.tags.get("kind") == CELL_KIND:
            cells.append(r)
        else:
            jobs.setdefault(r.data.tags.get("mlflow.parentRunId", ""), []).append(r)
    out = []
    for r in sorted(cells, key=lambda r: r.info.start_time or 0):
        t = r.data.tags
        item = CellSeedRun(t.get("cell", "?"), int(t.get("seed", -1)), r.info.run_id, r.info.status,
                           t.get("config_hash", ""))
        for job in jobs.get(r.info.run_id, []):
            if job.info.status != "FINISHED":
                continue
            kind = job.data.tags.get("kind")
            label = "pretrain" if kind == "pretrain" else job.data.tags.get("evaluation")
            if label is None:
                continue
            if kind == "pretrain":
                item.pretrain_run_id = job.info.run_id
            item.metrics.update({f"{label}.{k}": float(v) for k, v in job.data.metrics.items()})
        out.append(item)
    return out


@dataclass
class Row:
    cell: str
    seeds: list[int]
    values: dict[str, list[float]]

    @property
    def n(self) -> int:
        return len(self.seeds)

    def mean(self, col: str) -> float:
        v = self.values.get(col, [])
        return statistics.fmean(v) if v else math.nan

    def std(self, col: str) -> float:
        v = self.values.get(col, [])
        return statistics.stdev(v) if len(v) >= 2 else math.nan


@dataclass
class AblationTable:
    """Rows in cell order; ``best[col]`` is the cell with the best mean in that column."""

    columns: list[str]
    rows: list[Row]
    best: dict[str, str]

    def cell(self, row: Row, col: str) -> str:
        m, s = row.mean(col), row.std(col)
        if math.isnan(m):
            return "–"
        text = f"{m:.2f} ± {s:.2f}" if not math.isnan(s) else f"{m:.2f} ± n/a"
        return f"**{text}**" if self.best.get(col) == row.cell else text

    def text_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and formatted cells (``mean ± std``, best wrapped in ``**``) for Markdown/HTML/console."""
        head = ["cell", "n"] + self.columns
        return head, [[r.cell, str(r.n)] + [self.cell(r, c) for c in self.columns] for r in self.rows]

    def to_markdown(self) -> str:
        head, rows = self.text_rows()
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(self.columns)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines + ["", self.footnote()]).rstrip() + "\n"

    def footnote(self) -> str:
        return f"mean ± sample std over n seeds; **bold** = best mean per column. {self.selection_note()}".rstrip()

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["cell", "n", "seeds"] + [f"{c}.{s}" for c in self.columns for s in ("mean", "std")] + ["best_in"])
        for r in self.rows:
            stats = [_fmt(x) for c in self.columns for x in (r.mean(c), r.std(c))]
            best = ";".join(c for c in self.columns if self.best.get(c) == r.cell)
            w.writerow([r.cell, r.n, ";".join(map(str, r.seeds))] + stats + [best])
        return buf.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """JSON-friendly rows (``--json``): per column mean, std, the per-seed values, and best flags."""
        return [{"cell": r.cell, "n": r.n, "seeds": r.seeds,
                 "metrics": {c: {"mean": _num(r.mean(c)), "std": _num(r.std(c)), "values": r.values.get(c, []),
                                 "best": self.best.get(c) == r.cell} for c in self.columns}} for r in self.rows]

    def selection_note(self) -> str:
        """Model selection on validation (REFERENCE.md §4): the cell best on ``<eval>.val_top1``, and its test."""
        notes = []
        for col in self.columns:
            label, _, metric = col.rpartition(".")
            if metric != "val_top1" or col not in self.best:
                continue
            chosen = next(r for r in self.rows if r.cell == self.best[col])
            test = f"{label}.test_top1"
            tail = f" → {test} {self.cell(chosen, test).strip('*')}" if test in chosen.values else ""
            notes.append(f"Selected on validation ({col}): {chosen.cell}{tail}.")
        return " ".join(notes)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.4f}"


def build_table(results: list[CellSeedRun], columns: list[str], cell_order: list[str] | None = None) -> AblationTable:
    """Group FINISHED cell-seed runs by cell (one run per seed: the latest if a store holds duplicates)."""
    latest: dict[tuple[str, int], CellSeedRun] = {}
    for r in results:
        if r.status == "FINISHED":
            latest[(r.cell, r.seed)] = r  # results come sorted by start time
    order = list(cell_order or [])
    order += [c for c, _ in sorted(latest) if c not in order]
    rows = []
    for cell in order:
        runs = sorted((r for (c, _), r in latest.items() if c == cell), key=lambda r: r.seed)
        if not runs:
            continue
        values = {col: [r.metrics[col] for r in runs if col in r.metrics] for col in columns}
        rows.append(Row(cell, [r.seed for r in runs], values))
    best: dict[str, str] = {}
    for col in columns:
        sign = {"max": 1.0, "min": -1.0}.get(direction(col) or "", 0.0)
        scored = [(sign * r.mean(col), r.cell) for r in rows if not math.isnan(r.mean(col))]
        if sign and len(scored) > 1:
            best[col] = max(scored, key=lambda t: t[0])[1]  # ties: the first cell in grid order
    return AblationTable(columns, rows, best)


def ablation_table(tracking_uri: str, parent_run_id: str, columns: list[str] | None = None) -> AblationTable:
    """Recompute an ablation's table from MLflow; columns and cell order come from the parent's params."""
    c = client(tracking_uri)
    params = retrying(lambda: c.get_run(parent_run_id)).data.params
    results = fetch_cell_seed_runs(tracking_uri, parent_run_id)
    if columns is None:
        columns = [x for x in params.get("ablation.columns", "").split(",") if x]
    if not columns:  # an ablation logged without its columns: every evaluation metric found
        columns = sorted({k for r in results for k in r.metrics if k.endswith(("val_top1", "test_top1"))
                          and not k.startswith("pretrain.")})
    order = [x for x in params.get("ablation.cells", "").split(",") if x]
    return build_table(results, columns, order)
