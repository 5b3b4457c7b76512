"""What the commands make of their parsed options: the resolved config, absolute dataset paths, ``--json``.

The options themselves are declared in :mod:`ms2l_ray.cli.options`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from ms2l_ray.config import Config, load_config
from ms2l_ray.names import absolute_path


def resolve_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    """Preset → --config → command-specific deltas → --seed/--dataset/--device → --set."""
    delta: dict[str, Any] = dict(extra or {})
    if args.seed is not None:
        delta["seed"] = args.seed
    if args.dataset is not None:
        delta.setdefault("data", {})["dataset"] = args.dataset
    if args.device is not None:
        delta["device"] = args.device
    return absolute_dataset(load_config(args.preset, args.config, args.overrides, delta))


def absolute_dataset(cfg: Config) -> Config:
    """``data.dataset`` made absolute however it was given (``--dataset``, ``--set``, a config file).

    Why here and not only on ``--dataset``: a relative store in a config file or ``--set`` reaches the Ray
    worker too, and workers run in another directory ("store store does not exist" inside the job).
    """
    dataset = absolute_path(cfg.data.dataset)
    if dataset == cfg.data.dataset or dataset is None:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=dataset))


def absolute_dataset_delta(delta: dict[str, Any]) -> dict[str, Any]:
    """The nested config delta ``delta`` with ``data.dataset`` made absolute, in place (grids, spaces, ``--set``)."""
    data = delta.get("data")
    if isinstance(data, dict) and isinstance(data.get("dataset"), str):
        data["dataset"] = absolute_path(data["dataset"])
    return delta


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write metrics as JSON (NaN → null), atomically, so a reader never sees half a file."""
    if path is None:
        return

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(clean(payload), indent=2, sort_keys=True))
    tmp.replace(path)
