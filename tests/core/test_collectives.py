"""Collectives on every backend: NCCL gets tensors on the group's CUDA device, results come back as they went in.

CPU-only torch cannot make CUDA tensors, so the NCCL case substitutes ``collectives.current_cuda_device`` with
the ``meta`` device and records what reaches ``dist.all_reduce`` / ``dist.all_gather``; the sums themselves are
checked on real gloo process groups (world size 1 in-process, world size 2 spawned).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from net_helpers import free_port

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.train import collectives
from ms2l_ray.train.collectives import all_gather_cat, all_reduce_sum, backend_device
from ms2l_ray.train.evaluate import _summarise
from ms2l_ray.train.features import extract_features


class _Stop(Exception):
    """Raised by the fake collectives once they have recorded their input (meta tensors hold no values)."""


class _Recorder:
    """A fake collective that records (device, dtype, shape) of every tensor handed to it, then stops the caller."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, torch.device | None, torch.dtype | None, tuple[int, ...] | None]] = []

    def all_reduce(self, t: torch.Tensor, op: Any = None) -> None:
        self.seen.append(("all_reduce", t.device, t.dtype, tuple(t.shape)))
        raise _Stop

    def all_gather(self, out: list[torch.Tensor], t: torch.Tensor) -> None:
        self.seen.append(("all_gather", t.device, t.dtype, tuple(t.shape)))
        raise _Stop

    def all_gather_object(self, out: list[Any], obj: Any) -> None:  # what the CPU-only code used to call
        self.seen.append(("all_gather_object", None, None, None))
        raise _Stop


@pytest.fixture
def fake_nccl(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    """An "initialised" NCCL group of two ranks whose CUDA device is ``meta``."""
    rec = _Recorder()
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "all_reduce", rec.all_reduce)
    monkeypatch.setattr(dist, "all_gather", rec.all_gather)
    monkeypatch.setattr(dist, "all_gather_object", rec.all_gather_object)
    monkeypatch.setattr(collectives, "current_cuda_device", lambda: torch.device("meta"))
    return rec


def test_backend_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert backend_device("nccl") == torch.device("cuda", 3)
    assert backend_device("NCCL") == torch.device("cuda", 3)
    assert backend_device("cuda:nccl") == torch.device("cuda", 3)
    assert backend_device("gloo") == torch.device("cpu")
    assert backend_device("cpu:gloo,cuda:nccl") == torch.device("cpu")


def test_evaluation_sums_go_to_the_nccl_device(fake_nccl: _Recorder) -> None:
    hits = torch.tensor([3.0, 5.0, 8.0], dtype=torch.float64)
    cm = torch.tensor([[2, 1], [0, 5]], dtype=torch.long)
    with pytest.raises(_Stop):
        _summarise(hits, cm, "val")  # evaluate.py's reduction of top-k hits and the confusion matrix
    assert fake_nccl.seen == [("all_reduce", torch.device("meta"), torch.float64, (3,))]
    assert hits.tolist() == [3.0, 5.0, 8.0]  # the caller's tensor is untouched


def test_all_reduce_keeps_dtype_on_the_nccl_device(fake_nccl: _Recorder) -> None:
    for dtype in (torch.float64, torch.int64, torch.float32):
        with pytest.raises(_Stop):
            all_reduce_sum(torch.ones(2, 2, dtype=dtype))
    meta = torch.device("meta")
    assert fake_nccl.seen == [("all_reduce", meta, torch.float64, (2, 2)), ("all_reduce", meta, torch.int64, (2, 2)),
                              ("all_reduce", meta, torch.float32, (2, 2))]


def _tiny_set() -> SkeletonSet:
    """Four one-joint, one-person clips of 2 frames each (F = 3), labels 0, 1, 0, 1."""
    frames = np.arange(24, dtype=np.float32).reshape(8, 3)
    n = 4
    return SkeletonSet(frames=frames, offsets=np.arange(0, 9, 2, dtype=np.int64),
                       labels=np.array([0, 1, 0, 1], dtype=np.int64), subjects=np.ones(n, dtype=np.int64),
                       views=np.ones(n, dtype=np.int64), setups=np.ones(n, dtype=np.int64),
                       names=[f"s{i}" for i in range(n)], num_persons=1, num_joints=1, num_classes=2,
                       layout="ntu25")


def test_feature_gather_goes_to_the_nccl_device(fake_nccl: _Recorder) -> None:
    def encode(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1)  # [N, 3]

    with pytest.raises(_Stop):
        extract_features(encode, _tiny_set(), np.arange(4), batch_size=2, max_frames=4, device=torch.device("cpu"),
                         rank=0, world_size=2)
    # first collective: the shard shapes (rank 0 holds samples 0 and 1: features [2, 3]), as int64 on the group device
    assert fake_nccl.seen == [("all_gather", torch.device("meta"), torch.int64, (2,))]


@pytest.fixture
def gloo_world_of_one() -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_gloo_world_of_one(gloo_world_of_one: None) -> None:
    assert collectives.collective_device() == torch.device("cpu")
    x = torch.tensor([1.5, 2.25], dtype=torch.float64)
    out = all_reduce_sum(x)
    assert out.dtype == torch.float64 and out.device == torch.device("cpu")
    assert out.tolist() == [1.5, 2.25]
    out += 1  # a fresh tensor: the caller's input does not change with it
    assert x.tolist() == [1.5, 2.25]
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(all_gather_cat(feats), feats)
    assert all_gather_cat(torch.zeros(0, 0)).shape == (0, 0)


def _two_rank_worker(rank: int, port: int, out_dir: str) -> None:
    """Rank ``rank`` of a gloo group of two: reduce and gather shards of different sizes, write what it got."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        hits = all_reduce_sum(torch.tensor([rank + 1.0, 10.0 * (rank + 1), 0.5], dtype=torch.float64))
        cm = all_reduce_sum(torch.tensor([[rank, 1], [2, 3 * rank]], dtype=torch.int64))
        # rank 0 has two feature rows, rank 1 none (its shard was empty: width unknown, zeros(0, 0))
        feats = all_gather_cat(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]) if rank == 0 else torch.zeros(0, 0))
        labels = all_gather_cat(torch.tensor([7, 8]) if rank == 0 else torch.tensor([9, 10, 11]))
        result = {"hits": hits.tolist(), "hits_dtype": str(hits.dtype), "cm": cm.tolist(), "cm_dtype": str(cm.dtype),
                  "feats": feats.tolist(), "feats_shape": list(feats.shape), "labels": labels.tolist(),
                  "labels_dtype": str(labels.dtype)}
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_gloo_world_of_two(tmp_path: Path) -> None:
    mp.spawn(_two_rank_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    expected = {"hits": [3.0, 30.0, 1.0], "hits_dtype": "torch.float64", "cm": [[1, 2], [4, 3]],
                "cm_dtype": "torch.int64", "feats": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "feats_shape": [2, 3],
                "labels": [7, 8, 9, 10, 11], "labels_dtype": "torch.int64"}
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
