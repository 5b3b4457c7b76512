"""What a Train job is: a plain-dict spec that travels to every worker (``train_loop_config``).

A job is one pretraining, one evaluation, or a ``chain`` of them: a pretraining and every evaluation of its
encoder run in one ``TorchTrainer`` (one worker group, one start-up) instead of one each, because at the
sizes of a grid cell the start-up of a Ray Train run costs as much as its epochs (issue 12, item 7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ms2l_ray.config import Config, to_dict
from ms2l_ray.names import absolute_path


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


@dataclass
class JobSpec:
    """One pretrain or evaluation job.

    Attributes:
        kind: ``"pretrain"`` or ``"evaluate"``.
        config: the resolved config as a nested dict (``config.to_dict``).
        out_dir: where rank 0 writes the job's outputs (encoder artifact, metrics, history); must be on
            storage every node sees when the job runs on a cluster.
        encoder: pretrained artifact directory for evaluations (None = random encoder).
        tracking_uri, run_id: the MLflow run rank 0 logs per-epoch metrics into (None = no tracking).
        fail_at_epoch: test hook — the last rank kills its process after this epoch's report, once.
        fail_marker: file that records that the injected failure already happened.
        resume_from: a checkpoint directory to start from when Ray has none to restore.
        stages: for ``kind="chain"``, the stage jobs as dicts (pretrain first, then evaluations), run in
            order by the same workers; a stage whose outputs exist is skipped after a worker restart.
    """

    kind: str
    config: dict[str, Any]
    out_dir: str
    encoder: str | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    fail_at_epoch: int = -1
    fail_marker: str | None = None
    resume_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def make(cls, kind: str, cfg: Config, out_dir: str, **kw: Any) -> JobSpec:
        if kind not in ("pretrain", "evaluate"):
            raise ValueError(f"unknown job kind {kind!r}; expected pretrain or evaluate")
        out = absolute_path(out_dir) or str(out_dir)  # workers have another cwd
        if kw.get("encoder"):
            kw["encoder"] = absolute_path(kw["encoder"])
        return cls(kind=kind, config=to_dict(cfg), out_dir=out, **kw)

    @classmethod
    def chain(cls, stages: list[JobSpec]) -> JobSpec:
        """One job that runs ``stages`` in order; its own config/out_dir are the first stage's."""
        if not stages or any(s.kind == "chain" for s in stages):
            raise ValueError("a chain needs one or more pretrain/evaluate stages")
        return cls(kind="chain", config=stages[0].config, out_dir=stages[0].out_dir,
                   stages=[s.to_dict() for s in stages])

    def stage_specs(self) -> list[JobSpec]:
        """The jobs this spec runs: its stages for a chain, else itself."""
        return [JobSpec(**s) for s in self.stages] if self.kind == "chain" else [self]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
