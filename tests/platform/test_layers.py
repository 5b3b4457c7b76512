"""The package's import layers (issue 11): each layer imports only the layers below it, and only ``tracking/``
talks to MLflow's client. Read from the source (every ``import``, including function-level ones), so a lazy
import cannot hide a layer violation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from paths import REPO

PACKAGE = REPO / "ms2l_ray"
KIT = {"__init__", "limits", "safe_yaml", "strategies", "contract", "layouts", "redact", "plotting", "console"}
ORDER = ["config", "names", "pretext|data", "model", "train", "tracking", "jobs", "studies", "report", "cli"]
RANK = {**dict.fromkeys(KIT, 0), **{name: i + 1 for i, group in enumerate(ORDER) for name in group.split("|")}}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("ms2l_ray", "mlflow"):
            out += [node.module] if node.module != "ms2l_ray" else [
                f"ms2l_ray.{a.name}" if (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").exists()
                else "ms2l_ray" for a in node.names]
            out += [f"{node.module}.{a.name}" for a in node.names if node.module.startswith("mlflow")]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] in ("ms2l_ray", "mlflow")]
        elif isinstance(node, ast.Attribute) and node.attr == "MlflowClient":  # mlflow.MlflowClient(...)
            out.append("mlflow.MlflowClient")
    return out


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_package_module_has_a_layer() -> None:
    assert {_layer(m) for m in _modules()} <= set(RANK), sorted({_layer(m) for m in _modules()} - set(RANK))


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, path in _modules().items():
        src = _layer(module)
        for target in (t for t in _imports(path) if t.startswith("ms2l_ray")):
            dst = _layer(target)
            below = RANK[dst] < RANK[src] or RANK[src] == RANK[dst] == 0  # kit modules may use each other
            if dst != src and not below:
                wrong.append(f"{path.relative_to(REPO)}: {src} ({RANK[src]}) imports {target} ({RANK[dst]})")
    assert wrong == []


def test_only_tracking_builds_an_mlflow_client() -> None:
    clients = {"mlflow.MlflowClient", "mlflow.tracking", "mlflow.tracking.MlflowClient", "mlflow.client",
               "ms2l_ray.tracking.runs.client"}
    users = sorted(str(p.relative_to(REPO)) for m, p in _modules().items()
                   if _layer(m) != "tracking" and clients & set(_imports(p)))
    assert users == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The parser reads function-level imports too (what a lazy layer violation looks like)."""
    f = tmp_path / "m.py"
    f.write_text("import mlflow\n\ndef f():\n    from ms2l_ray.cli.main import main\n    from ms2l_ray import config\n"
                 "    return mlflow.MlflowClient()\n")
    assert sorted(_imports(f)) == ["mlflow", "mlflow.MlflowClient", "ms2l_ray.cli.main", "ms2l_ray.config"]


def test_reading_an_ablation_grid_or_table_does_not_import_torch() -> None:
    """``ms2l_ray.studies.ablation`` loads its runner (torch, Ray Train) only when ``run_ablation`` is asked for."""
    probe = ("import sys, ms2l_ray.studies.ablation as a; a.load_grid, a.build_table; before = 'torch' in sys.modules; "
             "a.run_ablation; print(before, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "True"]
