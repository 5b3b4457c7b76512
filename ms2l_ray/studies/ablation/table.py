"""Mean ± std over seeds per cell, computed from the MLflow runs (the store is the source of truth).

Nothing here reads the runner's memory: the table is rebuilt from the runs under an ablation's parent
run, so ``ms2l report`` and a resumed ablation print the same numbers as the original driver would.

Run tree (tags)::

    ablation parent        kind=ablation, ablation=<grid name>
    └── cell-seed run      kind=ablation_cell, cell, seed, ablation_run_id=<parent id>
        ├── pretrain run   kind=pretrain, cell, seed, ablation_run_id
        └── evaluation run kind=evaluate, evaluation=<label>, cell, seed, ablation_run_id

Baseline cells (``ablation.grid``: ``random``, ``supervised``) are cell-seed runs like the others, tagged
``baseline=<kind>``; their evaluation runs carry ``reported_as`` (the grid evaluation labels whose columns
they fill) and have no pretrain run.

Only FINISHED cell-seed runs count. The std is the sample std (ddof = 1) — the usual "± over seeds";
with one seed it is undefined and shown as ``n/a``. Every cell is compared with the best cell and with the
random baseline by a paired t-test over seeds matched by seed value (:mod:`ms2l_ray.studies.ablation.stats`).
A pretrain run's ``health`` tag (a JSON list of notes, ``ms2l_ray.train.health``) becomes the cell's notes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ms2l_ray.studies.ablation.stats import Paired, paired_by_seed
from ms2l_ray.tracking import query
from ms2l_ray.tracking import tags as tag

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
    baseline: str = ""  # "random" / "supervised" for a baseline cell
    health: list[str] = field(default_factory=list)  # the pretrain run's ``health`` notes


def direction(column: str) -> str | None:
    """``max`` for accuracies, ``min`` for losses and times, None where "best" means nothing."""
    metric = column.rpartition(".")[2]
    if metric in NO_DIRECTION:
        return None
    if "loss" in metric or metric.endswith("time_s"):
        return "min"
    return "max"


def parse_health(value: str | None) -> list[str]:
    """A ``health`` tag (JSON list of strings) → its notes; [] when absent, the raw text when not a list."""
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return [value]
    return [str(m) for m in parsed] if isinstance(parsed, list) else [value]


def fetch_cell_seed_runs(tracking_uri: str, parent_run_id: str) -> list[CellSeedRun]:
    """All cell-seed runs under ``parent_run_id`` with the metrics of their pretrain and evaluation runs."""
    runs = query.ablation_runs(tracking_uri, parent_run_id)
    jobs: dict[str, list[Any]] = {}
    cells: list[Any] = []
    for r in runs:
        if r.data.tags.get(tag.KIND) == tag.KIND_CELL:
            cells.append(r)
        else:
            jobs.setdefault(r.data.tags.get(tag.PARENT_RUN, ""), []).append(r)
    out = []
    for r in sorted(cells, key=lambda r: r.info.start_time or 0):
        t = r.data.tags
        item = CellSeedRun(t.get(tag.CELL, "?"), int(t.get(tag.SEED, -1)), r.info.run_id, r.info.status,
                           t.get(tag.CONFIG_HASH, ""), baseline=t.get(tag.BASELINE, ""))
        for job in jobs.get(r.info.run_id, []):
            if job.info.status != "FINISHED":
                continue
            jt = job.data.tags
            if jt.get(tag.KIND) == tag.KIND_PRETRAIN:
                labels = ["pretrain"]
                item.pretrain_run_id = job.info.run_id
                item.health += parse_health(jt.get(tag.HEALTH))
            else:  # a baseline's supervised job fills the columns of every evaluation it stands in for
                labels = [x for x in (jt.get(tag.REPORTED_AS) or jt.get(tag.EVALUATION) or "").split(",") if x]
            for label in labels:
                item.metrics.update({f"{label}.{k}": float(v) for k, v in job.data.metrics.items()})
        out.append(item)
    return out


@dataclass
class Row:
    """One cell's per-seed values; ``by_seed[col][seed]`` is what the paired comparisons match on."""

    cell: str
    seeds: list[int]
    values: dict[str, list[float]]
    baseline: str = ""
    by_seed: dict[str, dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # distinct health notes of the cell's pretrain runs

    @property
    def n(self) -> int:
        """Number of seeds the cell has values for."""
        return len(self.seeds)

    def mean(self, col: str) -> float:
        """Mean of column ``col`` over the seeds (nan without values)."""
        v = self.values.get(col, [])
        return statistics.fmean(v) if v else math.nan

    def std(self, col: str) -> float:
        """Sample std of column ``col`` over the seeds (nan below two values)."""
        v = self.values.get(col, [])
        return statistics.stdev(v) if len(v) >= 2 else math.nan


LEGEND_MARKS = ("**bold** † = best mean per column among the ablation cells (baselines excluded); * p < 0.05, "
                "** p < 0.01: two-sided paired t-test over seeds matched by seed value, after a mean against the † "
                "cell")
LEGEND_DELTA = ("Δ random = mean paired difference to the random baseline ± 95 % CI half-width (paired t), "
                "marked against the random baseline; n too small = fewer than 2 paired seeds")


@dataclass
class AblationTable:
    """Rows in table order; ``best[col]`` is the ablation cell with the best mean in that column.

    ``vs_best[(cell, col)]`` and ``vs_random[(cell, col)]`` are paired comparisons (cell − reference).
    """

    columns: list[str]
    rows: list[Row]
    best: dict[str, str]
    vs_best: dict[tuple[str, str], Paired] = field(default_factory=dict)
    vs_random: dict[tuple[str, str], Paired] = field(default_factory=dict)

    @property
    def random_row(self) -> Row | None:
        """The random-encoder baseline's row, the reference of the ``Δ random`` columns; None without one."""
        return next((r for r in self.rows if r.baseline == "random"), None)

    @property
    def delta_columns(self) -> list[str]:
        """Columns that get a ``Δ random`` column: those the random baseline has values in."""
        rnd = self.random_row
        return [c for c in self.columns if rnd is not None and rnd.values.get(c)]

    def plain(self, row: Row, col: str) -> str:
        """``mean ± std`` of ``row`` in ``col`` without marks (``± n/a`` for one seed, ``–`` for none)."""
        m, s = row.mean(col), row.std(col)
        if math.isnan(m):
            return "–"
        return f"{m:.2f} ± {s:.2f}" if not math.isnan(s) else f"{m:.2f} ± n/a"

    def cell(self, row: Row, col: str) -> str:
        """``mean ± std``; the best wrapped in ``**`` with ``†``, others marked when they differ from it."""
        text = self.plain(row, col)
        if text == "–":
            return text
        if self.best.get(col) == row.cell:
            return f"**{text}** †"
        cmp = self.vs_best.get((row.cell, col))
        mark = cmp.mark() if cmp is not None and not cmp.too_small else ""
        return f"{text} {mark}" if mark else text

    def delta(self, row: Row, col: str) -> str:
        """``Δ random`` of ``row`` in ``col``: ``+d ± half-width [*|**]``, or ``+d (n too small)``."""
        cmp = self.vs_random.get((row.cell, col))
        if cmp is None or math.isnan(cmp.mean):
            return "–"
        if cmp.too_small:
            return f"{cmp.mean:+.2f} (n too small)"
        mark = cmp.mark()
        return f"{cmp.mean:+.2f} ± {cmp.half_width:.2f}" + (f" {mark}" if mark else "")

    def text_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and formatted cells for Markdown/HTML/console: each metric, then its ``Δ random``."""
        deltas = set(self.delta_columns)
        head = ["cell", "n"]
        for c in self.columns:
            head += [c, "Δ random"] if c in deltas else [c]
        rows = []
        for r in self.rows:
            cells = [r.cell, str(r.n)]
            for c in self.columns:
                cells += [self.cell(r, c), self.delta(r, c)] if c in deltas else [self.cell(r, c)]
            rows.append(cells)
        return head, rows

    def to_markdown(self) -> str:
        """The table as Markdown with its legend and the cells' health notes, for the report and the artifact."""
        head, rows = self.text_rows()
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        notes = self.notes_markdown()
        return "\n".join(lines + ["", self.footnote()] + (["", notes] if notes else [])).rstrip() + "\n"

    def footnote(self) -> str:
        """The legend: what ± means, the marks, Δ random (when shown), and the selection on validation."""
        parts = [f"mean ± sample std over n seeds; {LEGEND_MARKS}."]
        if self.delta_columns:
            parts.append(f"{LEGEND_DELTA}.")
        return " ".join(parts + [self.selection_note()]).rstrip()

    def notes_markdown(self) -> str:
        """The Notes section: per cell, the distinct health notes of its pretrain runs ("" when none)."""
        noted = [r for r in self.rows if r.notes]
        if not noted:
            return ""
        return "\n".join(["Notes (pretext-task health of the pretrain runs):", ""]
                         + [f"- {r.cell}: " + "; ".join(r.notes) for r in noted])

    def to_csv(self) -> str:
        """Every number behind the table as CSV: per-column mean/std and both paired comparisons, per cell."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cmp_head = [f"{c}.{ref}.{x}" for c in self.columns for ref in ("vs_best", "vs_random")
                    for x in ("diff", "ci_low", "ci_high", "p", "n", "sig")]
        w.writerow(["cell", "n", "seeds"] + [f"{c}.{s}" for c in self.columns for s in ("mean", "std")]
                   + ["best_in", "baseline"] + cmp_head + ["notes"])
        for r in self.rows:
            stats = [_fmt(x) for c in self.columns for x in (r.mean(c), r.std(c))]
            best = ";".join(c for c in self.columns if self.best.get(c) == r.cell)
            cmps = [x for c in self.columns for ref in (self.vs_best, self.vs_random)
                    for x in _csv_cmp(ref.get((r.cell, c)))]
            w.writerow([r.cell, r.n, ";".join(map(str, r.seeds))] + stats + [best, r.baseline] + cmps
                       + [" | ".join(r.notes)])
        return buf.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """JSON-friendly rows (``--json``): per column mean, std, per-seed values, best flag, comparisons."""
        return [{"cell": r.cell, "n": r.n, "seeds": r.seeds, "baseline": r.baseline, "notes": r.notes,
                 "metrics": {c: {"mean": _num(r.mean(c)), "std": _num(r.std(c)), "values": r.values.get(c, []),
                                 "best": self.best.get(c) == r.cell,
                                 "vs_best": _json_cmp(self.vs_best.get((r.cell, c))),
                                 "vs_random": _json_cmp(self.vs_random.get((r.cell, c)))}
                             for c in self.columns}} for r in self.rows]

    def selection_note(self) -> str:
        """Model selection on validation (REFERENCE.md §4): the cell best on ``<eval>.val_top1``, and its test."""
        notes = []
        for col in self.columns:
            label, _, metric = col.rpartition(".")
            if metric != "val_top1" or col not in self.best:
                continue
            chosen = next(r for r in self.rows if r.cell == self.best[col])
            test = f"{label}.test_top1"
            tail = f" → {test} {self.plain(chosen, test)}" if test in chosen.values else ""
            notes.append(f"Selected on validation ({col}): {chosen.cell}{tail}.")
        return " ".join(notes)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.4f}"


def _csv_cmp(p: Paired | None) -> list[str]:
    if p is None:
        return [""] * 6
    return [_fmt(p.mean), _fmt(p.ci_low), _fmt(p.ci_high), "" if math.isnan(p.p) else f"{p.p:.4g}", str(p.n),
            p.mark()]


def _json_cmp(p: Paired | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"diff": _num(p.mean), "ci_low": _num(p.ci_low), "ci_high": _num(p.ci_high), "p": _num(p.p), "n": p.n,
            "seeds": list(p.seeds), "sig": p.mark()}


def _comparisons(rows: list[Row], columns: list[str], best: dict[str, str]) -> tuple[
        dict[tuple[str, str], Paired], dict[tuple[str, str], Paired]]:
    """Every row against the best cell and against the random baseline, per column, paired by seed."""
    vs_best: dict[tuple[str, str], Paired] = {}
    vs_random: dict[tuple[str, str], Paired] = {}
    rnd = next((r for r in rows if r.baseline == "random"), None)
    for col in columns:
        top = next((r for r in rows if r.cell == best.get(col)), None)
        for r in rows:
            mine = r.by_seed.get(col)
            if not mine:
                continue
            if top is not None and r is not top:
                vs_best[(r.cell, col)] = paired_by_seed(mine, top.by_seed[col])
            if rnd is not None and r is not rnd and rnd.by_seed.get(col):
                vs_random[(r.cell, col)] = paired_by_seed(mine, rnd.by_seed[col])
    return vs_best, vs_random


def build_table(results: list[CellSeedRun], columns: list[str], cell_order: list[str] | None = None) -> AblationTable:
    """Group FINISHED cell-seed runs by cell (one run per seed: the latest if a store holds duplicates).

    Order: the random baseline, ``cell_order``, other ablation cells by name, the other baselines.
    """
    latest: dict[tuple[str, int], CellSeedRun] = {}
    for r in results:
        if r.status == "FINISHED":
            latest[(r.cell, r.seed)] = r  # results come sorted by start time
    kinds = {r.cell: r.baseline for r in latest.values()}
    order = [c for c in sorted(kinds) if kinds[c] == "random"]
    order += [c for c in (cell_order or []) if c not in order and not kinds.get(c)]
    order += [c for c in sorted(kinds) if c not in order and not kinds[c]]
    order += [c for c in sorted(kinds, key=lambda c: (kinds[c] != "supervised", c)) if c not in order]
    rows = []
    for cell in order:
        runs = sorted((r for (c, _), r in latest.items() if c == cell), key=lambda r: r.seed)
        if not runs:
            continue
        by_seed = {col: {r.seed: r.metrics[col] for r in runs if col in r.metrics} for col in columns}
        notes = list(dict.fromkeys(n for r in runs for n in r.health))
        rows.append(Row(cell, [r.seed for r in runs], {col: list(v.values()) for col, v in by_seed.items()},
                        kinds[cell], by_seed, notes))
    best: dict[str, str] = {}
    for col in columns:
        sign = {"max": 1.0, "min": -1.0}.get(direction(col) or "", 0.0)
        scored = [(sign * r.mean(col), r.cell) for r in rows if not r.baseline and not math.isnan(r.mean(col))]
        if sign and len(scored) > 1:
            best[col] = max(scored, key=lambda t: t[0])[1]  # ties: the first cell in grid order
    return AblationTable(columns, rows, best, *_comparisons(rows, columns, best))


def ablation_table(tracking_uri: str, parent_run_id: str, columns: list[str] | None = None) -> AblationTable:
    """Recompute an ablation's table from MLflow; columns and cell order come from the parent's params."""
    params = query.get_run(tracking_uri, parent_run_id).data.params
    results = fetch_cell_seed_runs(tracking_uri, parent_run_id)
    if columns is None:
        columns = [x for x in params.get("ablation.columns", "").split(",") if x]
    if not columns:  # an ablation logged without its columns: every evaluation metric found
        columns = sorted({k for r in results for k in r.metrics if k.endswith(tag.TOP1_METRICS)
                          and not k.startswith("pretrain.")})
    order = [x for x in params.get("ablation.cells", "").split(",") if x]
    return build_table(results, columns, order)
