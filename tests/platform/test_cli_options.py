"""The CLI's shared vocabulary: ``--resume --name`` everywhere, study resources, one exit-code policy. No Ray."""

from __future__ import annotations

import io

import pytest

from ms2l_ray.cli.errors import INTERRUPTED, exit_code, report_error
from ms2l_ray.cli.execution import trial_resources
from ms2l_ray.cli.main import build_parser
from ms2l_ray.cli.options import resume_name
from ms2l_ray.config import ConfigError, check_preset, preset_config
from ms2l_ray.jobs.spec import Resources

RESUMED = [  # (argv, what, expected name)
    (["pretrain", "--resume", "old-run"], "run", "old-run"),  # the older pretrain spelling still works
    (["pretrain", "--resume", "--name", "old-run"], "run", "old-run"),
    (["pretrain", "--name", "old-run", "--resume"], "run", "old-run"),
    (["pretrain", "--resume", "old-run", "--name", "old-run"], "run", "old-run"),
    (["tune", "s.yaml", "--resume", "--name", "srch"], "search", "srch"),
    (["ablate", "g.yaml", "--resume", "--name", "abl"], "ablation", "abl"),
    (["pretrain", "--name", "fresh"], "run", None),
    (["tune", "s.yaml", "--name", "srch"], "search", None),
]


@pytest.mark.parametrize(("argv", "what", "name"), RESUMED, ids=[" ".join(a) for a, _, _ in RESUMED])
def test_every_command_takes_resume_with_name(argv: list[str], what: str, name: str | None) -> None:
    assert resume_name(build_parser().parse_args(argv), what) == name


REFUSED = [
    (["pretrain", "--resume"], "run", "--resume needs the --name the run was started with (printed at its start)"),
    (["ablate", "g.yaml", "--resume"], "ablation",
     "--resume needs the --name the ablation was started with (printed at its start)"),
    (["pretrain", "--resume", "a", "--name", "b"], "run", "--resume a and --name b: name the run to continue once"),
]


@pytest.mark.parametrize(("argv", "what", "text"), REFUSED, ids=[" ".join(a) for a, _, _ in REFUSED])
def test_resume_without_one_name_is_refused(argv: list[str], what: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        resume_name(build_parser().parse_args(argv), what)
    assert str(info.value) == text


def test_study_resources_keep_each_commands_cpu_default() -> None:
    parse = build_parser().parse_args
    assert trial_resources(parse(["tune", "s.yaml", "--workers", "2"])) == Resources(2, 1.0, 0.0)  # 1 per worker
    assert trial_resources(parse(["ablate", "g.yaml", "--workers", "2"])) == Resources(2, 0.5, 0.0)  # 1 per job
    assert trial_resources(parse(["ablate", "g.yaml", "--cpus-per-trial", "4", "--gpus-per-trial", "1",
                                  "--workers", "2"])) == Resources(2, 2.0, 0.5)
    assert parse(["pretrain"]).cpus_per_worker is None  # filled from the cluster (jobs.cluster)
    with pytest.raises(ValueError, match="^--workers must be >= 1, got 0$"):
        trial_resources(parse(["ablate", "g.yaml", "--workers", "0"]))


def test_report_is_its_own_command_module() -> None:
    args = build_parser().parse_args(["report", "some-run"])
    assert args.func.__module__ == "ms2l_ray.cli.report_cmds"
    assert (args.target, args.top_k, args.no_attach, args.tracking_uri) == ("some-run", 10, False, None)


def test_an_interrupted_search_exits_130_with_its_resume_hint() -> None:
    from ms2l_ray.studies.search.tuner import SearchInterrupted

    exc = SearchInterrupted("search s interrupted with 2 unfinished trials; continue it with --resume --name s")
    assert exit_code(exc) == INTERRUPTED == 130
    out = io.StringIO()
    assert report_error("ms2l tune", exc, stream=out) == 130
    assert out.getvalue() == ("ms2l tune: search s interrupted with 2 unfinished trials; continue it with "
                              "--resume --name s\n")
    out = io.StringIO()
    assert report_error("ms2l pretrain", KeyboardInterrupt(), stream=out) == 130
    assert out.getvalue() == "ms2l pretrain: interrupted\n"


@pytest.mark.parametrize(("value", "shown"), [("huge", "'huge'"), (["small"], "['small']"), (None, "None")])
def test_one_preset_check_for_every_source(value: object, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_preset(value, "grid.yaml: preset")
    assert str(info.value) == f"grid.yaml: preset: must be one of ['paper', 'small', 'smoke'], got {shown}"
    assert check_preset("smoke") == "smoke"
    assert preset_config("smoke").pretrain.epochs == 2 and preset_config("paper").pretrain.epochs == 60
