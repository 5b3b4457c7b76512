"""The trust boundary of SECURITY.md, without Ray: Ray's token file, encoder files that load without
unpickling, damaged encoders, run names that would resume another run, tracking URIs that mean the user's folder.

(The local Ray instance's sockets and token checks are in ``test_distributed.py``, on the one Ray start of that
module; the MLflow server recipe's bind guard is in ``test_cluster_files.py``.)
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow_helpers import client

from ms2l_ray.cli.main import main
from ms2l_ray.config import load_config, to_dict
from ms2l_ray.jobs.cluster import private_token_file
from ms2l_ray.model.artifact import load_pretrained, save_pretrained
from ms2l_ray.model.ms2l import MS2L, build_ms2l


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


# ------------------------------------------------------------------------------ encoders without unpickling
ENC_CFG = load_config("smoke")
NUM_FEATURES = 150


@pytest.fixture(scope="module")
def model() -> MS2L:
    torch.manual_seed(0)
    return build_ms2l(ENC_CFG.model, ENC_CFG.tasks, NUM_FEATURES)


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> bytes:
    from safetensors.torch import save

    return save(state, metadata=metadata)


class _MakesDir:
    """A pickle that, if anything unpickled it, would create the folder named in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def test_encoder_is_written_as_safetensors_and_loads_back(tmp_path: Path, model: MS2L) -> None:
    weights = save_pretrained(tmp_path / "enc", model, ENC_CFG, NUM_FEATURES, extra={"note": "x"})
    assert weights == tmp_path / "enc" / "encoder.safetensors"
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["config.yaml", "encoder.safetensors"]
    blob = weights.read_bytes()
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])  # the format: a JSON header, raw tensors
    assert header["__metadata__"]["format"] == "2"
    assert json.loads(header["__metadata__"]["ms2l"])["num_features"] == NUM_FEATURES
    loaded, cfg = load_pretrained(tmp_path / "enc")
    assert cfg == ENC_CFG
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                 strict=True))


def test_an_encoder_pt_of_format_1_still_loads(tmp_path: Path, model: MS2L) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "encoder.pt").write_bytes(_torch_bytes(
        {"format": 1, "model": model.state_dict(), "config": to_dict(ENC_CFG), "num_features": NUM_FEATURES}))
    loaded, cfg = load_pretrained(tmp_path / "old")
    assert cfg == ENC_CFG
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                 strict=True))
    save_pretrained(tmp_path / "old", model, ENC_CFG, NUM_FEATURES)  # --force over it: one encoder left
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["config.yaml", "encoder.safetensors"]


