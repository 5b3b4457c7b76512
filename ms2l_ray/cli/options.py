"""The options several ``ms2l`` commands share, spelled and defaulted in one place.

Scripts drive these spellings (issue: scriptable CLI), so they are kept stable: ``--preset``, ``--config``,
``--set key=value``, ``--seed``, ``--dataset``, ``--json``, ``--out``, ``--name`` / ``--resume``, and the
resource and tracking options of the job commands.

Resource defaults differ by command on purpose, and are named here side by side:

* a single job (``pretrain``, ``evaluate``, ``run``, ``rerun``) takes ``--cpus-per-worker``, default the
  largest node's CPUs / ``--workers`` (:data:`JOB_CPUS_PER_WORKER`): one job should use the machine;
* a search trial (``tune``) takes ``--cpus-per-trial``, default one CPU per worker
  (:data:`TUNE_CPUS_PER_TRIAL`): trials run side by side;
* an ablation cell-seed (``ablate``) takes ``--cpus-per-trial``, default 1 CPU for the whole job, split over
  its workers (:data:`ABLATE_CPUS_PER_TRIAL`).

The last two differ only when ``--workers`` > 1; they are kept as they were so that a script's concurrency
does not change under it.

``--resume``: every command that continues an interrupted run takes ``--resume --name NAME``;
``ms2l pretrain`` also keeps its older ``--resume NAME`` spelling (:func:`resume_name`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ms2l_ray.config import PRESETS, ConfigError
from ms2l_ray.names import check_name

DEFAULT_PRESET = "small"
DEFAULT_WORKERS = 1
DEFAULT_MAX_FAILURES = 2
DEFAULT_EXPERIMENT = "ms2l"
JOB_CPUS_PER_WORKER: float | None = None  # None: jobs.cluster.node_cpus_per_worker(--workers)
TUNE_CPUS_PER_TRIAL: float | None = None  # None: 1 CPU per worker
ABLATE_CPUS_PER_TRIAL = 1.0  # per cell-seed job, split over --workers


def add_preset(p: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """``--preset`` limited to the known presets (``default`` None: the file's own preset)."""
    p.add_argument("--preset", default=default, choices=sorted(PRESETS), help=help)


def add_set(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_seed(p: argparse.ArgumentParser, help: str = "experiment seed (same as --set seed=N)") -> None:
    """``--seed N``; None leaves the composed config's seed."""
    p.add_argument("--seed", type=int, default=None, help=help)


def add_dataset(p: argparse.ArgumentParser) -> None:
    """``--dataset``: ``builtin`` or a store path (made absolute by :func:`ms2l_ray.cli.main.absolute_args`)."""
    p.add_argument("--dataset", default=None, help="'builtin' or an Arrow store from `ms2l data prepare`")


def add_json(p: argparse.ArgumentParser, help: str = "write the final metrics to this file") -> None:
    """``--json FILE``, in ``args.json_out``: the command's result for scripts."""
    p.add_argument("--json", dest="json_out", type=Path, default=None, help=help)


def add_out(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--out DIR``: where the command writes its local outputs."""
    p.add_argument("--out", type=Path, default=None, help=help)


def add_config_options(p: argparse.ArgumentParser, default_preset: str = DEFAULT_PRESET) -> None:
    """The config options of a single job: preset, file, ``--set``, seed, dataset, device, ``--json``."""
    add_preset(p, default_preset, "named preset (default: %(default)s)")
    p.add_argument("--config", type=Path, default=None, help="YAML file with config deltas on top of the preset")
    add_set(p, "override any config field, e.g. --set tasks.temperature=0.5 (repeatable)")
    add_seed(p)
    add_dataset(p)
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 … (same as --set device=...)")
    add_json(p)


def add_study_config_options(p: argparse.ArgumentParser, what: str, set_help: str,
                             seed_help: str | None = "experiment seed (same as --set seed=N)") -> None:
    """Config options of a command that reads its config from a file (``run``, ``tune``, ``ablate``).

    Args:
        p: the command's parser.
        what: the file kind, for the help text (``"experiment file"``, ``"space"``, ``"grid"``).
        set_help: what ``--set`` applies to in this command.
        seed_help: what ``--seed`` seeds in this command; None: no ``--seed`` (a grid lists its seeds).
    """
    add_preset(p, None, f"override the {what}'s preset")
    add_dataset(p)
    add_set(p, set_help)
    if seed_help is not None:
        add_seed(p, seed_help)


def add_job_resource_options(p: argparse.ArgumentParser) -> None:
    """Workers and per-worker resources of a single job (see the module docstring for the CPU default)."""
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="Ray Train workers (DDP) per job")
    p.add_argument("--cpus-per-worker", type=float, default=JOB_CPUS_PER_WORKER,
                   help="CPUs (= torch threads) per worker; default: the largest node's CPUs / --workers")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="> 0 trains on GPUs (NCCL)")
    add_max_failures(p)


def add_trial_resource_options(p: argparse.ArgumentParser, job: str, cpus_default: float | None,
                               cpus_help: str) -> None:
    """Workers and per-trial totals of a study's jobs (``tune`` trials, ``ablate`` cell-seeds).

    Args:
        p: the study command's parser.
        job: what one job is, for the help texts (``"trial"``, ``"cell-seed job"``).
        cpus_default: :data:`TUNE_CPUS_PER_TRIAL` or :data:`ABLATE_CPUS_PER_TRIAL`.
        cpus_help: the ``--cpus-per-trial`` help, which states the default.
    """
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"Ray Train workers (DDP) per {job}")
    p.add_argument("--cpus-per-trial", type=float, default=cpus_default, help=cpus_help)
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help=f"GPUs per {job}, split over --workers (> 0 trains on GPUs)")
    add_max_failures(p)


def add_max_failures(p: argparse.ArgumentParser) -> None:
    """``--max-failures``: worker failures each job recovers from (Ray Train's ``FailureConfig``)."""
    p.add_argument("--max-failures", type=int, default=DEFAULT_MAX_FAILURES,
                   help="worker failures a job recovers from")


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    """``--tracking-uri``: the MLflow store (default ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``)."""
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")


def add_execution_options(p: argparse.ArgumentParser, engines: bool = True, workers: bool = True) -> None:
    """Where jobs run and where runs are recorded.

    Args:
        p: the command's parser.
        engines: add ``--engine ray|local`` (single-job commands).
        workers: add the single-job resource options (:func:`add_job_resource_options`); studies add
            :func:`add_trial_resource_options` instead.
    """
    if engines:
        p.add_argument("--engine", choices=("ray", "local"), default="ray",
                       help="ray: a Ray Train TorchTrainer (default); local: the plain loop in this process, untracked")
    if workers:
        add_job_resource_options(p)
    p.add_argument("--storage-path", default=None, help="Ray storage for checkpoints (default ./ray_results)")
    add_tracking_options(p)
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    p.add_argument("--no-tracking", action="store_true", help="do not record runs in MLflow")
    p.add_argument("--address", default=None, help="Ray cluster address (default $RAY_ADDRESS, else a local instance)")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's and MLflow's own messages here (default: in OUT/ms2l.log, path printed once)")


def add_name_and_resume(p: argparse.ArgumentParser, *, name_help: str, resume_help: str,
                        legacy_value: bool = False) -> None:
    """``--name NAME`` and ``--resume``, read back by :func:`resume_name`.

    Args:
        p: the command's parser.
        name_help: what the name keys in this command.
        resume_help: what ``--resume`` continues.
        legacy_value: also accept ``--resume NAME`` (``ms2l pretrain``'s older spelling).
    """
    p.add_argument("--name", default=None, help=name_help)
    if legacy_value:
        p.add_argument("--resume", nargs="?", const=True, default=None, metavar="NAME",
                       help=resume_help + " (also: --resume NAME)")
    else:
        p.add_argument("--resume", action="store_true", help=resume_help)


def resume_name(args: argparse.Namespace, what: str) -> str | None:
    """The checked name of the run to continue, None when ``--resume`` is not given.

    Why one function: ``--resume --name NAME`` means the same in every command, and ``pretrain``'s older
    ``--resume NAME`` reads the same way; a name given both ways must agree.

    Args:
        args: the parsed options of a command set up by :func:`add_name_and_resume`.
        what: the run kind, for the message (``"run"``, ``"search"``, ``"ablation"``).

    Raises:
        ConfigError: ``--resume`` without a name, two different names, or a name that is not a safe path
            component.
    """
    resume = getattr(args, "resume", None)
    if not resume:
        return None
    if isinstance(resume, str):
        if args.name is not None and args.name != resume:
            raise ConfigError(f"--resume {resume} and --name {args.name}: name the {what} to continue once")
        return check_name("--resume", resume)
    if not args.name:
        raise ConfigError(f"--resume needs the --name the {what} was started with (printed at its start)")
    return check_name("--name", args.name)
