"""Search spaces as data: every shipped space loads, bad ones fail naming file and key, sampling respects conditions,
Optuna is told the right outcome, importance copes with too few trials. No Ray cluster needed."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from paths import SEARCH_SPACES

from ms2l_ray.cli.main import main
from ms2l_ray.config import ConfigError, to_dict
from ms2l_ray.jobs.spec import Resources
from ms2l_ray.studies.evaluation import Evaluation
from ms2l_ray.studies.search.importance import param_importance, write_importance
from ms2l_ray.studies.search.sampling import (
    FINAL,
    OBJECTIVE,
    SpaceSampler,
    make_sampler,
    make_scheduler,
    make_search_alg,
)
from ms2l_ray.studies.search.space import load_space, parse_space, with_overrides
from ms2l_ray.studies.search.trial import TrialSetup, base_with_knn
from ms2l_ray.studies.search.tuner import SearchRecord, default_max_concurrent

SHIPPED = sorted(SEARCH_SPACES.glob("*.yaml"))

VALID: dict[str, Any] = {
    "preset": "smoke",
    "config": {"pretrain": {"epochs": 4}},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 4},
    "parameters": {
        "pretrain.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
        "tasks.contrastive_weight": {"type": "categorical", "choices": [0.0, 1.0]},
        "tasks.temperature": {"type": "uniform", "low": 0.1, "high": 1.0,
                              "when": {"tasks.contrastive_weight": {"gt": 0}}},
        "tasks.jigsaw_segments": {"type": "int", "low": 2, "high": 4},
    },
}


def test_shipped_spaces_are_the_expected_ones() -> None:
    assert {p.stem for p in SHIPPED} >= {"ms2l_paper", "quick", "smoke"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_space_loads_and_validates(path: Path) -> None:
    space = load_space(path)
    base = space.base_config()
    assert space.max_t(base) <= base.pretrain.epochs
    assert space.metric.startswith("val_") and space.keys
    for point in space.points_to_evaluate:
        assert set(point) <= set(space.keys)
    # every declared condition refers to an earlier parameter, so define-by-run can evaluate it
    seen: list[str] = []
    for p in space.parameters:
        assert all(c.key in seen for c in p.when)
        seen.append(p.key)


def test_the_linear_probe_proxy_is_a_space_choice() -> None:
    raw = yaml.safe_load((SEARCH_SPACES / "smoke.yaml").read_text())
    space = parse_space({**raw, "proxy": "val_probe_top1"}, "probe.yaml", name="probe")
    assert space.proxy == "val_probe_top1" and _setup(space).proxy == "val_probe_top1"


def test_paper_space_switches_tasks_off_but_never_all_of_them() -> None:
    space = load_space(SEARCH_SPACES / "ms2l_paper.yaml")
    by_key = {p.key: p for p in space.parameters}
    for task in ("motion", "jigsaw", "contrastive"):
        assert 0.0 in by_key[f"tasks.{task}_weight"].choices
    assert (by_key["tasks.jigsaw_segments"].low, by_key["tasks.jigsaw_segments"].high) == (2, 5)
    assert {"tasks.temperature", "tasks.mask_ratio", "pretrain.lr"} <= set(by_key)
    setup = _setup(space)
    with pytest.raises(ConfigError, match="at least one task weight"):
        setup.trial_config({"tasks.motion_weight": 0.0, "tasks.jigsaw_weight": 0.0, "tasks.contrastive_weight": 0.0})


def _bad(mutate: Any) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    mutate(raw)
    return raw


def _param(key: str, spec: Any) -> Any:
    return lambda r: r["parameters"].__setitem__(key, spec)


INVALID = [
    ("unknown top-level key", lambda r: r.__setitem__("bogus", 1), "unknown keys ['bogus']"),
    ("unknown config path", _param("tasks.temprature", {"type": "uniform", "low": 0.1, "high": 1}),
     "parameters.tasks.temprature: unknown config key 'tasks.temprature'"),
    ("config section", _param("tasks", {"type": "uniform", "low": 0.1, "high": 1}), "is a config section"),
    ("bad distribution", _param("pretrain.lr", {"type": "normal", "low": 0, "high": 1}), "parameters.pretrain.lr.type"),
    ("low > high", _param("pretrain.lr", {"type": "uniform", "low": 0.1, "high": 0.01}),
     "parameters.pretrain.lr: low (0.1) must be < high (0.01)"),
    ("loguniform at 0", _param("pretrain.lr", {"type": "loguniform", "low": 0, "high": 0.1}),
     "parameters.pretrain.lr.low: must be > 0"),
    ("missing bound", _param("pretrain.lr", {"type": "uniform", "low": 0.1}), "parameters.pretrain.lr.high: required"),
    ("extra distribution key", _param("pretrain.lr", {"type": "uniform", "low": 0.1, "high": 1, "scale": 2}),
     "parameters.pretrain.lr: unknown keys ['scale']"),
    ("float distribution on an int field", _param("tasks.jigsaw_segments", {"type": "uniform", "low": 2, "high": 5}),
     "tasks.jigsaw_segments is an integer field"),
    ("int with float bounds", _param("tasks.jigsaw_segments", {"type": "int", "low": 2.5, "high": 5}),
     "parameters.tasks.jigsaw_segments.low: expected an integer"),
    ("step does not divide", _param("tasks.jigsaw_segments", {"type": "int", "low": 2, "high": 5, "step": 2}),
     "parameters.tasks.jigsaw_segments.step"),
    ("value the config rejects", _param("tasks.jigsaw_segments", {"type": "int", "low": 2, "high": 6}),
     "tasks.jigsaw_segments: must be in 2..5"),
    ("empty choices", _param("tasks.contrastive_weight", {"type": "categorical", "choices": []}),
     "parameters.tasks.contrastive_weight.choices: expected a non-empty list"),
    ("choice of the wrong type", _param("model.bidirectional", {"type": "categorical", "choices": [True, "yes"]}),
     "model.bidirectional: expected bool"),
    ("condition on a later parameter", lambda r: r["parameters"].__setitem__(
        "tasks.mask_ratio", {"type": "uniform", "low": 0.1, "high": 0.5, "when": {"tasks.jigsaw_segments": 3}})
     or r["parameters"].__setitem__("tasks.jigsaw_segments", r["parameters"].pop("tasks.jigsaw_segments")),
     "parameters.tasks.mask_ratio.when.tasks.jigsaw_segments: must name a parameter declared earlier"),
    ("bad condition operator", _param("tasks.mask_ratio", {"type": "uniform", "low": 0.1, "high": 0.5,
                                                           "when": {"pretrain.lr": {"bigger": 0}}}),
     "parameters.tasks.mask_ratio.when.pretrain.lr"),
    ("order comparison on strings", lambda r: r["parameters"].__setitem__("model.bidirectional", {
        "type": "categorical", "choices": [True, False], "when": {"tasks.contrastive_weight": {"gt": "a"}}}),
     "parameters.model.bidirectional.when.tasks.contrastive_weight.gt: expected a number"),
    ("not searchable", _param("seed", {"type": "int", "low": 0, "high": 3}), "parameters.seed: not searchable"),
    ("test metric as objective", lambda r: r.__setitem__("metric", "test_top1"), "never used for selection"),
    ("bad sampler", lambda r: r.__setitem__("sampler", {"type": "cmaes"}), "sampler.type"),
    ("bad reduction factor", lambda r: r["scheduler"].__setitem__("reduction_factor", 1),
     "scheduler.reduction_factor: must be > 1"),
    ("max_t beyond the epochs", lambda r: r["scheduler"].__setitem__("max_t", 10), "scheduler.max_t"),
    ("bad fixed delta", lambda r: r.__setitem__("config", {"tasks": {"temprature": 0.5}}),
     "tasks.temprature: unknown key"),
    ("from-scratch evaluation", lambda r: r.__setitem__("evaluation", {"strategy": "supervised"}),
     "trains from scratch"),
    ("unknown point key", lambda r: r.__setitem__("points_to_evaluate", [{"pretrain.learning_rate": 0.1}]),
     "points_to_evaluate[0]: unknown keys ['pretrain.learning_rate']"),
    ("no parameters", lambda r: r.__setitem__("parameters", {}), "at least one parameter"),
    ("unknown scheduler", lambda r: r["scheduler"].__setitem__("type", "pbt"), "scheduler.type: must be one of"),
    ("bohb sampler without its scheduler", lambda r: r.__setitem__("sampler", {"type": "bohb"}),
     "sampler.type: 'bohb'"),
    ("brackets outside hyperband", lambda r: r["scheduler"].__setitem__("brackets", 2), "scheduler.brackets"),
    ("too many hyperband brackets", lambda r: r.__setitem__("scheduler", {"type": "hyperband", "max_t": 4,
                                                                          "brackets": 4}),
     "scheduler.brackets: at most 3 brackets"),
    ("grid over a continuous parameter", lambda r: r.__setitem__("sampler", {"type": "grid"}),
     "parameters.pretrain.lr.type: the grid sampler needs finite values"),
    ("grid over a conditional parameter", lambda r: r.__setitem__("sampler", {"type": "grid"}) or r.__setitem__(
        "parameters", {"tasks.contrastive_weight": {"type": "categorical", "choices": [0.0, 1.0]},
                       "tasks.temperature": {"type": "categorical", "choices": [0.2, 0.5],
                                             "when": {"tasks.contrastive_weight": {"gt": 0}}}}),
     "parameters.tasks.temperature.when: the grid sampler"),
    ("grid with more samples than points", lambda r: r.update(sampler={"type": "grid"}, num_samples=9, parameters={
        "tasks.jigsaw_segments": {"type": "int", "low": 2, "high": 4}}), "num_samples: the grid has 3 points, got 9"),
    ("unknown fidelity key", lambda r: r.__setitem__("fidelity", {"min_roh": 0.5}), "fidelity: unknown keys"),
    ("bad min_rho", lambda r: r.__setitem__("fidelity", {"min_rho": 2}), "fidelity.min_rho: must be in [-1, 1]"),
    ("probe_every off the rungs", lambda r: r.update(fidelity={"probe_every": 3}, scheduler={
        "type": "asha", "grace_period": 2, "max_t": 4}), "fidelity.probe_every: must divide"),
    ("unknown proxy", lambda r: r.__setitem__("proxy", "val_linear_top1"),
     "proxy: must be one of ['val_knn_top1', 'val_knn_top5', 'val_probe_top1', 'val_probe_top5']"),
]
if importlib.util.find_spec("hpbandster") is None:
    INVALID.append(("bohb without its package",
                    lambda r: r.update(sampler={"type": "bohb"}, scheduler={"type": "bohb"}),
                    "scheduler.type: 'bohb' needs the optional packages"))


@pytest.mark.parametrize(("what", "mutate", "message"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_spaces_fail_naming_file_and_key(tmp_path: Path, what: str, mutate: Any, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_bad(mutate), sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_space(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_cli_reports_a_bad_space_cleanly_before_starting_ray(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_bad(_param("tasks.temprature", {"type": "uniform", "low": 0.1, "high": 1}))))
    assert main(["tune", str(path), "--storage-path", str(tmp_path / "ray")]) == 2
    assert "tasks.temprature" in capsys.readouterr().err
    assert not (tmp_path / "ray").exists()


def test_set_may_not_fix_a_searched_parameter() -> None:
    space = parse_space(copy.deepcopy(VALID), "inline.yaml")
    with pytest.raises(ConfigError, match=r"\['pretrain.lr'\] are searched parameters"):
        space.base_config({"pretrain": {"lr": 0.1}})
    assert space.base_config({"pretrain": {"weight_decay": 0.1}}).pretrain.weight_decay == 0.1


def test_overrides_are_validated() -> None:
    space = parse_space(copy.deepcopy(VALID), "inline.yaml")
    assert with_overrides(space, num_samples=3, seed=7).sampler.seed == 7
    with pytest.raises(ConfigError, match="--num-samples"):
        with_overrides(space, num_samples=0)


def test_define_by_run_samples_conditional_parameters_only_when_their_condition_holds() -> None:
    space = parse_space(copy.deepcopy(VALID), "inline.yaml")
    sampler = SpaceSampler(space.parameters)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        sampler(trial)
        study.tell(trial, 0.0)
    with_temp = [t.params for t in study.trials if "tasks.temperature" in t.params]
    without = [t.params for t in study.trials if "tasks.temperature" not in t.params]
    assert with_temp and without
    assert all(p["tasks.contrastive_weight"] > 0 for p in with_temp)
    assert all(p["tasks.contrastive_weight"] == 0 for p in without)
    assert {t.params["tasks.jigsaw_segments"] for t in study.trials} <= {2, 3, 4}
    assert all(1e-4 <= t.params["pretrain.lr"] <= 1e-2 for t in study.trials)


def test_optuna_learns_only_from_final_objectives(tmp_path: Path) -> None:
    """A trial without a FINAL report (cut by ASHA on the proxy) is PRUNED, never COMPLETE with a KNN value."""
    space = parse_space(copy.deepcopy(VALID), "inline.yaml")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = make_search_alg(space, "s", url)
    for tid in ("a", "b"):
        assert search.suggest(tid) is not None
    search.on_trial_result("a", {OBJECTIVE: 30.0, "training_iteration": 1})
    search.on_trial_result("b", {OBJECTIVE: 5.0, "training_iteration": 1})
    search.on_trial_complete("a", {OBJECTIVE: 42.0, FINAL: 1.0})
    search.on_trial_complete("b", {OBJECTIVE: 5.0, "epoch": 1})
    trials = {t.number: t for t in optuna.load_study(study_name="s", storage=url).trials}
    assert trials[0].state == optuna.trial.TrialState.COMPLETE and trials[0].value == 42.0
    assert trials[1].state == optuna.trial.TrialState.PRUNED and trials[1].intermediate_values == {1: 5.0}


def test_a_trial_the_study_finished_before_the_driver_died_reports_nothing_more(tmp_path: Path) -> None:
    """The killed-search resume seen in the suite: Optuna's database knew the trial had ended, Tune's saved state
    did not, so the resumed trial reported its stored result again. That ended the search with a TuneError
    (``UpdateFinishedTrialError``); now the report is dropped and the study keeps the dead driver's value."""
    space = parse_space(copy.deepcopy(VALID), "inline.yaml")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = make_search_alg(space, "s", url)  # the driver that dies
    assert first.suggest("a") is not None
    first.on_trial_result("a", {OBJECTIVE: 30.0, "training_iteration": 1})
    first.on_trial_complete("a", {OBJECTIVE: 42.0, FINAL: 1.0})
    resumed = make_search_alg(space, "s", url)  # the searcher as Tune's last save had it: trial "a" still open
    [stored] = optuna.load_study(study_name="s", storage=url).trials
    resumed._ot_trials["a"] = optuna.trial.Trial(resumed._ot_study, stored._trial_id)
    # Tune's restored trial counts on from its saved iterations: a new step, which a finished trial refuses
    resumed.on_trial_result("a", {OBJECTIVE: 42.0, FINAL: 1.0, "training_iteration": 2})  # raised before
    resumed.on_trial_complete("a", {OBJECTIVE: 42.0, FINAL: 1.0})
    [trial] = optuna.load_study(study_name="s", storage=url).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 42.0
    assert trial.intermediate_values == {1: 30.0}


