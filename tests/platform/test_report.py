"""``ms2l report`` on a real ablation: built from MLflow alone, written locally and attached to the parent run.

An ablation is run in-process on the module's local Ray (two cell-seeds at a time, as Ray tasks). The search
report, on a search tree written straight into MLflow, needs no Ray: tests/platform/test_report_search.py.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import chromium, mlflow_server, page_text, wait_for
from mlflow_helpers import artifact_paths, children, client, sqlite_uri_in
from paths import ABLATIONS

from ms2l_ray.cli.main import main
from ms2l_ray.jobs.cluster import TRAIN_POLL_ENV as POLL_ENV
from ms2l_ray.jobs.cluster import TRAIN_POLL_S as POLL_S
from ms2l_ray.jobs.spec import Resources
from ms2l_ray.jobs.tracked import Execution, Tracking
from ms2l_ray.report.build import build_report
from ms2l_ray.studies.ablation.grid import load_grid
from ms2l_ray.studies.ablation.runner import run_ablation

pytestmark = pytest.mark.ray  # starts a local Ray instance: the platform layer, not the core


@pytest.fixture(scope="module")
def ablation(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    uri = sqlite_uri_in(tmp)
    grid = load_grid(ABLATIONS / "smoke.yaml")
    with pytest.MonkeyPatch.context() as mp:  # what `ms2l ablate` sets: Train's poll interval, 2 s → 0.2 s
        mp.setenv(POLL_ENV, POLL_S)
        result = run_ablation(grid, name="reported", tracking=Tracking(uri, "ablations"),
                              execution=Execution(resources=Resources(1, 1.0, 0.0), storage_path=str(tmp / "ray")),
                              out_dir=tmp / "out", max_concurrent=2)
    assert not result.failed and len(result.ran) == 4
    return {"uri": uri, "tmp": tmp, "result": result}


def test_ablation_report_has_table_plots_and_is_attached(ablation: dict[str, Any]) -> None:
    uri, tmp, result = ablation["uri"], ablation["tmp"], ablation["result"]
    paths = build_report(result.parent_run_id, tracking_uri=uri, out_dir=tmp / "rep")
    md = (tmp / "rep" / "report.md").read_text()
    assert result.table.to_markdown().splitlines()[0] in md  # the table, recomputed from MLflow
    for row in result.table.rows:
        assert f"| {row.cell} | 2 |" in md
    assert "![" in md and "(ablation_bars.png)" in md and "(pretrain_losses.png)" in md
    assert "Time:" in md and "% of the wall time" in md
    page = (tmp / "rep" / "report.html").read_text()
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 2 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)  # self-contained
    assert {p.name for p in paths} >= {"report.md", "report.html", "ablation_bars.png", "pretrain_losses.png"}
    arts = artifact_paths(uri, result.parent_run_id, "report")
    assert {"report/report.md", "report/report.html", "report/ablation_bars.png",
            "report/pretrain_losses.png"} <= arts


def test_report_by_experiment_name_through_the_cli(ablation: dict[str, Any]) -> None:
    out = ablation["tmp"] / "by-experiment"
    assert main(["report", "ablations", "--tracking-uri", ablation["uri"], "--out", str(out), "--no-attach"]) == 0
    md = (out / "report.md").read_text()
    assert "# Report: experiment ablations" in md and "## Ablation reported" in md


# --------------------------------------------------------------------------- what people see, in a real browser
def _shoot(driver: Any, path: Path) -> None:
    """A full-window screenshot (PNG) into the test's folder."""
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_mlflow_ui_shows_the_run_tree_and_compares_the_cells(ablation: dict[str, Any], tmp_path: Path) -> None:
    """The reported ablation through a real ``mlflow server`` and headless Chromium: the experiment page lists
    the parent and (expanded) its cell-seed runs with their dataset; the compare view puts the cell-seeds'
    metrics side by side. Screenshots: experiment.png, experiment_nested.png, compare.png."""
    from selenium.webdriver.common.by import By

    uri, result = ablation["uri"], ablation["result"]
    c = client(uri)
    exp_id = c.get_run(result.parent_run_id).info.experiment_id
    cells = [r for r in children(uri, result.parent_run_id) if r.data.tags.get("kind") == "ablation_cell"]
    titles = sorted(r.info.run_name for r in cells)
    assert titles == [f"smoke / {cell} / seed {s}" for cell in ("all", "motion") for s in (0, 1)]
    with mlflow_server(uri, tmp_path / "mlflow-server.log") as base, chromium() as driver:
        # Model-training view (MLflow 3.17 keeps a GenAI/model-training switch per browser; the link says which)
        driver.get(f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
        link = wait_for(driver, lambda d: d.find_elements(By.LINK_TEXT, "reported"), "the parent run 'reported'")[0]
        _shoot(driver, tmp_path / "experiment.png")
        row = link.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
        row.find_elements(By.CSS_SELECTOR, "button")[0].click()  # the parent's expander
        wait_for(driver, lambda d: all(t in page_text(d) for t in titles), f"the nested runs {titles}")
        wait_for(driver, lambda d: "builtin" in page_text(d), "the cell-seeds' dataset (builtin) in the Dataset column")
        _shoot(driver, tmp_path / "experiment_nested.png")

        ids = json.dumps([r.info.run_id for r in cells])
        driver.get(f"{base}/#/compare-runs?runs={urllib.parse.quote(ids)}"
                   f"&experiments={urllib.parse.quote(json.dumps([exp_id]))}&workflowType=machine_learning")
        wait_for(driver, lambda d: "linear.test_top1" in page_text(d) and "linear.val_top1" in page_text(d),
                 "the cell-seeds' metrics")
        text = page_text(driver)
        assert all(t in text for t in titles)  # one column per cell-seed
        row = driver.find_element(By.XPATH, "//*[normalize-space(text())='linear.test_top1']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        for r in cells:  # each cell-seed's own value is on the page
            value = r.data.metrics["linear.test_top1"]
            assert any(f"{value:.{k}f}".rstrip("0").rstrip(".") in text for k in (1, 2, 3, 4)), value
        _shoot(driver, tmp_path / "compare.png")


def test_report_html_images_load_and_links_resolve(ablation: dict[str, Any], tmp_path: Path) -> None:
    """``ms2l report``'s HTML in headless Chromium: every image decodes (naturalWidth > 0), every link resolves
    (in-page anchors to an element, files to a file). Screenshot: report.png."""
    from selenium.webdriver.common.by import By

    build_report(ablation["result"].parent_run_id, tracking_uri=ablation["uri"], out_dir=tmp_path / "rep",
                 attach_to_runs=False)
    page = tmp_path / "rep" / "report.html"
    with chromium(1280, 2400) as driver:
        driver.get(page.as_uri())
        wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete", "a loaded page")
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 2
        widths = [driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images]
        assert all(w and w > 0 for w in widths), widths
        for a in driver.find_elements(By.TAG_NAME, "a"):
            href = a.get_attribute("href") or ""
            if "#" in href and href.split("#")[0] == page.as_uri():
                anchor = href.split("#", 1)[1]
                assert driver.execute_script("return !!document.getElementById(arguments[0])", anchor), href
            elif href.startswith("file://"):
                assert Path(urllib.parse.unquote(href[len("file://"):])).exists(), href
        _shoot(driver, tmp_path / "report.png")
