"""What a Train job is: a picklable spec that travels to every worker (in ``train_loop_config``).

A job is one pretraining, one evaluation, or a ``chain`` of them: a pretraining and every evaluation of its
encoder run in one ``TorchTrainer`` (one worker group, one start-up) instead of one each, because at the
sizes of a grid cell the start-up of a Ray Train run costs as much as its epochs (issue 12, item 7).

The spec carries the validated :class:`~ms2l_ray.config.Config` itself (dataclasses pickle): the config is
validated once, where it is composed, and never converted to a dict and re-validated on its way to a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ms2l_ray.config import Config
from ms2l_ray.names import absolute_path

EpochHook = Callable[[int, int, int], None]
"""``hook(epoch, rank, world_size)``, called on every worker after each epoch's report and checkpoint.

Why: the one place where tests inject faults into a running job (a worker that dies after epoch 1, to check
that Ray restores the checkpoint). It must pickle, since it travels to the workers with the spec; production
jobs pass none.
"""


@dataclass(frozen=True)
class Resources:
    """Per-job worker resources. ``gpus_per_worker > 0`` turns on CUDA + NCCL; otherwise CPU + gloo."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ValueError(f"bad worker resources: cpus {self.cpus_per_worker}, gpus {self.gpus_per_worker}")


@dataclass(frozen=True)
class RunPlan:
    """An MLflow job run that rank 0 starts when its stage starts, not the driver before the job.

    Why: a search trial's evaluation run must not exist unless its pretraining ended (an ASHA-cut trial holds
    only its pretraining run), yet it runs in the same Train run as that pretraining
    (:func:`ms2l_ray.jobs.job_runs.start_planned_run`). Plain strings: it travels to the workers.
    """

    tracking_uri: str
    experiment: str
    kind: str  # a KIND_* tag value
    name: str  # the MLflow run name
    parent_run_id: str | None
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobSpec:
    """One pretrain or evaluation job.

    Attributes:
        kind: ``"pretrain"``, ``"evaluate"`` or ``"chain"``.
        config: the resolved, validated config.
        out_dir: where rank 0 writes the job's outputs (encoder artifact, metrics, history); must be on
            storage every node sees when the job runs on a cluster.
        encoder: pretrained artifact directory for evaluations (None = random encoder).
        tracking_uri, run_id: the MLflow run rank 0 logs per-epoch metrics into (None = no tracking).
        run_plan: a run rank 0 starts when the stage starts (``run_id`` is then None on the driver).
        on_epoch_end: an :data:`EpochHook` (fault injection in tests); None in production.
        stages: for ``kind="chain"``, the stage jobs (pretrain first, then evaluations), run in order by the
            same workers; a stage whose outputs exist is skipped after a worker restart.
    """

    kind: str
    config: Config
    out_dir: str
    encoder: str | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    on_epoch_end: EpochHook | None = None
    run_plan: RunPlan | None = None
    stages: list[JobSpec] = field(default_factory=list)

    @classmethod
    def make(cls, kind: str, cfg: Config, out_dir: str, **kw: Any) -> JobSpec:
        """A pretrain or evaluate spec whose paths are absolute, because workers run in another directory.

        Args:
            kind: ``"pretrain"`` or ``"evaluate"``.
            cfg: the validated config the job runs.
            out_dir: where rank 0 writes the outputs.
            **kw: the other :class:`JobSpec` fields (``encoder``, ``tracking_uri``, ``run_id``, ...).
        """
        if kind not in ("pretrain", "evaluate"):
            raise ValueError(f"unknown job kind {kind!r}; expected pretrain or evaluate")
        out = absolute_path(out_dir) or str(out_dir)  # workers have another cwd
        if kw.get("encoder"):
            kw["encoder"] = absolute_path(kw["encoder"])
        return cls(kind=kind, config=cfg, out_dir=out, **kw)

    @classmethod
    def chain(cls, stages: list[JobSpec]) -> JobSpec:
        """One job that runs ``stages`` in order; its own config/out_dir are the first stage's."""
        if not stages or any(s.kind == "chain" for s in stages):
            raise ValueError("a chain needs one or more pretrain/evaluate stages")
        return cls(kind="chain", config=stages[0].config, out_dir=stages[0].out_dir, stages=list(stages))

    def stage_specs(self) -> list[JobSpec]:
        """The jobs this spec runs: its stages for a chain, else itself."""
        return list(self.stages) if self.kind == "chain" else [self]