def test_importance_degenerate_and_normal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert "no Optuna study" in (param_importance(url, "missing").reason or "")
    study = optuna.create_study(study_name="imp", storage=url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 0, 1), n_trials=1)
    one = param_importance(url, "imp")
    assert one.values == {} and "found 1" in (one.reason or "")
    files = write_importance(one, tmp_path)
    assert {f.name for f in files} == {"importance.csv", "importance.md"}
    assert "unavailable" in (tmp_path / "importance.md").read_text()
    flat = optuna.create_study(study_name="flat", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    flat.optimize(lambda t: t.suggest_float("lr", 0, 1) * 0 + 5.0, n_trials=3)
    assert "same objective (5)" in (param_importance(url, "flat").reason or "")

    def objective(t: optuna.Trial) -> float:
        lr, noise = t.suggest_float("lr", 0, 1), t.suggest_float("noise", 0, 1)
        return 10 * lr + 0.01 * noise

    study.optimize(objective, n_trials=12)
    imp = param_importance(url, "imp")
    assert set(imp.values) >= {"lr", "noise"} and imp.values["lr"] > imp.values["noise"]
    files = write_importance(imp, tmp_path)
    assert (tmp_path / "importance.png").stat().st_size > 1000
    assert "| lr |" in (tmp_path / "importance.md").read_text()


def test_max_concurrent_packs_trials_by_their_workers_resources() -> None:
    assert default_max_concurrent({"CPU": 2.0}, Resources(1, 1.0), 8) == 2
    assert default_max_concurrent({"CPU": 16.0}, Resources(2, 2.0), 8) == 4
    assert default_max_concurrent({"CPU": 16.0}, Resources(2, 2.0), 3) == 3
    assert default_max_concurrent({"CPU": 16.0, "GPU": 4.0}, Resources(2, 1.0, 1.0), 8) == 2
    with pytest.raises(ValueError, match="one trial needs"):
        default_max_concurrent({"CPU": 2.0}, Resources(4, 1.0), 8)


def _setup(space: Any) -> TrialSetup:
    return TrialSetup(search="t", base=base_with_knn(space.base_config(), space.knn_every()),
                      evaluation=Evaluation("linear"), metric=space.metric, mode=space.mode, proxy=space.proxy,
                      out_root="/tmp/x", train_storage="/tmp/y", resources=Resources(1, 1.0, 0.0))


def test_trials_probe_knn_at_every_rung() -> None:
    space = load_space(SEARCH_SPACES / "smoke.yaml")
    cfg = _setup(space).trial_config({"pretrain.lr": 0.003})
    assert cfg.knn_every == space.scheduler.grace_period and cfg.pretrain.lr == 0.003
    assert to_dict(cfg)["data"]["builtin_sequences"] == 200


def test_search_record_keeps_no_credentials_and_asks_for_them_on_resume() -> None:
    space = load_space(SEARCH_SPACES / "smoke.yaml")
    setup = dataclasses.replace(_setup(space), tracking_uri="postgresql://user:secret@db/mlflow", parent_run_id="p")
    record = SearchRecord(name="s", space_raw=space.raw, space_source=space.source, overrides={}, extra={},
                          setup=setup.to_record(), max_concurrent=1, study_url="postgresql://optuna:pw9@db/optuna",
                          created="now")
    text = record.to_json()
    assert "secret" not in text and "postgresql://***@db/mlflow" in text
    assert "pw9" not in text and "postgresql://***@db/optuna" in text  # --study-storage's credentials too
    again = SearchRecord(**json.loads(text))
    assert again.space().keys == space.keys
    with pytest.raises(ConfigError, match="credentials not recorded"):
        again.trial_setup()
    with pytest.raises(ConfigError, match="pass that --study-storage with its credentials"):
        again.study()
    assert again.study("postgresql://optuna:pw9@db/optuna") == "postgresql://optuna:pw9@db/optuna"
    restored = again.trial_setup("postgresql://user:secret@db/mlflow")
    assert restored.tracking_uri == "postgresql://user:secret@db/mlflow"
    assert restored == setup  # the record rebuilds the same validated Config, Evaluation and Resources
    assert type(restored.base).__name__ == "Config" and restored.base.knn_every == space.knn_every()
    with pytest.raises(ConfigError):
        again.trial_setup("postgresql://user:secret@elsewhere/mlflow")


GRID: dict[str, Any] = {
    "preset": "smoke", "config": {"pretrain": {"epochs": 4}}, "sampler": {"type": "grid", "seed": 3},
    "scheduler": {"type": "none"}, "fidelity": {"probe_every": 1},
    "parameters": {"tasks.jigsaw_weight": {"type": "categorical", "choices": [0.0, 1.0]},
                   "tasks.temperature": {"type": "categorical", "choices": [0.1, 0.5, 1.0]},
                   "tasks.jigsaw_segments": {"type": "int", "low": 2, "high": 4, "step": 2}},
}


def test_grid_sampler_visits_every_point_once_and_defaults_to_the_grid_size() -> None:
    space = parse_space(copy.deepcopy(GRID), "grid.yaml")
    assert space.grid_size() == 12 and space.num_samples == 12
    study = optuna.create_study(sampler=make_sampler(space.sampler, space.parameters))
    sampler = SpaceSampler(space.parameters)
    for _ in range(space.num_samples):
        trial = study.ask()
        sampler(trial)
        study.tell(trial, 0.0)
    seen = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(seen) == 12 and {t.params["tasks.jigsaw_segments"] for t in study.trials} == {2, 4}
    # without early stopping the proxy is probed every epoch (fidelity.probe_every) and measured at each
    assert space.knn_every() == 1 and space.rung_epochs(space.base_config()) == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="num_samples: the grid has 12 points"):
        with_overrides(space, num_samples=13)
    assert with_overrides(space, num_samples=5).num_samples == 5


