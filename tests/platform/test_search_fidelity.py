"""Proxy fidelity and seed confirmation, as pure functions: rank correlations against hand computations, the
warnings on an inverted and on a consistent proxy, mean ± std of confirmation reruns. No Ray cluster needed."""

from __future__ import annotations

import math

import pytest
from paths import SEARCH_SPACES

from ms2l_ray.cli.main import main
from ms2l_ray.studies.search.confirm import (
    ConfirmSpec,
    confirmation_points,
    confirmation_seeds,
    summarise,
    top_rows,
)
from ms2l_ray.studies.search.fidelity import (
    Noise,
    TrialHistory,
    accuracy_noise,
    average_ranks,
    kendall_tau_b,
    proxy_fidelity,
    spearman,
)
from ms2l_ray.studies.search.sampling import FINAL, OBJECTIVE
from ms2l_ray.studies.search.summary import TrialRow, proxy_history

SMOKE = SEARCH_SPACES / "smoke.yaml"


def test_average_ranks_share_the_ranks_of_ties() -> None:
    assert average_ranks([10, 20, 20, 40]) == [1, 2.5, 2.5, 4]
    assert average_ranks([3, 1, 3, 3]) == [3, 1, 3, 3]  # ranks 2, 3, 4 → 3
    assert average_ranks([]) == []


