"""What a Train job is: a plain-dict spec that travels to every worker (``train_loop_config``)."""

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

    @classmethod
    def make(cls, kind: str, cfg: Config, out_dir: str, **kw: Any) -> JobSpec:
        if kind not in ("pretrain", "evaluate"):
            raise ValueError(f"unknown job kind {kind!r}; expected pretrain or evaluate")
        out = absolute_path(out_dir) or str(out_dir)  # workers have another cwd
        if kw.get("encoder"):
            kw["encoder"] = absolute_path(kw["encoder"])
        return cls(kind=kind, config=to_dict(cfg), out_dir=out, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
