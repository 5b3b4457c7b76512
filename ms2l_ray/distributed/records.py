"""Small JSON records beside a job's Ray storage (``<storage>/<name>/<file>``), local or remote.

``--resume`` reads them to find a job's config and MLflow run again. The storage path may be a local
folder or a URI (``s3://``, ``gs://``, ``hdfs://``): both go through :mod:`pyarrow.fs`, the same layer
Ray Train uses for checkpoints, so a resumed job on another node finds what the first one wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fs_path(storage_path: str, name: str, filename: str) -> tuple[Any, str]:
    """Where a record lives; ``name`` must be one path component (:func:`ms2l_ray.names.check_name`), so a
    ``--name ../../x`` can neither plant nor read a record outside the storage folder."""
    import pyarrow.fs as pafs

    from ms2l_ray.names import check_name

    check_name("run name", name)

    if "://" in storage_path:
        fs, root = pafs.FileSystem.from_uri(storage_path)
        return fs, f"{root.rstrip('/')}/{name}/{filename}"
    return pafs.LocalFileSystem(), str(Path(storage_path).resolve() / name / filename)


def write_record(storage_path: str, name: str, filename: str, record: dict[str, Any]) -> str:
    """Write atomically where the filesystem allows (local: temp file + rename); return the path written."""
    fs, path = _fs_path(storage_path, name, filename)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    blob = json.dumps(record, indent=1).encode()
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(blob)
    fs.move(tmp, path)
    return path


def read_record(storage_path: str, name: str, filename: str) -> dict[str, Any] | None:
    """The record, or None when there is none."""
    import pyarrow.fs as pafs

    fs, path = _fs_path(storage_path, name, filename)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())  # type: ignore[no-any-return]
