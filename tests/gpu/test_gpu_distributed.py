"""The distributed GPU path without Ray (opt-in: ``pytest -m gpu`` on a CUDA machine; fails without CUDA).

A Ray Train GPU job is a NCCL process group whose workers run
:func:`ms2l_ray.jobs.worker.run_job_body`. This module builds that process group with plain
``torch.distributed`` (world size 1 in-process; world size 2 spawned when two GPUs are present) and runs the
same body — pretraining with validation and a KNN probe every epoch, then every evaluation strategy — so the
NCCL collectives, CUDA devices and DDP are exercised on a machine that has torch + CUDA but neither Ray nor
MLflow. Nothing here imports either.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gpu_helpers import require_cuda
from net_helpers import free_port
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ms2l_ray.config import STRATEGIES, Config, load_config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.jobs.spec import JobSpec
from ms2l_ray.jobs.worker import run_job_body
from ms2l_ray.model.artifact import ENCODER_FILE
from ms2l_ray.train.collectives import all_reduce_sum
from ms2l_ray.train.loop import LoopContext

pytestmark = pytest.mark.gpu

EPOCHS = 2  # the smoke preset's pretraining and evaluation epochs
OVERRIDES = ["data.builtin_sequences=160", "knn_every=1", f"pretrain.epochs={EPOCHS}",
             f"evaluation.optim.epochs={EPOCHS}"]


def _config(strategy: str | None = None) -> Config:
    extra = [f"evaluation.strategy={strategy}"] if strategy else []
    if strategy == "semi":
        extra.append("evaluation.label_fraction=0.5")
    return load_config("smoke", overrides=OVERRIDES + extra)


def _wrapper(device: torch.device, world_size: int) -> Any:
    """What ``ray.train.torch.prepare_model`` does: DDP on the worker's device, and only when there are peers."""
    def wrap(model: nn.Module) -> nn.Module:
        if world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return wrap


class _DeviceHook:
    """Epoch hook that records which device the checkpointed weights live on (the loop's real device)."""

    def __init__(self) -> None:
        self.devices: set[str] = set()

    def __call__(self, epoch: int, metrics: dict[str, float], make_state: Any) -> None:
        self.devices.update(str(v.device) for v in make_state()["model"].values())


def rank_body(rank: int, world_size: int, port: int, backend: str, root: str) -> None:
    """One rank: join the group, pretrain, run every strategy from the artifact, write ``rank{rank}.json``.

    ``backend="gloo"`` runs the same on CPU (handy for checking this body on a machine without a GPU).
    """
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # what Ray Train does per worker; NCCL collectives use this device
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        hook = _DeviceHook()
        ctx = LoopContext(device=device, rank=rank, world_size=world_size, wrap_model=_wrapper(device, world_size),
                          hooks=[hook], progress=False)
        base = Path(root)
        results: dict[str, Any] = {}
        pretrain_out = base / "pretrain"
        results["pretrain"] = run_job_body(JobSpec.make("pretrain", _config(), str(pretrain_out)), ctx)
        all_reduce_sum(torch.zeros(1))  # a barrier: rank 0 has written the encoder before any rank loads it
        for strategy in STRATEGIES:
            spec = JobSpec.make("evaluate", _config(strategy), str(base / strategy), encoder=str(pretrain_out))
            results[strategy] = run_job_body(spec, ctx)
        results["devices"] = sorted(hook.devices)
        (base / f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def check_results(root: Path, world_size: int, device_type: str) -> None:
    """Exact checks on what every rank returned and what rank 0 wrote."""
    _, splits = load_dataset(_config().data, _config().seed)
    ranks = [json.loads((root / f"rank{r}.json").read_text()) for r in range(world_size)]
    history = json.loads((root / "pretrain" / "history.json").read_text())
    assert len(history) == EPOCHS
    assert all("val_loss" in h and "val_knn_top1" in h for h in history)  # validation + KNN every epoch
    assert (root / "pretrain" / ENCODER_FILE).is_file()
    for r, res in enumerate(ranks):
        assert res["devices"] == ([f"cuda:{r}"] if device_type == "cuda" else ["cpu"])
        assert all(math.isfinite(v) for k, v in res["pretrain"].items() if k.startswith("val_"))
        # reduced / gathered metrics are the same on every rank, to the bit
        assert {k: v for k, v in res["pretrain"].items() if k.startswith("val_")} == \
            {k: v for k, v in ranks[0]["pretrain"].items() if k.startswith("val_")}
        for strategy in STRATEGIES:
            assert res[strategy] == ranks[0][strategy], (strategy, r)
    for strategy in STRATEGIES:
        metrics = ranks[0][strategy]
        assert 0.0 <= metrics["val_top1"] <= 100.0 and 0.0 <= metrics["test_top1"] <= 100.0, strategy
        assert json.loads((root / strategy / "metrics.json").read_text()) == metrics
        confusion = np.load(root / strategy / "confusion.npy")
        assert int(confusion.sum()) == len(splits.test), strategy  # every test sample counted once over ranks


def test_world_of_one_on_nccl(tmp_path: Path) -> None:
    require_cuda()
    rank_body(0, 1, free_port(), "nccl", str(tmp_path))
    check_results(tmp_path, 1, "cuda")


def test_world_of_two_on_nccl(tmp_path: Path) -> None:
    require_cuda()
    if torch.cuda.device_count() < 2:
        pytest.skip(f"world size 2 needs 2 GPUs; this machine has {torch.cuda.device_count()}")
    mp.spawn(rank_body, args=(2, free_port(), "nccl", str(tmp_path)), nprocs=2, join=True)
    check_results(tmp_path, 2, "cuda")
