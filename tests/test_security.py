"""The trust boundary of SECURITY.md, without Ray: Ray's token file, encoder files that load without
unpickling, damaged encoders, run names that would resume another run, tracking URIs that mean the user's folder.

(The local Ray instance's sockets and token checks are in ``test_distributed.py``, on the one Ray start of that
module; the MLflow server recipe's bind guard is in ``test_cluster_files.py``.)
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ms2l_ray.distributed.cluster import private_token_file


@pytest.fixture
def no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_token_env")
def test_ray_token_file_is_created_private(tmp_path: Path) -> None:
    path = private_token_file(tmp_path)
    assert path == tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0  # Ray's format: 256 bits as hex
    assert private_token_file(tmp_path) == path and path.read_text() == token  # an existing token is kept


@pytest.mark.usefixtures("no_token_env")
def test_ray_token_file_readable_by_others_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("shared")
    path.chmod(0o644)
    assert private_token_file(tmp_path) == path
    assert path.read_text() == "shared" and stat.S_IMODE(path.stat().st_mode) == 0o644  # not ours to change
    assert capsys.readouterr().err == (f"warning: Ray's token file {path} is readable by other users; "
                                       f"`chmod 600 {path}` keeps them off this machine's Ray instance\n")


def test_ray_token_the_user_supplies_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "mine"))
    assert private_token_file(tmp_path) is None
    assert not (tmp_path / ".ray").exists()
