"""Ablation grids: cells × seeds of MS²L pipelines, mean ± std tables computed from MLflow, resume.

``grid`` (the YAML schema and its validation), ``runner`` (cell-seed runs, concurrency, resume) and
``table`` (mean ± std over seeds from the MLflow run tree, Markdown/CSV).
"""

from ms2l_ray.ablation.grid import Cell, Grid, load_grid, parse_grid
from ms2l_ray.ablation.runner import AblationResult, run_ablation
from ms2l_ray.ablation.table import AblationTable, ablation_table, build_table, fetch_cell_seed_runs

__all__ = ["AblationResult", "AblationTable", "Cell", "Grid", "ablation_table", "build_table",
           "fetch_cell_seed_runs", "load_grid", "parse_grid", "run_ablation"]
