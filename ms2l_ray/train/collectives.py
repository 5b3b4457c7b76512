"""Collectives that work on every ``torch.distributed`` backend: the one place the loops reduce or gather.

Why this exists: the loops keep their metric sums and cached features on the CPU, but Ray Train picks NCCL
as soon as a job uses GPUs (``ms2l_ray.jobs.driver``), and NCCL only accepts CUDA tensors — a CPU
tensor handed to ``dist.all_reduce`` fails the job at its first validation. Every collective here moves its
tensor to the device the process group communicates on (:func:`collective_device`), runs there and hands
the result back on the caller's device with the caller's dtype (NCCL reduces float64 and int64 as they are,
so no precision is lost on the way). Without a process group every function returns its input unchanged,
which is what a single-process run needs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def group_is_up() -> bool:
    """Whether a default process group exists, i.e. whether this process runs under DDP."""
    return dist.is_available() and dist.is_initialized()


def current_cuda_device() -> torch.device:
    """The CUDA device this process drives (what ``torch.cuda.set_device`` chose; Ray Train sets it per worker).

    A separate function so tests on CPU-only machines can substitute a device they can allocate on.
    """
    return torch.device("cuda", torch.cuda.current_device())


def backend_device(backend: str) -> torch.device:
    """The device whose tensors ``backend`` communicates, e.g. ``"nccl"`` → CUDA, ``"gloo"`` → CPU.

    A composite backend (``"cpu:gloo,cuda:nccl"``) takes CPU tensors directly, so CPU is chosen there; only
    a group that has no CPU backend at all (NCCL alone) needs the tensors on the GPU.
    """
    if ":" in backend:  # "cpu:gloo,cuda:nccl": one backend per device type
        device_types = {part.split(":", 1)[0].strip() for part in backend.split(",")}
        return torch.device("cpu") if "cpu" in device_types else current_cuda_device()
    return current_cuda_device() if backend.lower() == "nccl" else torch.device("cpu")


def collective_device() -> torch.device:
    """The device the default process group's collectives need their tensors on."""
    return backend_device(str(dist.get_backend()))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``t`` over all ranks (evaluation shards are disjoint, so sums are totals).

    Returns a new tensor on ``t``'s device with ``t``'s dtype; ``t`` itself is never modified. Without a
    process group, ``t`` is returned as it is.
    """
    if not group_is_up():
        return t
    work = t.detach().to(collective_device(), copy=True)  # copy: all_reduce is in place, the caller keeps t
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(t.device)


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """``torch.cat`` over ranks, in rank order, of each rank's ``t`` (shards may differ in length along dim 0).

    Every rank ends with the same tensor, on its own ``t``'s device and dtype. A rank whose shard is empty may
    pass any empty tensor of the same rank count of dimensions (e.g. ``torch.zeros(0, 0)`` before it knows the
    feature width): the trailing shape is taken from the ranks that have rows. Why tensors rather than
    ``all_gather_object``: no pickling of feature matrices, and the transfer runs on the group's own device.
    """
    if not group_is_up():
        return t
    world, device = dist.get_world_size(), collective_device()
    shape = torch.tensor(t.shape, dtype=torch.int64, device=device)  # [D]
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    sizes = [[int(v) for v in s.tolist()] for s in shapes]
    rows = [s[0] for s in sizes]
    trailing = next((s[1:] for s in sizes if s[0] > 0), list(t.shape[1:]))
    longest = max(rows)
    if longest == 0:  # nothing anywhere: skip the second collective (every rank takes this branch alike)
        return torch.zeros([0, *trailing], dtype=t.dtype, device=t.device)
    padded = torch.zeros([longest, *trailing], dtype=t.dtype, device=device)
    if rows[dist.get_rank()]:
        padded[: t.shape[0]] = t.detach().to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, rows, strict=True)]).to(t.device)