def _damaged(model: MS2L, planted: Path) -> list[tuple[str, str, bytes, str]]:
    """(id, file name, bytes, reason in the error) for each way an encoder file can be unusable.

    (Weights whose names or shapes do not match the config are ``ms2l_ray.model.sizes``' cases.)
    """
    meta = json.dumps({"config": to_dict(ENC_CFG), "num_features": NUM_FEATURES})
    state = {k: v.clone() for k, v in model.state_dict().items()}
    good = _safetensors_bytes(state, {"format": "2", "ms2l": meta})
    legacy = _torch_bytes({"format": 1, "model": state, "config": to_dict(ENC_CFG), "num_features": NUM_FEATURES})
    unreadable = "not a readable encoder.pt: damaged, cut short or another format"
    bad_st = "not a readable safetensors file: damaged, cut short or another format"
    return [
        ("pt-empty", "encoder.pt", b"", "empty file"),
        ("pt-truncated", "encoder.pt", legacy[:len(legacy) // 2],
         f"{unreadable} (OSError: [Errno 22] Invalid argument)"),
        ("pt-garbage", "encoder.pt", b"hello world", f"{unreadable} (KeyError: 101)"),
        ("pt-code", "encoder.pt", _torch_bytes({"format": 1, "model": _MakesDir(planted)}),
         "holds Python objects other than tensors and plain values; refused: building them could run code from "
         "the file"),
        ("pt-no-model", "encoder.pt", _torch_bytes({"format": 1, "config": to_dict(ENC_CFG), "num_features": 150}),
         "field 'model' is not a dict of tensors"),
        ("pt-list", "encoder.pt", _torch_bytes([1, 2]), "not an ms2l encoder (a list, expected a dict)"),
        ("pt-format", "encoder.pt", _torch_bytes({"format": 7}),
         "not an ms2l encoder (field 'format' = 7, expected 1)"),
        ("st-empty", "encoder.safetensors", b"", "empty file"),
        ("st-truncated", "encoder.safetensors", good[:len(good) // 2],
         f"{bad_st} (SafetensorError: Error while deserializing header: incomplete metadata, file not fully covered)"),
        ("st-garbage", "encoder.safetensors", b"\xff" * 100,
         f"{bad_st} (SafetensorError: Error while deserializing header: header too large)"),
        ("st-no-format", "encoder.safetensors", _safetensors_bytes(state, None),
         "not an ms2l encoder (metadata 'format' = None, expected '2')"),
        ("st-bad-json", "encoder.safetensors", _safetensors_bytes(state, {"format": "2", "ms2l": "{x"}),
         "metadata 'ms2l' is not JSON (JSONDecodeError: Expecting property name enclosed in double quotes: line 1 "
         "column 2 (char 1))"),
        ("st-no-config", "encoder.safetensors", _safetensors_bytes(state, {"format": "2", "ms2l": "{}"}),
         "field 'config' is missing or not a mapping"),
        ("st-features", "encoder.safetensors", _safetensors_bytes(state, {"format": "2", "ms2l": json.dumps(
            {"config": to_dict(ENC_CFG), "num_features": "150"})}),
         "field 'num_features' = '150': expected a positive integer"),
    ]


DAMAGED_IDS = ["pt-empty", "pt-truncated", "pt-garbage", "pt-code", "pt-no-model", "pt-list", "pt-format", "st-empty",
               "st-truncated", "st-garbage", "st-no-format", "st-bad-json", "st-no-config", "st-features"]


@pytest.mark.parametrize("case", DAMAGED_IDS)
def test_a_damaged_encoder_folder_is_one_error_naming_the_file(case: str, tmp_path: Path, model: MS2L,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    planted = tmp_path / "planted"
    [(_, name, blob, reason)] = [c for c in _damaged(model, planted) if c[0] == case]
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / name).write_bytes(blob)
    code = main(["evaluate", "--engine", "local", "--encoder", str(enc), "--preset", "smoke"])
    assert (code, capsys.readouterr().err) == (
        1, f"ms2l evaluate: error: {enc}/{name}: {reason} (--debug shows the traceback)\n")
    assert not planted.exists()  # nothing in the file ran
    assert (enc / name).read_bytes() == blob and sorted(p.name for p in enc.iterdir()) == [name]


def test_a_damaged_encoder_from_runs_uri_names_the_uri(tmp_path: Path, sqlite_uri: str, model: MS2L,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    planted = tmp_path / "planted"
    cases = {c[0]: c for c in _damaged(model, planted)}
    c = client(sqlite_uri)
    exp = c.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    for case in ("pt-empty", "pt-code", "pt-no-model", "st-truncated"):
        _, name, blob, reason = cases[case]
        run = c.create_run(exp)
        (tmp_path / case).mkdir()
        (tmp_path / case / name).write_bytes(blob)
        c.log_artifact(run.info.run_id, str(tmp_path / case / name), "encoder")
        source = f"runs:/{run.info.run_id}/encoder"
        code = main(["evaluate", "--engine", "local", "--encoder", source, "--tracking-uri", sqlite_uri,
                     "--preset", "smoke"])
        err = capsys.readouterr().err  # MLflow's own store and download lines come first
        assert (code, err.splitlines()[-1]) == (
            1, f"ms2l evaluate: error: {source}/{name}: {reason} (--debug shows the traceback)")
        assert "weights_only" not in err and "Traceback" not in err
    assert not planted.exists()


# ------------------------------------------------------------------------- a used run name is not resumed
def test_pretrain_refuses_a_run_name_with_ray_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Ray Train restores ``<storage>/<name>``'s checkpoint: a second ``--name X`` is refused, before Ray starts."""
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "ray" / "X"
    old.mkdir(parents=True)
    (old / "checkpoint_manager_snapshot.json").write_text("{}")
    argv = ["pretrain", "--preset", "smoke", "--name", "X", "--out", "enc", "--storage-path", "ray", "--no-tracking"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"ms2l pretrain: error: --name X: a run of that name already exists ({old}) and Ray Train would continue "
        f"from its checkpoint; pass --resume X to continue it, --force to discard it and start again, or another "
        f"--name\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray"]  # no encoder folder, no mlflow.db
    assert (old / "checkpoint_manager_snapshot.json").read_text() == "{}"


def test_a_discarded_run_folder_is_removed_but_never_what_a_link_points_to(tmp_path: Path) -> None:
    from ms2l_ray.cli.train_cmds import check_new_run_name, discard_run
    from ms2l_ray.jobs.records import run_folder

    storage = tmp_path / "ray"
    (storage / "X" / "checkpoint_000001").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (storage / "L").symlink_to(outside)
    assert run_folder(str(storage), "X") == str(storage / "X") and run_folder(str(storage), "nope") is None
    assert check_new_run_name(str(storage), "X", force=True) is True
    assert check_new_run_name(str(storage), "nope", force=False) is False
    discard_run(str(storage), "X")
    discard_run(str(storage), "L")
    discard_run(str(storage), "nope")  # nothing there: nothing to do
    assert sorted(p.name for p in storage.iterdir()) == [] and (outside / "keep.txt").read_text() == "keep"


# ----------------------------------------------------------- a relative tracking store means the user's folder
def test_a_relative_local_tracking_store_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 logs from the Ray worker's own folder: ``sqlite:///mlflow.db`` must name the user's ``mlflow.db``."""
    from ms2l_ray.tracking.store import resolve_tracking_uri

    monkeypatch.chdir(tmp_path)
    cases = [
        ("sqlite:///mlflow.db", f"sqlite:///{tmp_path}/mlflow.db"),
        ("sqlite:///runs/m.db?timeout=5", f"sqlite:///{tmp_path}/runs/m.db?timeout=5"),
        ("sqlite:////srv/m.db", "sqlite:////srv/m.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("mlruns", f"{tmp_path}/mlruns"),
        ("/srv/mlruns", "/srv/mlruns"),
        ("file:///srv/mlruns", "file:///srv/mlruns"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("databricks", "databricks"),
    ]
    assert [resolve_tracking_uri(uri) for uri, _ in cases] == [want for _, want in cases]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path}/env.db"


def test_loopback_addresses_are_recognised() -> None:
    """A driver joining our loopback-only instance must connect on loopback (CI's resumed-search test hung)."""
    from ms2l_ray.jobs.cluster import is_loopback_address

    assert [is_loopback_address(a) for a in ("127.0.0.1:6379", "localhost:6379", "ray://127.0.0.1:10001",
                                             "[::1]:6379", "192.0.2.2:6379", "head.example:6379")] == [
        True, True, True, True, False, False]
