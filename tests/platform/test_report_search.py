"""``ms2l report`` of a search, without Ray: built from MLflow alone, written locally and attached to the parent.

A search parent is written straight into MLflow the way ``ms2l tune`` lays it out (kind=search, trial
children with ``trial_id`` and ``objective``, a ``param_importance.csv`` artifact), so the report is
tested against the run layout rather than against the search code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow_helpers import artifact_paths

from ms2l_ray.cli.main import main
from ms2l_ray.report.build import build_report
from ms2l_ray.tracking.runs import start_run


def _fake_search(uri: str, layout: str = "contract") -> str:
    """A finished search: parent (kind=search) + trial children (+ a pretrain grandchild each).

    ``contract``: trials carry an ``objective`` metric and the parent a ``param_importance.csv``;
    ``tune``: as ``ms2l tune`` writes it — the parent's ``metric`` tag names the trials' objective metric
    (``val_top1``), its ``parameters`` param lists the searched keys, importance is in ``importance.csv``,
    and a rejected trial has no objective at all.
    """
    tune = layout == "tune"
    parent = start_run(uri, "search", "tune-demo", None, {"kind": "search", "mode": "max",
                                                          "metric": "val_top1" if tune else "linear.val_top1"})
    if tune:
        parent.log_params({"parameters": "pretrain.lr,tasks.temperature,optim", "preset": "smoke"})
    for i, (lr, tau, opt) in enumerate([(1e-3, 0.5, "adam"), (3e-3, 0.9, "sgd"), (1e-2, 0.2, "adam"),
                                        (3e-4, 0.7, "sgd")]):
        trial = start_run(uri, "search", f"trial-{i}", parent, {"trial_id": f"t{i:03d}", "kind": "trial"})
        trial.log_params({"pretrain.lr": lr, "tasks.temperature": tau, "optim": opt, "seed": 0})
        trial.log_metrics({"val_top1" if tune else "objective": 40.0 + 10 * tau - i}, step=0)
        health = {0: {"health": "[]"}, 1: {"health": '["jigsaw stuck at chance"]'}}.get(i, {})  # 2, 3: untagged
        pre = start_run(uri, "search", f"trial-{i}-pretrain", trial, {"kind": "pretrain", **health})
        for epoch in range(3):
            pre.log_metrics({"train_loss": 3.0 - epoch * 0.5 - 0.1 * i, "train_jigsaw_loss": 1.5 - 0.2 * epoch},
                            step=epoch + 1)
        for run in (pre, trial):
            run.end("FINISHED")
    if tune:
        rejected = start_run(uri, "search", "trial-4", parent, {"trial_id": "t004", "kind": "trial",
                                                                 "outcome": "rejected"})
        rejected.end("FINISHED")
    imp = "tasks.temperature,0.8\npretrain.lr,0.15\noptim,0.05\n"
    if tune:
        parent.log_text("parameter,importance\n" + imp, "summary/importance.csv")
    else:
        parent.log_text("param,importance\n" + imp, "param_importance.csv")
    parent.log_text("trial_id,objective\nt000,45\n", "trials.csv")
    parent.end("FINISHED")
    return parent.run_id


@pytest.mark.parametrize("layout", ["contract", "tune"])
def test_search_report_history_importance_parallel_coordinates(tmp_path: Path, sqlite_uri: str, layout: str) -> None:
    parent = _fake_search(sqlite_uri, layout)
    build_report(parent, tracking_uri=sqlite_uri, out_dir=tmp_path / "rep", top_k=3)
    md = (tmp_path / "rep" / "report.md").read_text()
    metric = "val_top1" if layout == "tune" else "linear.val_top1"
    trials = 5 if layout == "tune" else 4
    assert "## Search tune-demo" in md and f"{trials} trials, 4 with an objective ({metric}, max)" in md
    for png in ("search_history.png", "param_importance.png", "parallel_coordinates.png", "pretrain_losses.png"):
        assert f"({png})" in md and (tmp_path / "rep" / png).stat().st_size > 1000
    ranked = re.findall(r"^\| (\d) \| (t\d{3}) \|", md, flags=re.M)
    assert ranked == [("1", "t001"), ("2", "t000"), ("3", "t003")]  # best objective first, top-k only
    assert "seed" not in md.split("| rank |")[1].splitlines()[0]  # constant params are not columns
    assert "**Pretext-task health** (1 of 3 pretrain runs flagged" in md  # the best trials' pretrain runs
    assert ("| trial t001 | jigsaw stuck at chance |\n| trial t000 | healthy |\n| trial t003 | not assessed |"
            in md)
    assert {"report/report.html", "report/parallel_coordinates.png"} <= artifact_paths(sqlite_uri, parent, "report")


def test_unknown_target_lists_experiments(tmp_path: Path, sqlite_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_search(sqlite_uri)
    assert main(["report", "nope", "--tracking-uri", sqlite_uri, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "neither a run id nor an experiment name" in err and "search" in err
