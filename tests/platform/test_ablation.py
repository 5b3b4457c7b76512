"""Ablations run for real (Ray): the mean ± std table from MLflow runs, the run tree, resume, baseline cells.

Grid validation and the table's statistics need no Ray: tests/platform/test_ablation_grid.py.

One ablation (ablations/smoke.yaml, 2 cells × 2 seeds, tiny) is run through the real CLI in a
subprocess that is killed after its first cell-seed finished, then resumed (two cell-seeds at a time)
— the finished ablation that every test in this module reads back from a real MLflow SQLite store.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow_helpers import client, sqlite_uri_in
from paths import ABLATIONS

from ms2l_ray.cli.main import main
from ms2l_ray.studies.ablation.table import ablation_table

pytestmark = pytest.mark.ray  # starts a local Ray instance: the platform layer, not the core

SMOKE = ABLATIONS / "smoke.yaml"


def runs_of(uri: str, parent_id: str, flt: str = "") -> list[Any]:
    c = client(uri)
    exp = c.get_run(parent_id).info.experiment_id
    return list(c.search_runs([exp], f"tags.ablation_run_id = '{parent_id}'" + (f" and {flt}" if flt else "")))


# ----------------------------------------------------------------------------- one real, resumed ablation
def _cli(tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ms2l_ray.cli", "ablate", str(SMOKE), "--tracking-uri",
            sqlite_uri_in(tmp), "--storage-path", str(tmp / "ray"), "--out", str(tmp / "out"),
            "--name", "resumable", *extra]


def _finished_cell_seeds(uri: str) -> list[Any]:
    c = client(uri)
    exp = c.get_experiment_by_name("ms2l")
    if exp is None:
        return []
    return list(c.search_runs([exp.experiment_id], "tags.kind = 'ablation_cell' and attributes.status = 'FINISHED'"))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Start the smoke ablation, SIGKILL the driver (and its local Ray) after one cell-seed, then --resume."""
    tmp = tmp_path_factory.mktemp("ablation")
    uri = sqlite_uri_in(tmp)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(_cli(tmp), env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not _finished_cell_seeds(uri) and time.time() < deadline and proc.poll() is None:
            time.sleep(1.0)
        first = _finished_cell_seeds(uri)
        assert first, "no cell-seed finished before the deadline"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray die together, mid-ablation
        proc.communicate(timeout=60)
    assert proc.returncode != 0
    killed_at = time.perf_counter() - t0
    out = tmp / "rows.json"
    resumed = subprocess.run(_cli(tmp, "--resume", "--max-concurrent", "2", "--json", str(out)), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    record = json.loads((tmp / "ray" / "resumable" / "ms2l_ablation.json").read_text())
    return {"uri": uri, "tmp": tmp, "first": [r.info.run_id for r in first], "stdout": resumed.stdout,
            "stderr": resumed.stderr,
            "rows": json.loads(out.read_text()), "parent": record["parent_run_id"], "killed_at": killed_at,
            "total": time.perf_counter() - t0}


def test_resume_after_killed_driver_runs_each_cell_seed_exactly_once(resumed: dict[str, Any]) -> None:
    uri, parent = resumed["uri"], resumed["parent"]
    cells = runs_of(uri, parent, "tags.kind = 'ablation_cell'")
    finished = [r for r in cells if r.info.status == "FINISHED"]
    pairs = sorted((r.data.tags["cell"], int(r.data.tags["seed"])) for r in finished)
    assert pairs == sorted((c, s) for c in ("motion", "all") for s in (0, 1))  # exactly one FINISHED each
    assert set(resumed["first"]) <= {r.info.run_id for r in finished}  # finished before the kill: kept, not rerun
    assert len(resumed["first"]) < 4
    assert "already finished" in resumed["stdout"] and f"{len(resumed['first'])} already finished" in resumed["stdout"]
    assert not runs_of(uri, parent, "attributes.status = 'RUNNING'")  # the dead driver's runs were closed
    unfinished = [r for r in cells if r.info.status != "FINISHED"]  # the cell-seed the kill interrupted
    assert all(r.info.status == "KILLED" for r in unfinished)
    if unfinished:
        assert "KILLED: its driver is gone; the cell-seed reruns" in resumed["stdout"]
    assert client(uri).get_run(parent).info.status == "FINISHED"
    print(f"killed after {resumed['killed_at']:.0f}s; whole fixture {resumed['total']:.0f}s")


def test_console_shows_our_lines_and_files_ray_and_mlflow_internals(resumed: dict[str, Any]) -> None:
    """The resumed driver's terminal (captured as a non-terminal): our lines and one result per cell-seed it ran;
    Ray's worker prefixes, controller errors and MLflow's warnings are in OUT/ms2l.log instead (issue 15)."""
    shown = [line for line in (resumed["stdout"] + resumed["stderr"]).splitlines() if line.strip()]
    for needle in ("pid=", "core_worker", "PreemptionWatcher", "repeated", "WARNING", "INFO", "Traceback",
                   "Pickle", "mlflow.", "Warning"):
        assert not [line for line in shown if needle in line], (needle, shown)
    ran = 4 - len(resumed["first"])
    results = [line for line in shown if re.match(r"\[ablate\] \d/\d+ cell=\w+ seed=\d: linear.val_top1=", line)]
    assert len(results) == ran, shown
    log_path = resumed["tmp"] / "out" / "ms2l.log"
    assert sum(f"Ray and MLflow messages go to {log_path}" in line for line in shown) == 1  # said once
    log = log_path.read_text()
    # Ray's own lines, kept with their "(<actor> pid=…)" / "(pid=autoscaler)" prefixes
    assert re.search(r"^\((\w+ )?pid=\w+\) ", log, re.M) and "Started a local Ray instance" in log
    assert re.search(r"\[progress\] resumable-\w+-s\d: \[pretrain\] epoch 1/1", log)  # the live lines' text


def test_run_tree_parent_cell_seed_pretrain_evaluation(resumed: dict[str, Any]) -> None:
    uri, parent = resumed["uri"], resumed["parent"]
    c = client(uri)
    p = c.get_run(parent)
    assert p.data.tags["kind"] == "ablation" and p.data.tags["ablation"] == "smoke"
    exp = p.info.experiment_id
    direct = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert {r.data.tags["kind"] for r in direct} == {"ablation_cell"}
    for cell in (r for r in direct if r.info.status == "FINISHED"):
        jobs = c.search_runs([exp], f"tags.mlflow.parentRunId = '{cell.info.run_id}'")
        kinds = sorted(j.data.tags["kind"] for j in jobs)
        assert kinds == ["evaluate", "pretrain"], kinds
        pre = next(j for j in jobs if j.data.tags["kind"] == "pretrain")
        ev = next(j for j in jobs if j.data.tags["kind"] == "evaluate")
        assert ev.data.tags["evaluation"] == "linear" and ev.data.tags["parent_pretrain_run"] == pre.info.run_id
        title = f"smoke / {cell.data.tags['cell']} / seed {cell.data.tags['seed']}"  # names read like the study
        assert cell.info.run_name == title
        assert {j.info.run_name for j in jobs} == {f"{title} / pretrain", f"{title} / linear"}
        for j in jobs:
            assert j.data.tags["cell"] == cell.data.tags["cell"] and j.data.tags["seed"] == cell.data.tags["seed"]
            assert j.info.status == "FINISHED"
            (ds,) = j.inputs.dataset_inputs  # the UI's Dataset column: the data, its digest and the split
            assert (ds.dataset.name, len(ds.dataset.digest)) == ("builtin", 10)
            assert {t.key: t.value for t in ds.tags}["mlflow.data.context"] == "ntu60-xsub"
    arts = {f.path for f in c.list_artifacts(parent, "ablation")}
    assert {"ablation/table.md", "ablation/table.csv", "ablation/grid.yaml", "ablation/ablation_bars.png"} <= arts
    # MLflow 3's UI opens an experiment without a kind in GenAI mode; ours is a model-development one
    assert c.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"


def test_table_is_mean_and_std_of_the_child_runs(resumed: dict[str, Any]) -> None:
    uri, parent = resumed["uri"], resumed["parent"]
    c = client(uri)
    exp = c.get_run(parent).info.experiment_id
    expected: dict[str, dict[str, list[float]]] = {}
    for cell in c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'FINISHED'"):
        ev = c.search_runs([exp], f"tags.mlflow.parentRunId = '{cell.info.run_id}' and tags.kind = 'evaluate'")[0]
        for m in ("val_top1", "test_top1"):
            expected.setdefault(cell.data.tags["cell"], {}).setdefault(f"linear.{m}", []).append(ev.data.metrics[m])
    table = ablation_table(uri, parent)
    assert table.columns == ["linear.val_top1", "linear.test_top1"]
    assert [r.cell for r in table.rows] == ["motion", "all"]  # grid order
    for row in table.rows:
        assert row.n == 2
        for col, values in expected[row.cell].items():
            assert row.mean(col) == pytest.approx(statistics.fmean(values))
            assert row.std(col) == pytest.approx(statistics.stdev(values))
    json_rows = {r["cell"]: r for r in resumed["rows"]["rows"]}  # --json carries the same numbers
    assert json_rows["all"]["metrics"]["linear.test_top1"]["mean"] == pytest.approx(
        statistics.fmean(expected["all"]["linear.test_top1"]))
    assert "| cell | n | linear.val_top1 | linear.test_top1 |" in resumed["stdout"]  # printed
    assert "**" in resumed["stdout"] and "Selected on validation" in resumed["stdout"]
    logged = c.get_run(parent).data.metrics
    assert logged["all.linear.test_top1.mean"] == pytest.approx(statistics.fmean(expected["all"]["linear.test_top1"]))
    assert (resumed["tmp"] / "out" / "table.csv").read_text() == table.to_csv()


def test_cli_refuses_reusing_a_name_and_resume_without_name(resumed: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    tmp = resumed["tmp"]
    args = ["ablate", str(SMOKE), "--tracking-uri", resumed["uri"], "--storage-path", str(tmp / "ray")]
    assert main([*args, "--name", "resumable"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "--resume needs the --name" in capsys.readouterr().err
    # The same record reached through a URI storage path (the pyarrow.fs route an s3:// path takes).
    uri_args = ["ablate", str(SMOKE), "--tracking-uri", resumed["uri"], "--storage-path", (tmp / "ray").as_uri()]
    assert main([*uri_args, "--name", "resumable"]) == 2
    assert "already exists" in capsys.readouterr().err


# --------------------------------------------------------------------------- baseline cells, really run
def test_baseline_cells_run_land_in_mlflow_and_fill_the_delta_column(tmp_path: Path, sqlite_uri: str) -> None:
    """One ablation cell + ``baselines: [random, supervised]`` × 2 seeds at the smoke sizes, through the CLI."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(name="baselined", cells={"all": {}}, baselines=["random", "supervised"], max_concurrent=2)
    grid_file = tmp_path / "baselined.yaml"
    grid_file.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "-m", "ms2l_ray.cli", "ablate", str(grid_file), "--tracking-uri", sqlite_uri,
                           "--storage-path", str(tmp_path / "ray"), "--out", str(tmp_path / "out"), "--name", "bl",
                           "--json", str(out)], env=env, capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parent = json.loads(out.read_text())["parent_run_id"]
    c = client(sqlite_uri)
    cells = runs_of(sqlite_uri, parent, "tags.kind = 'ablation_cell'")
    assert sorted((r.data.tags["cell"], r.data.tags["seed"], r.data.tags.get("baseline"), r.info.status)
                  for r in cells) == [("all", s, None, "FINISHED") for s in ("0", "1")] + [
        (k, s, k, "FINISHED") for k in ("random", "supervised") for s in ("0", "1")]
    exp = c.get_run(parent).info.experiment_id
    evals: dict[tuple[str, str], Any] = {}
    for cell in cells:
        jobs = c.search_runs([exp], f"tags.mlflow.parentRunId = '{cell.info.run_id}'")
        kinds = sorted(j.data.tags["kind"] for j in jobs)
        assert kinds == (["evaluate"] if cell.data.tags.get("baseline") else ["evaluate", "pretrain"])
        ev = next(j for j in jobs if j.data.tags["kind"] == "evaluate")
        t = ev.data.tags
        assert (t["cell"], t["seed"], t["evaluation"], t.get("baseline")) == (
            cell.data.tags["cell"], cell.data.tags["seed"], "linear", cell.data.tags.get("baseline"))
        if t.get("baseline"):
            assert t["reported_as"] == "linear" and t["encoder_source"] == "random" and "encoder" not in t
        evals[(t["cell"], t["seed"])] = ev
    for seed in ("0", "1"):  # paired by construction: the same config, seed and split as the ablation cell
        ablated = evals[("all", seed)].data.params
        assert evals[("random", seed)].data.params == ablated and ablated["evaluation.strategy"] == "linear"
        sup = evals[("supervised", seed)].data.params
        assert sup["evaluation.strategy"] == "supervised"
        assert {k: v for k, v in sup.items() if k != "evaluation.strategy"} == {
            k: v for k, v in ablated.items() if k != "evaluation.strategy"}
    table = ablation_table(sqlite_uri, parent)
    assert [(r.cell, r.baseline, r.n) for r in table.rows] == [("random", "random", 2), ("all", "", 2),
                                                              ("supervised", "supervised", 2)]
    head, rows = table.text_rows()
    assert head == ["cell", "n", "linear.val_top1", "Δ random", "linear.test_top1", "Δ random"]
    diffs = [evals[("all", s)].data.metrics["test_top1"] - evals[("random", s)].data.metrics["test_top1"]
             for s in ("0", "1")]
    cmp = table.vs_random[("all", "linear.test_top1")]
    assert cmp.seeds == (0, 1) and cmp.mean == pytest.approx(statistics.fmean(diffs))
    assert rows[1][5].startswith(f"{statistics.fmean(diffs):+.2f} ± ")
    assert rows[0][3] == rows[0][5] == "–"  # random against itself
    assert "| random | 2 |" in proc.stdout and "| cell | n | linear.val_top1 | Δ random |" in proc.stdout
    assert "+ baselines random, supervised × 2 seeds" in proc.stdout
    rec = {r["cell"]: r for r in json.loads(out.read_text())["rows"]}
    assert rec["all"]["metrics"]["linear.test_top1"]["vs_random"]["diff"] == pytest.approx(statistics.fmean(diffs))
    assert c.get_run(parent).data.params["ablation.baselines"] == "random,supervised"


class _UntilACellSeedFinished:
    """A budget clock that stands still until a cell-seed run FINISHED in ``uri``, then jumps past any budget."""

    def __init__(self, uri: str) -> None:
        self.uri, self.now = uri, 0.0

    def __call__(self) -> float:
        if self.now == 0.0 and _finished_cell_seeds(self.uri):
            self.now = 1e9
        return self.now


def test_a_time_budget_stops_running_cell_seeds_and_tables_the_finished_ones(
        tmp_path: Path, sqlite_uri: str, capfd: pytest.CaptureFixture[str]) -> None:
    """Two cell-seeds at a time: a 1-epoch one finishes, a 400-epoch one is stopped, the third never starts."""
    import ray

    from ms2l_ray.jobs.cluster import ensure_ray
    from ms2l_ray.jobs.spec import Resources
    from ms2l_ray.jobs.tracked import Execution, Tracking
    from ms2l_ray.studies.ablation.grid import load_grid
    from ms2l_ray.studies.ablation.runner import run_ablation
    from ms2l_ray.studies.budget import Budget

    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(name="budgeted", seeds=[0], max_concurrent=2,
               cells={"a_quick": {}, "b_long": {"pretrain": {"epochs": 400}}, "c_later": {}})  # run in name order
    grid_file = tmp_path / "budgeted.yaml"
    grid_file.write_text(yaml.safe_dump(raw))
    ensure_ray(num_cpus=2)
    try:
        result = run_ablation(load_grid(grid_file), name="budgeted", tracking=Tracking(sqlite_uri, "ms2l"),
                              execution=Execution(resources=Resources(1, 1.0), storage_path=str(tmp_path / "ray")),
                              out_dir=tmp_path / "out",
                              budget=Budget(60.0, "1m", clock=_UntilACellSeedFinished(sqlite_uri)))
        deadline = time.time() + 60  # the stopped cell-seed's Train workers give their CPUs back
        while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
            time.sleep(0.5)
        assert ray.available_resources().get("CPU", 0) == 2, ray.available_resources()
    finally:
        ray.shutdown()

    assert result.ended_by_budget and result.ran == [("a_quick", 0)]
    assert result.budget_stopped == [("b_long", 0)] and result.not_started == [("c_later", 0)] and not result.failed
    assert [(r.cell, r.n) for r in result.table.rows] == [("a_quick", 1)]
    c = client(sqlite_uri)
    parent = c.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ended_by"] == "time_budget" and parent.data.tags["time_budget"] == "1m"
    cells = {r.data.tags["cell"]: r for r in runs_of(sqlite_uri, result.parent_run_id, "tags.kind = 'ablation_cell'")}
    assert set(cells) == {"a_quick", "b_long"}  # c_later never started: no run
    assert cells["a_quick"].info.status == "FINISHED"
    assert cells["b_long"].info.status == "KILLED" and cells["b_long"].data.tags["outcome"] == "budget_stopped"
    exp = parent.info.experiment_id
    assert not [r.info.run_name for r in c.search_runs([exp]) if r.info.status == "RUNNING"]  # nothing left open
    out = capfd.readouterr().out
    assert "[ablate] time budget 1m spent: stopping 1 running cell-seed(s); 1 not started" in out
    assert "[ablate] cell=b_long seed=0: stopped by the time budget 1m" in out
    assert "[ablate] the time budget 1m ended ablation budgeted after" in out
