"""Paired statistics over seeds and the ablation table's marks, on hand-computable numbers (no Ray).

The Student-t values are checked against closed forms that share no code with ``stats``: with 2 degrees
of freedom F(t) = 1/2 + t / (2·√(2 + t²)), so P(|T| ≥ t) = 1 − t/√(2 + t²) and the q-quantile is
(2q − 1)/√(2q(1 − q)); with 1 degree of freedom (Cauchy) P(|T| ≥ t) = 1 − (2/π)·atan(t). Other degrees of
freedom are checked against a numerical integral of the density and the printed table value t₀.₉₇₅,₂.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from ms2l_ray.studies.ablation.stats import betainc, paired_by_seed, paired_t, t_quantile, t_two_sided_p
from ms2l_ray.studies.ablation.table import CellSeedRun, build_table, parse_health


def p_df2(t: float) -> float:
    return 1.0 - abs(t) / math.sqrt(2.0 + t * t)


def p_by_integration(t: float, df: int) -> float:
    """2·∫_|t|^∞ of the t density, by the trapezoid rule on x = |t| + u/(1−u) (u ∈ [0, 1))."""
    u = np.linspace(0.0, 1.0, 400_001)[:-1]
    x = abs(t) + u / (1.0 - u)
    norm = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    dens = norm * (1 + x**2 / df) ** (-(df + 1) / 2)
    y = dens / (1.0 - u) ** 2
    return float(2.0 * np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(u)))


# ------------------------------------------------------------------------------------------ the t-test
def test_paired_t_on_differences_1_2_3_matches_the_hand_computation() -> None:
    r = paired_t([1.0, 2.0, 3.0])
    assert r.n == 3 and r.df == 2 and r.mean == 2.0 and r.sd == 1.0
    assert r.t == pytest.approx(2.0 * math.sqrt(3.0), rel=1e-12)  # 2 / (1/√3) = 3.4641
    assert r.t == pytest.approx(3.4641016, abs=1e-7)
    assert r.p == pytest.approx(p_df2(2.0 * math.sqrt(3.0)), rel=1e-10)  # = 1 − 2√3/√14
    assert r.p == pytest.approx(0.0741799, abs=1e-7)
    half = 4.302653 * (1.0 / math.sqrt(3.0))  # t₀.₉₇₅,₂ (printed tables) × se
    assert r.ci_low == pytest.approx(2.0 - half, abs=1e-6) and r.ci_high == pytest.approx(2.0 + half, abs=1e-6)
    assert r.half_width == pytest.approx(2.4841377, abs=1e-6)
    assert r.mark() == ""  # p = 0.074: not significant at 0.05
    assert not r.too_small


def test_t_distribution_against_closed_forms_and_integration() -> None:
    for t in (0.0, 0.5, 1.0, 3.4641016, 10.0, 250.0):
        assert t_two_sided_p(t, 2) == pytest.approx(p_df2(t), rel=1e-10, abs=1e-14)
        assert t_two_sided_p(-t, 2) == t_two_sided_p(t, 2)
        assert t_two_sided_p(t, 1) == pytest.approx(1.0 - 2.0 / math.pi * math.atan(t), rel=1e-10, abs=1e-14)
    for q in (0.6, 0.9, 0.975, 0.995):
        assert t_quantile(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-9)
        assert t_quantile(1 - q, 2) == pytest.approx(-t_quantile(q, 2), rel=1e-12)
    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-9)  # 12.7062
    for df, t in ((4, 2.1), (9, 1.3), (30, 2.75)):
        assert t_two_sided_p(t, df) == pytest.approx(p_by_integration(t, df), abs=1e-8)
        assert t_two_sided_p(t_quantile(0.975, df), df) == pytest.approx(0.05, abs=1e-10)
    assert t_two_sided_p(math.inf, 3) == 0.0
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 − Σ_{k<2} C(4,k) .4^k .6^(4−k)
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        betainc(1.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="quantile level"):
        t_quantile(1.0, 3)


def test_n_too_small_and_zero_variance_are_explicit() -> None:
    one = paired_t([4.5], seeds=[7])
    assert one.too_small and one.mark() == "n too small" and one.mean == 4.5 and one.seeds == (7,)
    assert math.isnan(one.p) and math.isnan(one.ci_low) and math.isnan(one.sd)
    none = paired_t([])
    assert none.too_small and none.n == 0 and math.isnan(none.mean)
    same = paired_t([1.5, 1.5, 1.5])  # deterministic: the s → 0 limit, p = 0
    assert same.p == 0.0 and same.mark() == "**" and (same.ci_low, same.ci_high) == (1.5, 1.5) and same.t == math.inf
    zero = paired_t([0.0, 0.0])
    assert zero.p == 1.0 and zero.mark() == "" and math.isnan(zero.t)
    assert paired_t([1.0, 1.2, 0.9, 1.1]).mark() == "**"  # t = 10.95, df 3: p = 0.0016
    with pytest.raises(ValueError, match="2 differences but 3 seeds"):
        paired_t([1.0, 2.0], seeds=[0, 1, 2])


def test_pairing_matches_seed_values_and_drops_unmatched_seeds() -> None:
    a = {0: 10.0, 1: 12.0, 2: 15.0, 9: 99.0}
    b = {2: 11.0, 1: 9.0, 0: 9.0, 5: -50.0}
    r = paired_by_seed(a, b)
    assert r.seeds == (0, 1, 2)  # seeds 9 and 5 have no partner: dropped, never matched to another seed
    assert r.mean == pytest.approx((1.0 + 3.0 + 4.0) / 3.0)
    assert r.sd == pytest.approx(math.sqrt(((1 - 8 / 3) ** 2 + (3 - 8 / 3) ** 2 + (4 - 8 / 3) ** 2) / 2))
    assert paired_by_seed({0: 1.0, 3: 2.0}, {3: 1.5}).too_small


# ----------------------------------------------------------------------------- the table's columns and marks
VAL, TEST = "linear.val_top1", "linear.test_top1"
VALUES = {  # cell → (baseline kind, {seed: (val, test)})
    "random": ("random", {0: (10, 10), 1: (12, 11), 2: (14, 12)}),
    "a": ("", {0: (20, 12), 1: (23, 11), 2: (26, 16)}),
    "b": ("", {0: (30, 20), 1: (31, 21), 2: (35, 22)}),
    "c": ("", {0: (5, 9)}),
    "supervised": ("supervised", {0: (40, 30), 1: (40, 30), 2: (40, 31)}),
}
HEALTH = {("a", 0): ["jigsaw did not learn (acc 0.17 ≈ chance 0.17)"],
          ("a", 1): ["jigsaw did not learn (acc 0.17 ≈ chance 0.17)", "motion loss flat"]}


def _runs() -> list[CellSeedRun]:
    runs = []
    for cell in ("supervised", "c", "b", "random", "a"):  # store order is not table order
        kind, seeds = VALUES[cell]
        for seed, (v, t) in seeds.items():
            runs.append(CellSeedRun(cell, seed, f"{cell}{seed}", "FINISHED", baseline=kind,
                                    metrics={VAL: float(v), TEST: float(t)}, health=HEALTH.get((cell, seed), [])))
    runs.append(CellSeedRun("a", 3, "failed", "FAILED", metrics={VAL: 99.0}))
    return runs


def test_table_rows_marks_and_delta_random_columns_are_exact() -> None:
    table = build_table(_runs(), [VAL, TEST], ["a", "b", "c"])
    assert [r.cell for r in table.rows] == ["random", "a", "b", "c", "supervised"]
    assert table.best == {VAL: "b", TEST: "b"}  # supervised (40) is a baseline: never "best"
    lines = table.to_markdown().splitlines()
    assert lines[:7] == [
        "| cell | n | linear.val_top1 | Δ random | linear.test_top1 | Δ random |",
        "|---|---|---:|---:|---:|---:|",
        "| random | 3 | 12.00 ± 2.00 ** | – | 11.00 ± 1.00 ** | – |",
        "| a | 3 | 23.00 ± 3.00 ** | +11.00 ± 2.48 ** | 13.00 ± 2.65 * | +2.00 ± 4.97 |",
        "| b | 3 | **32.00 ± 2.65** † | +20.00 ± 2.48 ** | **21.00 ± 1.00** † | +10.00 ± 0.00 ** |",
        "| c | 1 | 5.00 ± n/a | -5.00 (n too small) | 9.00 ± n/a | -1.00 (n too small) |",
        "| supervised | 3 | 40.00 ± 0.00 * | +28.00 ± 4.97 ** | 30.33 ± 0.58 ** | +19.33 ± 1.43 ** |",
    ]
    legend = lines[8]
    assert legend.startswith("mean ± sample std over n seeds; **bold** † = best mean per column among the ablation "
                             "cells (baselines excluded); * p < 0.05, ** p < 0.01: two-sided paired t-test")
    assert "Δ random = mean paired difference to the random baseline ± 95 % CI half-width" in legend
    assert "n too small = fewer than 2 paired seeds" in legend
    assert legend.endswith("Selected on validation (linear.val_top1): b → linear.test_top1 21.00 ± 1.00.")
    assert lines[9:] == ["", "Notes (pretext-task health of the pretrain runs):", "",
                         "- a: jigsaw did not learn (acc 0.17 ≈ chance 0.17); motion loss flat"]
    # the numbers behind the marks: supervised − b on val = [10, 9, 5] → t = 8/(√7/√3), p = 1 − t/√(2+t²)
    sup = table.vs_best[("supervised", VAL)]
    t = 8.0 / (math.sqrt(7.0) / math.sqrt(3.0))
    assert sup.mean == 8.0 and sup.p == pytest.approx(p_df2(t), rel=1e-10) and 0.01 < sup.p < 0.05
    assert table.vs_random[("b", TEST)].p == 0.0  # [10, 10, 10]: zero variance, mean ≠ 0
    assert ("random", VAL) not in table.vs_random and ("b", VAL) not in table.vs_best


def test_table_csv_and_json_carry_the_comparisons() -> None:
    table = build_table(_runs(), [VAL, TEST], ["a", "b", "c"])
    rows = {r["cell"]: r for r in csv.DictReader(io.StringIO(table.to_csv()))}
    a = rows["a"]
    assert (a["linear.val_top1.mean"], a["linear.val_top1.std"], a["best_in"], a["baseline"]) == ("23.0000", "3.0000",
                                                                                                    "", "")
    assert a["linear.val_top1.vs_random.diff"] == "11.0000" and a["linear.val_top1.vs_random.n"] == "3"
    assert a["linear.val_top1.vs_random.ci_low"] == f"{11 - 4.302653 / math.sqrt(3):.4f}"  # 8.5159
    assert a["linear.val_top1.vs_random.p"] == f"{p_df2(11 * math.sqrt(3)):.4g}" and a[
        "linear.val_top1.vs_random.sig"] == "**"
    assert a["linear.val_top1.vs_best.diff"] == "-9.0000" and a["linear.test_top1.vs_random.sig"] == ""
    assert a["notes"] == "jigsaw did not learn (acc 0.17 ≈ chance 0.17) | motion loss flat"
    assert rows["c"]["linear.val_top1.vs_random.sig"] == "n too small"
    assert rows["c"]["linear.val_top1.vs_random.p"] == ""
    assert rows["b"]["best_in"] == "linear.val_top1;linear.test_top1" and rows["b"]["linear.val_top1.vs_best.n"] == ""
    assert rows["supervised"]["baseline"] == "supervised" and rows["random"]["linear.val_top1.vs_random.diff"] == ""
    rec = {r["cell"]: r for r in table.records()}
    assert rec["c"]["metrics"][VAL]["vs_random"] == {"diff": -5.0, "ci_low": None, "ci_high": None, "p": None, "n": 1,
                                                     "seeds": [0], "sig": "n too small"}
    assert rec["random"]["baseline"] == "random" and rec["random"]["metrics"][VAL]["vs_random"] is None
    assert rec["a"]["notes"] == ["jigsaw did not learn (acc 0.17 ≈ chance 0.17)", "motion loss flat"]


def test_table_without_a_random_baseline_has_no_delta_column() -> None:
    runs = [r for r in _runs() if r.cell in ("a", "b")]
    md = build_table(runs, [VAL], ["a", "b"]).to_markdown()
    assert md.splitlines()[:4] == ["| cell | n | linear.val_top1 |", "|---|---|---:|",
                                   "| a | 3 | 23.00 ± 3.00 ** |", "| b | 3 | **32.00 ± 2.65** † |"]
    assert "Δ random" not in md


def test_health_tag_parsing() -> None:
    assert parse_health(None) == [] and parse_health("") == [] and parse_health("[]") == []
    assert parse_health('["jigsaw did not learn", "collapsed"]') == ["jigsaw did not learn", "collapsed"]
    assert parse_health("not json") == ["not json"] and parse_health('{"a": 1}') == ['{"a": 1}']


# ------------------------------------------------------------------- reading the run tree (MLflow store, no Ray)
def test_fetch_reads_baseline_reported_as_and_health_tags(sqlite_uri: str) -> None:
    from mlflow_helpers import client

    from ms2l_ray.studies.ablation.table import ablation_table, fetch_cell_seed_runs

    c = client(sqlite_uri)
    exp = c.create_experiment("ms2l")
    parent = c.create_run(exp, tags={"kind": "ablation"}).info.run_id
    c.log_param(parent, "ablation.cells", "all")
    c.log_param(parent, "ablation.columns", "linear.test_top1,finetune.test_top1")

    def run(tags: dict[str, str], under: str, metrics: dict[str, float]) -> str:
        rid = c.create_run(exp, tags={**tags, "ablation_run_id": parent, "mlflow.parentRunId": under}).info.run_id
        for k, v in metrics.items():
            c.log_metric(rid, k, v)
        c.set_terminated(rid, "FINISHED")
        return rid

    sup = run({"kind": "ablation_cell", "cell": "supervised", "seed": "0", "baseline": "supervised"}, parent, {})
    run({"kind": "evaluate", "evaluation": "linear", "reported_as": "linear,finetune", "baseline": "supervised"},
        sup, {"test_top1": 70.0})
    cell = run({"kind": "ablation_cell", "cell": "all", "seed": "0"}, parent, {})
    pre = run({"kind": "pretrain", "health": '["jigsaw did not learn (acc 0.17 ≈ chance 0.17)"]'}, cell, {})
    run({"kind": "evaluate", "evaluation": "linear"}, cell, {"test_top1": 50.0})
    run({"kind": "evaluate", "evaluation": "finetune"}, cell, {"test_top1": 60.0})
    got = {r.cell: r for r in fetch_cell_seed_runs(sqlite_uri, parent)}
    assert got["supervised"].baseline == "supervised" and got["all"].baseline == ""
    assert got["supervised"].metrics == {"linear.test_top1": 70.0, "finetune.test_top1": 70.0}
    assert got["supervised"].pretrain_run_id is None and got["supervised"].health == []
    assert got["all"].pretrain_run_id == pre and got["all"].health == ["jigsaw did not learn (acc 0.17 ≈ chance 0.17)"]
    table = ablation_table(sqlite_uri, parent)
    assert [r.cell for r in table.rows] == ["all", "supervised"] and table.rows[0].notes == got["all"].health
