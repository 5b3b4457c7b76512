"""Small JSON records beside a job's Ray storage (``<storage>/<name>/<file>``), local or remote.

``--resume`` reads them to find a job's config and MLflow run again. The storage path may be a local
folder or a URI (``s3://``, ``gs://``, ``hdfs://``): both go through :mod:`pyarrow.fs`, the same layer
Ray Train uses for checkpoints, so a resumed job on another node finds what the first one wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fs_dir(storage_path: str, name: str) -> tuple[Any, str]:
    """The folder of run ``name``.

    ``name`` must be one path component (:func:`ms2l_ray.names.check_name`), so a ``--name ../../x`` can neither
    plant nor read a record outside the storage folder.
    """
    import pyarrow.fs as pafs

    from ms2l_ray.names import check_name

    check_name("run name", name)

    if "://" in storage_path:
        fs, root = pafs.FileSystem.from_uri(storage_path)
        return fs, f"{root.rstrip('/')}/{name}"
    return pafs.LocalFileSystem(), str(Path(storage_path).resolve() / name)


def _fs_path(storage_path: str, name: str, filename: str) -> tuple[Any, str]:
    """Where a record lives (in the folder of run ``name``)."""
    fs, folder = _fs_dir(storage_path, name)
    return fs, f"{folder}/{filename}"


def run_folder(storage_path: str, name: str) -> str | None:
    """``<storage>/<name>`` when something is there (a record, Ray Train's state and checkpoints), else None.

    Why: Ray Train restores a run's latest checkpoint by name, so a new job under a used name would quietly
    continue the old one; commands that start a job ask this first.
    """
    import pyarrow.fs as pafs

    fs, folder = _fs_dir(storage_path, name)
    if fs.get_file_info(folder).type == pafs.FileType.NotFound:
        return None
    return storage_path.rstrip("/") + "/" + name if "://" in storage_path else folder


def remove_run_folder(storage_path: str, name: str) -> None:
    """Delete ``<storage>/<name>`` (records, Train state, checkpoints): a new job of that name starts afresh."""
    import pyarrow.fs as pafs

    fs, folder = _fs_dir(storage_path, name)
    if "://" not in storage_path:  # local: a symlink or file there goes, never what a link points to
        import shutil

        local = Path(folder)
        if local.is_symlink() or local.is_file():
            local.unlink()
        elif local.is_dir():
            shutil.rmtree(local)
        return
    if fs.get_file_info(folder).type != pafs.FileType.NotFound:
        fs.delete_dir(folder)


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
