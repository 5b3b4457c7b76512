"""The per-worker training function that ``TorchTrainer`` runs on every Train worker.

It rebuilds the plain loop's context from Ray (device, rank, DDP wrapper), restores from the latest
checkpoint Ray hands back (after a worker failure or on ``--resume``), reports metrics every epoch
(rank 0 also logs them to MLflow live) and checkpoints pretraining every epoch, so a lost worker costs
at most one epoch.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ms2l_ray.jobs.fatal import is_fatal, write_fatal
from ms2l_ray.jobs.spec import JobSpec
from ms2l_ray.train.loop import LoopContext

STATE_FILE = "state.pt"
METRICS_FILE, HISTORY_FILE, CONFUSION_FILE = "metrics.json", "history.json", "confusion.npy"
#: What rank 0 writes to a stage's ``out_dir``; the driver reads the first two and clears all before a chain.
OUTCOME_FILES = (METRICS_FILE, HISTORY_FILE, CONFUSION_FILE)


def _load_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


def _resume_state() -> dict[str, Any] | None:
    """The latest checkpoint Ray hands back (after a worker failure or on ``--resume``), else None."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            return _load_state(d)
    return None


class ReportHook:
    """Epoch hook: ``ray.train.report`` (+ checkpoint for pretraining) on every rank, MLflow on rank 0.

    Then, once the epoch is safely reported, the spec's :data:`~ms2l_ray.jobs.spec.EpochHook` (fault injection
    in tests).
    """

    def __init__(self, spec: JobSpec, rank: int, world_size: int) -> None:
        self.spec, self.rank, self.world_size = spec, rank, world_size
        self.logger = None
        if rank == 0 and spec.tracking_uri and spec.run_id:
            from ms2l_ray.tracking.runs import RunLogger, RunRef

            self.logger = RunLogger(RunRef(spec.tracking_uri, spec.run_id))

    def __call__(self, epoch: int, metrics: dict[str, float], make_state: Any) -> None:
        """Report ``epoch``'s ``metrics`` (MLflow step ``epoch + 1``), with ``make_state()`` as the checkpoint."""
        import ray.train

        if self.logger is not None:
            self.logger.log_metrics(metrics, step=epoch + 1)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.spec.kind == "pretrain" and self.rank == 0:
                torch.save(make_state(), Path(tmp) / STATE_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(dict(metrics), checkpoint=checkpoint)
        if self.spec.on_epoch_end is not None:
            self.spec.on_epoch_end(epoch, self.rank, self.world_size)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    tmp.replace(path)


def _say(message: str) -> None:
    """Progress straight to stdout: Train V2 patches ``print`` into its logger, which would echo twice."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _job_say(job: str) -> Any:
    """``_say`` for ``job``'s lines, marked as that job's.

    The driver's console then shows them as that job's live line (:mod:`ms2l_ray.console`) and files them,
    rather than echoing them with Ray's worker prefix.
    """
    from ms2l_ray.console import progress_line

    return lambda message: _say(progress_line(job, message))


def _quiet_report_echo() -> None:
    """Drop Ray Train's per-report INFO echo of the whole metrics dict.

    Every ``ray.train.report`` logs "Reporting training result N: TrainingReport(...)" at INFO from the
    worker, which doubles each epoch's terminal output with a raw dict; our own progress line already says
    it. That logger is named after its module file, so it is looked up through the module; if a Ray
    release moves it, the echo simply stays.
    """
    import logging

    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:  # pragma: no cover - another Ray layout
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def run_job_body(spec: JobSpec, ctx: LoopContext, resume: dict[str, Any] | None = None) -> dict[str, float]:
    """Run ``spec``'s plain loop in this process under ``ctx`` and (rank 0) write its outputs to ``spec.out_dir``.

    This is everything a Train worker does after Ray has set it up, kept free of Ray and MLflow imports so
    the distributed path (DDP, NCCL collectives, CUDA devices) can be tested with a bare
    ``torch.distributed`` process group (``tests/gpu/test_gpu_distributed.py``) on machines without Ray.

    Args:
        spec: the job: its kind, config and output folder.
        ctx: this worker's rank, world size, device and hooks.
        resume: a pretraining checkpoint dict to continue from (ignored for evaluations).

    Returns:
        The job's final metrics (pretraining: the last epoch's; evaluation: best-validation and test).
    """
    from ms2l_ray.model.artifact import load_pretrained
    from ms2l_ray.train.job import run_evaluate, run_pretrain

    cfg = spec.config
    out = Path(spec.out_dir)
    if ctx.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if spec.kind == "pretrain":
        result = run_pretrain(cfg, out, ctx, resume=resume)
        if ctx.rank == 0:
            _write_json(out / HISTORY_FILE, result.history)
            _write_json(out / METRICS_FILE, result.final)
        return result.final
    pretrained = load_pretrained(spec.encoder)[0] if spec.encoder else None
    ev = run_evaluate(cfg, pretrained, ctx)
    if ctx.rank == 0:
        _write_json(out / HISTORY_FILE, ev.history)
        _write_json(out / METRICS_FILE, ev.metrics)
        if ev.confusion is not None:
            np.save(out / CONFUSION_FILE, ev.confusion)
    return ev.metrics


def stage_finished(spec: JobSpec) -> bool:
    """True when rank 0 wrote this stage's final metrics (``metrics.json`` is written last).

    After a worker restart, a chain skips its finished stages. The driver clears these files before a chain
    starts.
    """
    return (Path(spec.out_dir) / METRICS_FILE).exists()


def _run_stage(spec: JobSpec, rank: int, world: int, device: torch.device, job: str) -> dict[str, float]:
    """One pretraining or evaluation on this worker, reporting to Ray (and rank 0 to the stage's MLflow run).

    A stage with a :class:`~ms2l_ray.jobs.spec.RunPlan` gets its MLflow run here, from rank 0, as it starts.
    Its lines are marked as ``job``'s progress.
    """
    import ray.train.torch

    if rank == 0 and spec.run_plan is not None and spec.run_id is None:
        from ms2l_ray.jobs.job_runs import start_planned_run

        spec = dataclasses.replace(spec, run_id=start_planned_run(spec))  # this stage's run starts now
    ctx = LoopContext(device=device, rank=rank, world_size=world,
                      wrap_model=lambda m: ray.train.torch.prepare_model(m, move_to_device=True),
                      hooks=[ReportHook(spec, rank, world)], log=_job_say(job))
    return run_job_body(spec, ctx, resume=_resume_state() if spec.kind == "pretrain" else None)


SPEC_KEY = "spec"  # the one key of ``train_loop_config``: the pickled JobSpec itself


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point of every Train worker; ``config[SPEC_KEY]`` is the :class:`JobSpec`.

    A chain runs its stages in order on the same worker group. Only pretraining checkpoints, so after a
    worker failure Ray hands back the pretraining's latest state: an unfinished pretraining resumes from it,
    finished stages are skipped (:func:`stage_finished`) and an interrupted evaluation starts again.
    """
    import ray.train
    import ray.train.torch

    _quiet_report_echo()
    spec: JobSpec = config[SPEC_KEY]
    tctx = ray.train.get_context()
    rank, world = tctx.get_world_rank(), tctx.get_world_size()
    device = ray.train.torch.get_device()
    for stage in spec.stage_specs():
        if spec.kind == "chain" and stage_finished(stage):
            continue
        try:
            metrics = _run_stage(stage, rank, world, device, tctx.get_experiment_name())
        except Exception as exc:
            if not is_fatal(exc):
                raise  # Ray Train retries it (a lost worker, a transient failure)
            if rank == 0:
                write_fatal(stage.out_dir, exc)
            return  # every rank stops alike; the driver raises the recorded error, nothing is retried
        if spec.kind == "chain" and world > 1:
            # rank 0 writes the encoder a later stage loads: no rank starts that stage before it is on disk
            torch.distributed.barrier()
    if spec.kind == "evaluate":
        # Every rank reports the final metrics once more so the Result carries them.
        ray.train.report(dict(metrics, final=1.0))
    if rank == 0:
        from ms2l_ray.console import done_line

        _say(done_line(tctx.get_experiment_name()))  # the job's live line goes
