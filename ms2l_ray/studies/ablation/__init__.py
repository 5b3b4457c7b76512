"""Ablation grids: cells × seeds of MS²L pipelines, mean ± std tables computed from MLflow, resume.

``grid`` (the YAML schema and its validation, baseline cells), ``runner`` (cell-seed runs, concurrency,
resume), ``table`` (mean ± std over seeds from the MLflow run tree, Markdown/CSV) and ``stats`` (paired
t-tests over seeds: each cell against the best cell and the random baseline).

``runner`` is imported on first use (PEP 562) because it pulls in torch and Ray Train: reading a grid or
building a table from MLflow (``ms2l report``) should not pay for them.
"""

from typing import Any

from ms2l_ray.studies.ablation.grid import Cell, Grid, load_grid, parse_grid
from ms2l_ray.studies.ablation.stats import Paired, paired_by_seed
from ms2l_ray.studies.ablation.table import AblationTable, ablation_table, build_table, fetch_cell_seed_runs

__all__ = ["AblationResult", "AblationTable", "Cell", "Grid", "Paired", "ablation_table", "build_table",
           "fetch_cell_seed_runs", "load_grid", "paired_by_seed", "parse_grid", "run_ablation"]


def __getattr__(name: str) -> Any:
    """``AblationResult`` and ``run_ablation`` come from :mod:`.runner`, loaded when first asked for."""
    if name in ("AblationResult", "run_ablation"):
        from ms2l_ray.studies.ablation import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
