"""Join the user's Ray cluster or start a local one sized to this machine.

No ``RAY_ADDRESS`` (and no ``--address``) → a local instance with this machine's CPUs/GPUs; with one, the
command joins that cluster (which is how ``ray job submit`` entrypoints find their cluster).
"""

from __future__ import annotations

import os
from typing import Any


def ensure_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> dict[str, Any]:
    """``ray.init`` once per process; returns the cluster's total resources."""
    import ray

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