def test_rank_correlations_equal_hand_computations() -> None:
    # no ties: d = (1, -1, 1, -1, 0), rho = 1 - 6·4 / (5·24) = 0.8; pairs (0,1) and (2,3) discordant: tau = 6/10
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.6)
    # a tie in x: ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4): Sxy 4.5, Sxx 4.5, Syy 5 → rho = sqrt(0.9);
    # C = 5, D = 0, one pair tied in x: tau_b = 5 / sqrt((6 - 1)(6 - 0))
    assert spearman([10, 20, 20, 40], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    assert kendall_tau_b([10, 20, 20, 40], [1, 3, 2, 4]) == pytest.approx(5 / math.sqrt(30))
    # ties on both sides, one pair tied in both: ranks (1.5, 1.5, 3, 4) vs (1.5, 1.5, 3.5, 3.5): rho = 4 / sqrt(18);
    # C = 4, D = 0, n1 = 1, n2 = 2: tau_b = 4 / sqrt(5 · 4)
    assert spearman([1, 1, 2, 3], [1, 1, 2, 2]) == pytest.approx(4 / math.sqrt(18))
    assert kendall_tau_b([1, 1, 2, 3], [1, 1, 2, 2]) == pytest.approx(4 / math.sqrt(20))
    # a reversed ranking is -1; a constant side has no correlation
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert kendall_tau_b([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and kendall_tau_b([1, 1, 1], [1, 2, 3]) is None


def test_binomial_noise_of_two_accuracies() -> None:
    # two 50% accuracies on 100 samples: 100 · sqrt(2 · 0.25 / 100)
    assert accuracy_noise(50, 50, 100) == pytest.approx(100 * math.sqrt(0.005))
    assert accuracy_noise(100, 0, 10) == 0.0
    assert Noise(tolerance=1.5).of(10, 90) == 1.5
    assert Noise(n=100, z=2).of(50, 50) == pytest.approx(200 * math.sqrt(0.005))
    assert Noise().of(50, 50) is None and "unknown" in Noise().describe()


def _finished(tid: str, proxies: dict[int, float], objective: float) -> TrialHistory:
    return TrialHistory(tid, "finished", proxies, objective)


def test_fidelity_on_known_trial_histories_and_warning_on_an_inverted_proxy() -> None:
    """Rung 1 inverts the final ranking, rung 2 agrees with it; a cut at rung 1 was within tolerance of a survivor."""
    trials = [
        _finished("a", {1: 40.0, 2: 10.0, 4: 12.0}, 10.0),
        _finished("b", {1: 30.0, 2: 20.0, 4: 22.0}, 20.0),
        _finished("c", {1: 20.0, 2: 30.0, 4: 32.0}, 30.0),
        _finished("d", {1: 10.0, 2: 40.0, 4: 42.0}, 40.0),
        TrialHistory("cut", "early_stopped", {1: 9.5}),  # 0.5 below survivor d at rung 1
    ]
    fid = proxy_fidelity(trials, [1, 2, 4], "max", Noise(tolerance=1.0))
    by_epoch = {r.epoch: r for r in fid.rungs}
    assert by_epoch[1].n == 4 and by_epoch[1].spearman == pytest.approx(-1) and by_epoch[1].kendall == pytest.approx(-1)
    assert by_epoch[2].spearman == pytest.approx(1) and by_epoch[4].kendall == pytest.approx(1)
    assert [r.epoch for r in fid.weak()] == [1]
    warnings = fid.warnings()
    assert len(warnings) == 2 and "weak proxy at epoch 1" in warnings[0] and "rho=-1.00" in warnings[0]
    assert "trial cut was stopped at epoch 1" in warnings[1] and "survivor d" in warnings[1]
    cut = fid.close_cuts[0]
    assert (cut.epoch, cut.proxy, cut.survivor_id, cut.survivor_proxy, cut.noise) == (1, 9.5, "d", 10.0, 1.0)
    m = fid.metrics()
    assert m["proxy_spearman_rung1"] == pytest.approx(-1) and m["proxy_kendall_rung2"] == pytest.approx(1)
    assert m["proxy_n_rung4"] == 4 and m["proxy_close_cuts"] == 1
    assert any(line.startswith("WARNING: weak proxy") for line in fid.lines())


def test_fidelity_stays_quiet_on_a_consistent_proxy() -> None:
    trials = [_finished(t, {1: p, 2: p + 5}, o) for t, p, o in
              (("a", 10.0, 11.0), ("b", 20.0, 19.0), ("c", 30.0, 33.0), ("d", 40.0, 38.0))]
    trials.append(TrialHistory("cut", "early_stopped", {1: 2.0}))  # far below every survivor
    fid = proxy_fidelity(trials, [1, 2], "max", Noise(tolerance=1.0))
    assert [r.spearman for r in fid.rungs] == [pytest.approx(1), pytest.approx(1)]
    assert fid.warnings() == [] and fid.close_cuts == []
    # binomial noise on 44 validation clips (the quick space): 7% vs 10% is 3 points apart, within one standard
    # error of the difference (100·sqrt((0.07·0.93 + 0.1·0.9) / 44) ≈ 5.9 points); 20% (survivor b) is not
    noisy = proxy_fidelity(trials[:-1] + [TrialHistory("cut", "early_stopped", {1: 7.0})], [1, 2], "max",
                           Noise(n=44))
    assert [c.survivor_id for c in noisy.close_cuts] == ["a"]


def test_fidelity_needs_three_finished_trials_and_handles_min_mode() -> None:
    two = [_finished("a", {1: 1.0}, 1.0), _finished("b", {1: 2.0}, 2.0)]
    fid = proxy_fidelity(two, [1], "max", Noise())
    assert fid.rungs[0].n == 2 and fid.rungs[0].spearman is None and fid.warnings() == []
    assert "needs >= 3" in fid.lines()[0]
    # min mode (e.g. an error rate): a cut trial whose proxy is lower (better) than a survivor's is flagged
    trials = [*two, _finished("c", {1: 3.0}, 3.0), TrialHistory("x", "early_stopped", {1: 2.5})]
    cuts = proxy_fidelity(trials, [1], "min", Noise(tolerance=0.1)).close_cuts
    assert [c.survivor_id for c in cuts] == ["c"]  # 2.5 is better than survivor c's 3.0 in min mode
    # max mode: 2.5 beat survivors a (1.0) and b (2.0) — the survivor with the most inverted margin is named
    assert [c.survivor_id for c in proxy_fidelity(trials, [1], "max", Noise(tolerance=0.1)).close_cuts] == ["a"]


def test_proxy_history_reads_pretraining_reports_only() -> None:
    import pandas as pd

    frame = pd.DataFrame({"epoch": [1, 2, float("nan")], "val_knn_top1": [10.0, 20.0, 30.0],
                          "phase": ["pretrain", "pretrain", "linear"]})
    assert proxy_history(frame, "val_knn_top1") == {1: 10.0, 2: 20.0}
    assert proxy_history(None, "val_knn_top1") == {} and proxy_history(pd.DataFrame({"x": [1]}), "val_knn_top1") == {}


def _row(tid: str, objective: float | None, status: str = "finished") -> TrialRow:
    return TrialRow(tid, status, objective, None, 4, {"tasks.temperature": float(len(tid))})


def test_confirmation_points_seeds_and_mean_std() -> None:
    rows = [_row("a", 50.0), _row("bb", 60.0), _row("ccc", 55.0), _row("cut", None, "early_stopped")]
    top = top_rows(rows, "max", 2)
    assert [r.trial_id for r in top] == ["bb", "ccc"] and len(top_rows(rows, "max", 10)) == 3
    seeds = confirmation_seeds(0, 3)
    assert seeds == [1, 2, 3]  # never the search's own seed
    points = confirmation_points(top, seeds)
    assert len(points) == 6 and points[0] == {"tasks.temperature": 2.0, "seed": 1, "_confirm": 1,
                                              "_confirm_of": "bb", "_confirm_rank": 1}
    finals = {("bb", 1): 50.0, ("bb", 2): 52.0, ("bb", 3): 54.0, ("ccc", 1): 57.0, ("ccc", 2): 57.0}
    results = [(p, {OBJECTIVE: finals[(p["_confirm_of"], p["seed"])], FINAL: 1.0, "test_top1": 40.0}
                if (p["_confirm_of"], p["seed"]) in finals else None) for p in points]
    conf = summarise(top, results, "val_top1", "max")
    bb, ccc = conf.configs
    assert bb.objectives == [50.0, 52.0, 54.0] and bb.mean == pytest.approx(52.0) and bb.std == pytest.approx(2.0)
    assert ccc.seeds == [1, 2] and ccc.failed == 1 and ccc.std == 0.0
    best = conf.best()
    assert best is not None and best.trial_id == "ccc"  # the search's rank 2 wins on the mean over fresh seeds
    assert conf.table()[1][3] == "52.00 ± 2.00" and conf.metrics()["confirm_rank1_std"] == pytest.approx(2.0)
    assert conf.to_json()["best_trial_id"] == "ccc"
    with pytest.raises(ValueError, match="must be >= 1"):
        ConfirmSpec(0, 3)


def test_cli_checks_confirm_flags_before_starting_ray(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(SMOKE), "--confirm-seeds", "2"]) == 2
    assert "--confirm-seeds needs --confirm-top" in capsys.readouterr().err
    assert main(["tune", str(SMOKE), "--confirm-top", "0"]) == 2
    assert "--confirm-top and --confirm-seeds must be >= 1" in capsys.readouterr().err
