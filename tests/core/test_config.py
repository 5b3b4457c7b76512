"""Config: presets, YAML deltas, --set overrides and every validation error path (key named)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

from ms2l_ray.config import (
    PRESETS,
    Config,
    ConfigError,
    apply_delta,
    config_hash,
    dump_yaml,
    flatten,
    from_dict,
    load_config,
    parse_override,
    to_dict,
    unflatten,
)


def test_paper_preset_is_the_reference_setting() -> None:
    cfg = load_config("paper")
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.model.bidirectional) == (600, 2, True)
    assert (cfg.pretrain.epochs, cfg.pretrain.batch_size, cfg.pretrain.lr) == (60, 256, 1e-3)
    assert (cfg.pretrain.step_size, cfg.pretrain.gamma, cfg.pretrain.grad_clip) == (30, 0.1, 10.0)
    assert (cfg.tasks.mask_ratio, cfg.tasks.jigsaw_segments, cfg.tasks.temperature) == (0.3, 3, 0.9)
    assert (cfg.data.max_frames, cfg.data.val_fraction) == (300, 0.05)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_loads_and_round_trips(preset: str, tmp_path: Path) -> None:
    cfg = load_config(preset)
    assert from_dict(to_dict(cfg)) == cfg
    dump_yaml(cfg, tmp_path / "c.yaml")
    assert load_config("paper", tmp_path / "c.yaml") == cfg


def test_yaml_delta_and_overrides_apply_in_order(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("tasks:\n  temperature: 0.5\n  jigsaw_segments: 4\n")
    cfg = load_config("smoke", tmp_path / "d.yaml", ["tasks.temperature=0.2", "pretrain.lr=3e-4"])
    assert cfg.tasks.temperature == 0.2 and cfg.tasks.jigsaw_segments == 4 and cfg.pretrain.lr == 3e-4
    assert cfg.model.hidden_size == PRESETS["smoke"]["model"]["hidden_size"]


def test_overrides_are_validated_together() -> None:
    cfg = load_config("smoke", overrides=["evaluation.strategy=semi", "evaluation.label_fraction=0.1"])
    assert cfg.evaluation.strategy == "semi"


def test_int_accepted_for_float_and_stored_as_float() -> None:
    cfg = apply_delta(Config(), {"tasks": {"temperature": 1}})
    assert isinstance(cfg.tasks.temperature, float)


@pytest.mark.parametrize("delta, needle", [
    ({"tasks": {"temprature": 1.0}}, "tasks.temprature: unknown key"),
    ({"nope": 1}, "nope: unknown key"),
    ({"model": {"hidden_size": "big"}}, "model.hidden_size: expected int"),
    ({"model": {"bidirectional": 1}}, "model.bidirectional: expected bool"),
    ({"tasks": 3}, "tasks: expected a mapping"),
    ({"tasks": {"temperature": 0.0}}, "tasks.temperature: must be in [1e-4, 1e4], got 0.0"),
    ({"tasks": {"temperature": -1.0}}, "tasks.temperature: must be in [1e-4, 1e4], got -1.0"),
    ({"tasks": {"jigsaw_segments": 1}}, "tasks.jigsaw_segments: must be in 2..5"),
    ({"tasks": {"jigsaw_segments": 6}}, "tasks.jigsaw_segments: must be in 2..5"),
    ({"tasks": {"jigsaw_short": "drop"}}, "tasks.jigsaw_short: must be one of"),
    ({"tasks": {"motion_weight": -0.1}}, "tasks.motion_weight: must be in [0, 1e4], got -0.1"),
    ({"tasks": {"motion_weight": 0, "jigsaw_weight": 0, "contrastive_weight": 0}}, "at least one task weight"),
    ({"tasks": {"mask_ratio": 1.0}}, "tasks.mask_ratio"),
    ({"model": {"hidden_size": 601}}, "model.hidden_size"),
    ({"pretrain": {"batch_size": 1}}, "pretrain.batch_size"),
    ({"evaluation": {"optim": {"lr": 0}}}, "evaluation.optim.lr: must be in (0, 10], got 0.0"),
    ({"evaluation": {"strategy": "magic"}}, "evaluation.strategy: must be one of"),
    ({"evaluation": {"strategy": "semi"}}, "evaluation.label_fraction: must be < 1"),
    ({"evaluation": {"label_fraction": 0.0}}, "evaluation.label_fraction: must be in (0, 1]"),
    ({"data": {"val_fraction": 1.0}}, "data.val_fraction"),
    ({"device": "tpu"}, "device: must be"),
])
def test_bad_values_name_the_key(delta: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        apply_delta(Config(), delta)
    assert needle in str(err.value)


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        apply_delta(Config(), {"tasks": {"a": 1, "b": 2}, "model": {"c": 3}})
    text = str(err.value)
    assert "tasks.a" in text and "tasks.b" in text and "model.c" in text


def test_bad_yaml_file_and_unknown_preset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("smoke", bad)
    with pytest.raises(ConfigError, match=r"^preset: must be one of \['paper', 'small', 'smoke'\], got 'huge'$"):
        load_config("huge")
    (tmp_path / "k.yaml").write_text("pretrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"k\.yaml.*\n.*pretrain\.epoch: unknown key"):
        load_config("smoke", tmp_path / "k.yaml")


def test_parse_override_forms() -> None:
    assert parse_override("tasks.temperature=0.5") == {"tasks": {"temperature": 0.5}}
    assert parse_override("data.dataset=/x/y.arrow") == {"data": {"dataset": "/x/y.arrow"}}
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(ConfigError):
            parse_override(bad)


def test_flatten_unflatten_and_hash() -> None:
    d = to_dict(Config())
    assert unflatten(flatten(d)) == d
    assert "evaluation.optim.lr" in flatten(d)
    assert config_hash(Config()) == config_hash(Config())
    assert config_hash(Config()) != config_hash(apply_delta(Config(), {"seed": 1}))


HASHED = {"default": ([], "paper"), "smoke+grid": (["evaluation.lr_grid=[0.1,0.01]", "seed=3"], "smoke"),
          "small+tasks": (["tasks.jigsaw_weight=0", "data.dataset=/x/y.arrow"], "small")}


def test_config_hash_is_the_same_in_another_process() -> None:
    """``--resume`` finds a run by its config hash, computed by an earlier process: the hash must not depend on
    anything process-local (str hash randomisation, dict or set order), so a fresh interpreter with another
    ``PYTHONHASHSEED`` must compute the very same values."""
    here = {k: config_hash(load_config(preset, overrides=o)) for k, (o, preset) in HASHED.items()}
    code = ("import json, sys; from ms2l_ray.config import config_hash, load_config; "
            "print(json.dumps({k: config_hash(load_config(p, overrides=o)) for k, (o, p) in "
            "json.loads(sys.argv[1]).items()}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(HASHED)], capture_output=True, text=True,
                          env=env, check=True, cwd=REPO)
    assert json.loads(done.stdout) == here
    assert len(set(here.values())) == 3 and here["default"] == config_hash(Config())


def test_compose_applies_file_then_layers_then_set_and_names_them(tmp_path: Path) -> None:
    """The one composition path (issue 11): later layers win, ``--set`` last; errors name every layer."""
    from ms2l_ray.config import compose

    f = tmp_path / "c.yaml"
    f.write_text("tasks: {temperature: 0.5}\nseed: 3\n")
    cfg = compose("smoke", f, [("cell", {"tasks": {"temperature": 0.7}, "seed": 4}), ("empty", None),
                               ("seed", {"seed": 5})], ["tasks.temperature=0.8"])
    assert (cfg.tasks.temperature, cfg.seed) == (0.8, 5)
    assert compose("smoke", f).tasks.temperature == 0.5
    with pytest.raises(ConfigError) as err:
        compose("smoke", None, [("grid.yaml: config", {"seed": 1}), ("cell 'x'", {"tasks": {"temperature": -1}})],
                ["seed=2"])
    assert str(err.value).startswith("invalid overrides (grid.yaml: config, cell 'x', seed=2):\n  tasks.temperature")
    f.write_text("tasks: {temperature: -1}\n")
    with pytest.raises(ConfigError, match=f"^invalid config file {f}:"):
        compose("smoke", f, [("cell", {"tasks": {"temperature": 0.7}})])
