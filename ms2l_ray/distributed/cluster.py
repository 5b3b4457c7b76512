"""Join the user's Ray cluster or start a local one sized to this machine.

No ``RAY_ADDRESS`` (and no ``--address``) → a local instance with this machine's CPUs/GPUs; with one, the
command joins that cluster (which is how ``ray job submit`` entrypoints find their cluster).
"""

from __future__ import annotations

import os
from typing import Any

# Ray Train V2's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default) and a
# worker's report() waits for that poll, so every short epoch and every job start pays up to 2 s. Our jobs are
# many and short: on 2 cores, 0.2 s halved the wall time of a pretrain + linear-evaluation pipeline (114 s → 58 s).
# Set before ray.init so a local instance's processes inherit it; a value the user set wins.
TRAIN_POLL_ENV, TRAIN_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"


def ensure_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> dict[str, Any]:
    """``ray.init`` once per process; returns the cluster's total resources."""
    import ray

    os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_S)
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        # The dashboard (bound to 127.0.0.1 by default) serves the state API that Ray Train V2 polls.
        kwargs: dict[str, Any] = {"log_to_driver": log_to_driver}
        if address:
            ray.init(address=address, log_to_driver=log_to_driver)
        else:
            if num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            # Local instance: loopback only, nothing exposed beyond this machine.
            ray.init(**kwargs)
    return dict(ray.cluster_resources())


def node_cpus_per_worker(workers: int) -> float:
    """A whole node's CPUs shared by a job's ``workers`` (at least 1 each): the default for a single job.

    Ray gives a worker as many torch threads as it has CPUs (``OMP_NUM_THREADS``), so the old default of one
    CPU per worker left half of a 2-core laptop idle: ``ms2l pretrain --preset small`` took 308 s there
    against 268 s with both cores (and a different trajectory: the thread count changes reduction order).
    The largest alive node bounds it, so the job still fits on one node.
    Ray must be initialised.
    """
    import ray

    cpus = [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    return max(1.0, float(int(max(cpus, default=1.0) // max(1, workers))))
