"""Job/ablation records through pyarrow.fs: the same bytes whether the storage is a folder or a URI."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import ABLATIONS

from ms2l_ray.cli.ablate_cmds import _setup
from ms2l_ray.cli.main import build_parser
from ms2l_ray.config import ConfigError
from ms2l_ray.jobs.records import read_record, write_record
from ms2l_ray.studies.ablation.runner import RECORD, read_ablation_record


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


def test_ablation_resume_asks_for_credentials_the_record_left_out(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``ms2l ablate --resume`` reads the recorded store; credentials come from the environment, never the file."""
    write_record(str(tmp_path), "grid-1", RECORD, {"name": "grid-1", "tracking_uri": "postgresql://***@db/mlflow",
                                                   "experiment": "ms2l"})
    args = build_parser().parse_args(["ablate", str(ABLATIONS / "smoke.yaml"), "--resume",
                                      "--name", "grid-1", "--storage-path", str(tmp_path)])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="credentials not recorded"):
        _setup(args)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://user:secret@db/mlflow")
    assert _setup(args)[2].uri == "postgresql://user:secret@db/mlflow"
