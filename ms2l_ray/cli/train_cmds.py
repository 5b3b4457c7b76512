"""``ms2l pretrain``, ``ms2l evaluate``, ``ms2l run`` and ``ms2l rerun``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ms2l_ray.cli.common import absolute_dataset, resolve_config, write_json
from ms2l_ray.cli.execution import execution_from_args, start_ray, storage_from_args, tracking_from_args
from ms2l_ray.cli.options import (
    add_config_options,
    add_execution_options,
    add_json,
    add_name_and_resume,
    add_out,
    add_study_config_options,
    resume_name,
)
from ms2l_ray.config import STRATEGIES, Config, ConfigError, from_dict
from ms2l_ray.names import check_name, is_uri, unique_name
from ms2l_ray.tracking.tags import ENCODER_SOURCE, EVAL_METRICS


def _print_eval(label: str, metrics: dict[str, Any]) -> None:
    print(f"[{label}] " + " ".join(f"{k}={metrics[k]:.2f}" for k in EVAL_METRICS if k in metrics))


def check_encoder_out(out: Path | None, force: bool) -> None:
    """Refuse an ``--out`` that already holds an encoder (unless ``--force``) or that is a file.

    Why: pretraining minutes or hours into a folder that holds another run's ``encoder.pt`` would replace it
    without a word; checked before any compute (and before Ray starts).
    """
    from ms2l_ray.model.artifact import ENCODER_FILE, holds_encoder

    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a directory (the encoder is written as {out}/{ENCODER_FILE})")
    held = holds_encoder(out)
    if held and not force:
        raise ConfigError(f"--out {out}: already holds {held}; pass --force to overwrite it, or another --out")


def check_new_run_name(storage: str | None, name: str, force: bool) -> bool:
    """Refuse a run name already used under the Ray storage path unless ``--force``; True when it must be cleared.

    Why: Ray Train restores the latest checkpoint of ``<storage>/<name>``, so a second ``ms2l pretrain --name X``
    would quietly continue the first one's training (with this run's config and output folder). Continuing
    is ``--resume X``; ``--force`` discards the old run's state before the new one starts. Checked before Ray.
    """
    from ms2l_ray.jobs.driver import default_storage_path
    from ms2l_ray.jobs.records import run_folder

    found = run_folder(storage or default_storage_path(), name)
    if found is None:
        return False
    if not force:
        raise ConfigError(f"--name {name}: a run of that name already exists ({found}) and Ray Train would continue "
                          f"from its checkpoint; pass --resume {name} to continue it, --force to discard it and "
                          f"start again, or another --name")
    return True


def discard_run(storage: str | None, name: str) -> None:
    """Delete the Ray storage folder of run ``name`` (``--force``), so Ray Train starts it afresh."""
    from ms2l_ray.jobs.driver import default_storage_path
    from ms2l_ray.jobs.records import remove_run_folder

    remove_run_folder(storage or default_storage_path(), name)


def _pretrain(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.name is not None:
        check_name("--name", args.name)
    if args.engine == "local":
        from ms2l_ray.train.job import run_pretrain

        cfg = resolve_config(args)
        check_encoder_out(args.out, args.force)
        summary: dict[str, Any] = dict(run_pretrain(cfg, args.out).final)
    else:
        from ms2l_ray.jobs.tracked import read_job_record, tracked_pretrain

        existing, clear = None, False
        resumed = resume_name(args, "run")
        if resumed is not None:
            record = read_job_record(storage_from_args(args), resumed)
            cfg, name, existing = from_dict(record["config"]), resumed, record.get("run_id")
            out = Path(record["out_dir"])
        else:
            cfg, name, out = resolve_config(args), args.name or unique_name("pretrain"), args.out
            if out is None:
                raise ConfigError("--out is required (unless --resume)")
            check_encoder_out(out, args.force)
            clear = check_new_run_name(storage_from_args(args), name, args.force)
        tracking = tracking_from_args(args)
        if clear:  # after every check: --force discards the old run only when the new one can start
            discard_run(storage_from_args(args), name)
        start_ray(args, out)
        print(f"[pretrain] run name {name} (resume with --resume {name})")
        outcome, run = tracked_pretrain(cfg, name=name, out_dir=out, tracking=tracking,
                                        execution=execution_from_args(args),
                                        existing_run_id=existing)
        summary = dict(outcome.metrics)
        if run is not None:
            summary["mlflow_run_id"] = run.run_id
        args.out = out
    summary["wall_time_s"] = time.perf_counter() - t0
    print(f"pretrained encoder written to {args.out} in {summary['wall_time_s']:.1f}s")
    write_json(args.json_out, summary)
    return 0


def _eval_config(args: argparse.Namespace) -> Config:
    extra: dict[str, Any] = {"evaluation": {"strategy": args.strategy}}
    if args.label_fraction is not None:
        extra["evaluation"]["label_fraction"] = args.label_fraction
    return resolve_config(args, extra)


def _evaluate(args: argparse.Namespace) -> int:
    from ms2l_ray.tracking.artifacts import fetch_encoder
    from ms2l_ray.train.job import resolve_encoder

    if args.name is not None:
        check_name("--name", args.name)  # before Ray starts: fail in a second
    cfg = _eval_config(args)
    t0 = time.perf_counter()
    tracking = None if args.engine == "local" else tracking_from_args(args)
    encoder_dir = fetch_encoder(args.encoder, tracking.uri if tracking else args.tracking_uri)
    model, cfg = resolve_encoder(encoder_dir or "random", cfg, source=args.encoder if is_uri(args.encoder) else None)
    if args.engine == "local":
        from ms2l_ray.train.job import run_evaluate

        metrics: dict[str, Any] = dict(run_evaluate(cfg, model).metrics)
    else:
        from ms2l_ray.jobs.tracked import tracked_evaluate

        name = args.name or unique_name(f"evaluate-{args.strategy}")
        out = args.out or Path("outputs") / name
        start_ray(args, out)
        outcome, run = tracked_evaluate(cfg, encoder=encoder_dir, name=name, out_dir=out, tracking=tracking,
                                        execution=execution_from_args(args), tags={ENCODER_SOURCE: args.encoder})
        metrics = dict(outcome.metrics)
        if run is not None:
            metrics["mlflow_run_id"] = run.run_id
    metrics["wall_time_s"] = time.perf_counter() - t0
    _print_eval(args.strategy, metrics)
    write_json(args.json_out, metrics)
    return 0


def _run(args: argparse.Namespace) -> int:
    from ms2l_ray.config import compose
    from ms2l_ray.studies.experiment import load_experiment, run_pipeline

    exp = load_experiment(args.experiment_file)
    delta: dict[str, Any] = {}
    if args.seed is not None:
        delta["seed"] = args.seed
    if args.dataset is not None:
        delta["data"] = {"dataset": args.dataset}
    cfg = compose(args.preset or exp.preset, layers=[(f"{args.experiment_file}: config", exp.config),
                                                     ("command line", delta)], overrides=args.overrides)
    cfg = absolute_dataset(cfg)  # a relative store in the experiment file means the user's folder
    out_root = args.out or Path("outputs").absolute() / unique_name(exp.name)
    check_encoder_out(out_root / "pretrain", args.force)  # the pipeline's encoder goes to OUT/pretrain
    tracking = tracking_from_args(args)
    start_ray(args, out_root)
    t0 = time.perf_counter()
    result = run_pipeline(cfg, exp.evaluations, name=exp.name, out_root=out_root, tracking=tracking,
                          execution=execution_from_args(args))
    for label, m in result.evaluations.items():
        _print_eval(label, m)
    payload = {"pretrain": result.pretrain, "evaluations": result.evaluations, "parent_run_id": result.parent_run_id,
               "wall_time_s": time.perf_counter() - t0}
    write_json(args.json_out, payload)
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from ms2l_ray.studies.rerun import rerun

    tracking = tracking_from_args(args)
    if tracking is None:
        raise ValueError("rerun reads the run from MLflow; drop --no-tracking")
    start_ray(args, args.out)
    metrics = rerun(args.run_id, tracking=tracking, execution=execution_from_args(args), out=args.out)
    write_json(args.json_out, metrics)
    return 0


def add_train_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the single-run commands ``pretrain``, ``evaluate``, ``run`` and ``rerun`` on ``sub``."""
    p = sub.add_parser("pretrain", help="MS²L self-supervised pretraining; writes the encoder and its config")
    add_config_options(p)
    add_execution_options(p)
    add_out(p, "directory for encoder.safetensors and config.yaml")
    add_name_and_resume(p, name_help="run name (Ray storage folder and MLflow run name)",
                        resume_help="continue the interrupted run --name NAME", legacy_value=True)
    p.add_argument("--force", action="store_true",
                   help="overwrite an encoder already in --out and discard an earlier run of the same --name")
    p.set_defaults(func=_pretrain)

    e = sub.add_parser("evaluate", help="evaluate an encoder with one of the paper's strategies")
    add_config_options(e)
    add_execution_options(e)
    e.add_argument("--strategy", choices=STRATEGIES, default="linear")
    e.add_argument("--encoder", default="random",
                   help="directory from `ms2l pretrain --out`, an MLflow URI (runs:/<id>/encoder), or 'random'")
    e.add_argument("--label-fraction", type=float, default=None, help="fraction of training labels (semi)")
    add_out(e, "directory for metrics, history, confusion matrix")
    e.add_argument("--name", default=None, help="run name")
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("run", help="pretrain, then the experiment file's evaluations, under one MLflow parent run")
    r.add_argument("experiment_file", type=Path)
    add_study_config_options(r, "experiment file", set_help="override any config field (repeatable)")
    add_out(r, "folder of the pipeline's outputs (default outputs/<name>-<time>)")
    r.add_argument("--force", action="store_true", help="overwrite an encoder already in OUT/pretrain")
    add_json(r)
    add_execution_options(r, engines=False)
    r.set_defaults(func=_run)

    q = sub.add_parser("rerun", help="rebuild a logged run's exact config from MLflow and run it again")
    q.add_argument("run_id")
    add_out(q, "folder of the rerun's outputs")
    add_json(q)
    add_execution_options(q, engines=False)
    q.set_defaults(func=_rerun)
