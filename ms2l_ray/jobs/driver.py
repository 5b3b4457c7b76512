"""Driver side: build a ``TorchTrainer`` for a :class:`JobSpec` and run it (Ray Train V2 API).

Checkpoints and Train state go to ``storage_path/name`` (a local folder by default; a shared
filesystem or ``s3://``/``gs://`` URI on a cluster). Re-running with the same ``name`` and
``storage_path`` restores the latest checkpoint — that is what ``--resume`` does.

:func:`run_chain` runs a pretraining and its evaluations as one Train run (one worker group start-up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ms2l_ray.jobs.fatal import FATAL_FILE, raise_if_fatal
from ms2l_ray.jobs.job_runs import RUN_ID_FILE
from ms2l_ray.jobs.spec import JobSpec, Resources
from ms2l_ray.jobs.worker import HISTORY_FILE, METRICS_FILE, OUTCOME_FILES, SPEC_KEY, train_loop_per_worker


@dataclass
class JobOutcome:
    """Final metrics and per-epoch history (from rank 0's files) and the job's output directory."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    out_dir: Path


def default_storage_path() -> str:
    """``./ray_results`` of the driver, absolute: where Ray Train keeps checkpoints without ``--storage-path``."""
    return str((Path.cwd() / "ray_results").resolve())


def _fit(spec: JobSpec, *, name: str, resources: Resources, storage_path: str | None, max_failures: int,
         callbacks: list[Any] | None) -> Any:
    """Build the ``TorchTrainer`` for ``spec`` and run it; Ray's ``Result``."""
    from ray.train.torch import TorchConfig
    from ray.train.v2.api.config import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    use_gpu = resources.gpus_per_worker > 0
    per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker}
    if use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={SPEC_KEY: spec},  # the spec itself: it pickles, nothing to rebuild or re-validate
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=resources.workers, use_gpu=use_gpu, resources_per_worker=per_worker),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path or default_storage_path(),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or None,
            logging_config=LoggingConfig(log_level="WARNING"),  # progress lines are ours; keep Train's quiet
        ),
    )
    result = trainer.fit()
    if result.error is not None:  # pragma: no cover - fit() raises in V2; kept for safety
        raise result.error
    return result


def _outcome(spec: JobSpec, result: Any) -> JobOutcome:
    """A job's outcome from the files rank 0 wrote to its ``out_dir`` (else the Result's last metrics).

    A job that stopped on an error no retry fixes raises it here (:mod:`ms2l_ray.jobs.fatal`).
    """
    raise_if_fatal(spec.out_dir)
    out = Path(spec.out_dir)
    metrics_file, history_file = out / METRICS_FILE, out / HISTORY_FILE
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else dict(result.metrics or {})
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    return JobOutcome(metrics=metrics, history=history, out_dir=out)


def run_job(spec: JobSpec, *, name: str, resources: Resources, storage_path: str | None = None,
            max_failures: int = 2, callbacks: list[Any] | None = None) -> JobOutcome:
    """Run one job on the Ray cluster (which must be initialised) and return its outcome."""
    (Path(spec.out_dir) / FATAL_FILE).unlink(missing_ok=True)  # an error an earlier run recorded is not this one's
    result = _fit(spec, name=name, resources=resources, storage_path=storage_path, max_failures=max_failures,
                  callbacks=callbacks)
    return _outcome(spec, result)


def run_chain(stages: list[JobSpec], *, name: str, resources: Resources, storage_path: str | None = None,
              max_failures: int = 2, callbacks: list[Any] | None = None) -> list[JobOutcome]:
    """Run ``stages`` (a pretraining, then evaluations of its encoder) as one Train run; one outcome each.

    Outputs a previous run left in the stages' folders are removed first: a stage is skipped when its
    ``metrics.json`` exists, which must mean "finished in this run" (after a worker restart), never "in an
    earlier one"; likewise a planned stage's run id means "the run this chain started".
    """
    for stage in stages:
        for file in (*OUTCOME_FILES, FATAL_FILE, RUN_ID_FILE):
            (Path(stage.out_dir) / file).unlink(missing_ok=True)
    result = _fit(JobSpec.chain(stages), name=name, resources=resources, storage_path=storage_path,
                  max_failures=max_failures, callbacks=callbacks)
    return [_outcome(stage, result) for stage in stages]
