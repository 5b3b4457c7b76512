"""Job/ablation records through pyarrow.fs: the same bytes whether the storage is a folder or a URI."""

from __future__ import annotations

from pathlib import Path

from ms2l_ray.ablation.runner import RECORD, read_ablation_record
from ms2l_ray.distributed.records import read_record, write_record


def test_round_trip_local_folder_and_file_uri(tmp_path: Path) -> None:
    rec = {"name": "a", "parent_run_id": "r1", "nested": {"x": [1, 2]}}
    written = write_record(str(tmp_path), "job", "ms2l_job.json", rec)
    assert Path(written) == tmp_path.resolve() / "job" / "ms2l_job.json"
    assert read_record(str(tmp_path), "job", "ms2l_job.json") == rec
    # The URI spelling reaches the same file (what an s3:// storage path goes through).
    assert read_record(tmp_path.resolve().as_uri(), "job", "ms2l_job.json") == rec
    assert not list((tmp_path / "job").glob("*.tmp"))  # the temp file was moved into place


def test_missing_record_is_none(tmp_path: Path) -> None:
    assert read_record(str(tmp_path), "nope", "ms2l_job.json") is None
    assert read_ablation_record(tmp_path.as_uri(), "nope") is None


def test_ablation_record_written_under_uri_storage(tmp_path: Path) -> None:
    uri = tmp_path.resolve().as_uri()
    write_record(uri, "grid-1", RECORD, {"name": "grid-1", "tracking_uri": "sqlite:///m.db"})
    assert (tmp_path / "grid-1" / RECORD).is_file()  # not a local folder literally named "file:"
    assert read_ablation_record(uri, "grid-1") == {"name": "grid-1", "tracking_uri": "sqlite:///m.db"}