def test_schedulers_are_chosen_by_the_space() -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    raw = copy.deepcopy(VALID)
    asha = parse_space(raw, "s.yaml")
    assert asha.rung_epochs(asha.base_config()) == [1, 2, 4] and asha.knn_every() == 1
    assert isinstance(make_scheduler(asha, 4), ASHAScheduler) and len(make_scheduler(asha, 4)._brackets) == 1
    raw["scheduler"] = {"type": "hyperband", "grace_period": 1, "reduction_factor": 2, "max_t": 4}
    hb = parse_space(raw, "s.yaml")
    assert len(make_scheduler(hb, 4)._brackets) == 3  # rungs 1, 2, 4: three brackets fit
    raw["scheduler"]["brackets"] = 2
    assert len(make_scheduler(parse_space(raw, "s.yaml"), 4)._brackets) == 2
    raw["scheduler"] = {"type": "none"}
    none = parse_space(raw, "s.yaml")
    assert isinstance(make_scheduler(none, 4), FIFOScheduler)
    assert none.knn_every() == 0 and none.rung_epochs(none.base_config()) == [4]  # the last epoch's probe only
    raw["scheduler"] = {"type": "asha", "grace_period": 1, "reduction_factor": 3, "max_t": 4}
    assert parse_space(raw, "s.yaml").rung_epochs(parse_space(raw, "s.yaml").base_config()) == [1, 3]
