"""A run's dataset as an MLflow input: what fills the runs table's "Dataset" column.

Why: two runs are only comparable on the same data. MLflow shows a run's logged inputs (name, digest,
context) beside its metrics, so a run that trained on another store — or another version of the same
store — is visible at a glance, without opening params.

* built-in data: name ``builtin``, digest of the generator's settings (the set is a pure function of them);
* an Arrow store: name from the store's own metadata (else the file name), digest of its schema metadata
  and size (cheap on a 100 GB store, changes whenever ``ms2l data prepare`` writes another one);
* context: the split (``ntu60-xsub`` …), so the column reads ``ntu60 (3f2a…) · ntu60-xsub``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ms2l_ray.config import Config

CONTEXT_TAG = "mlflow.data.context"  # MLflow's own input tag: the UI shows it beside the dataset name
DIGEST_LEN = 10


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:DIGEST_LEN]


def store_identity(path: str | Path) -> tuple[str, str, dict[str, Any]]:
    """``(name, digest, profile)`` of an Arrow store, read from its schema (the file is not scanned)."""
    import pyarrow as pa

    p = Path(path)
    with pa.memory_map(str(p)) as mm:
        reader = pa.ipc.open_file(mm)
        raw = {k.decode(): v.decode() for k, v in (reader.schema.metadata or {}).items()}
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    meta = json.loads(raw.get("meta", "{}") or "{}")
    source = json.loads(raw.get("source", "null") or "null")
    name = meta.get("dataset") or (source.get("dataset") if isinstance(source, dict) else None) or p.stem
    profile = {"sequences": rows, "num_classes": int(raw.get("num_classes", 0)), "layout": raw.get("layout", "")}
    return str(name), _digest({"header": raw, "size": p.stat().st_size}), profile


def dataset_entity(cfg: Config) -> Any:
    """The MLflow ``Dataset`` entity of ``cfg``'s data."""
    from mlflow.entities import Dataset

    data = cfg.data
    if data.dataset == "builtin":
        settings = {"sequences": data.builtin_sequences, "seed": data.builtin_seed, "max_frames": data.max_frames}
        return Dataset(name="builtin", digest=_digest(settings), source_type="code",
                       source=json.dumps({"generator": "ms2l_ray.data.synthetic"}), profile=json.dumps(settings))
    name, digest, profile = store_identity(data.dataset)
    return Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": str(data.dataset)}),
                   profile=json.dumps(profile))


def dataset_class_names(cfg: Config) -> list[str] | None:
    """The class names of ``cfg``'s data in label order (:mod:`ms2l_ray.data.classes`), or None.

    None when unknown or when this driver cannot read the store (it may sit on the workers' storage only).
    """
    from ms2l_ray.data.classes import class_names

    if cfg.data.dataset == "builtin":
        from ms2l_ray.data.synthetic import CLASS_NAMES

        return list(CLASS_NAMES)
    try:
        raw = _header(cfg.data.dataset)
        meta = json.loads(raw.get("meta", "{}") or "{}")
    except (OSError, ValueError):
        return None
    recorded, classes = meta.get("class_names"), int(raw.get("num_classes", 0))
    if isinstance(recorded, list) and len(recorded) == classes:
        return [str(n) for n in recorded]
    return class_names(str(meta.get("dataset", "")), classes)


def _header(path: str | Path) -> dict[str, str]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as mm:
        return {k.decode(): v.decode() for k, v in (pa.ipc.open_file(mm).schema.metadata or {}).items()}


def dataset_input(cfg: Config) -> Any:
    """``cfg``'s dataset with its split as the input's context."""
    from mlflow.entities import DatasetInput, InputTag

    return DatasetInput(dataset=dataset_entity(cfg), tags=[InputTag(CONTEXT_TAG, cfg.data.split)])
