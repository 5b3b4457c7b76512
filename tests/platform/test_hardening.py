"""Hardening (issue 14): nothing lost, nothing leaked, no name escapes its folder, no traceback for bad input.

Table-driven: every CLI case asserts the exit code, a message naming the file/field/value, no traceback on
stderr, and that what sat at the target before is byte-identical afterwards. Most CLI cases run through
``ms2l_ray.cli.main`` in this process (one torch import instead of one per case on a 2-core machine); the
entry point itself, ``--debug`` and the kill-during-write case run ``ms2l`` in real subprocesses.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow_helpers import client
from paths import ABLATIONS, EXPERIMENTS, SEARCH_SPACES, SHARED_DATA

from ms2l_ray.cli.errors import exit_code, message
from ms2l_ray.cli.main import absolute_args, build_parser, main
from ms2l_ray.config import ConfigError
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.names import NAME_PATTERN, absolute_path, check_name, unique_name
from ms2l_ray.redact import is_secret_key, redact_text, redact_uri, split_credentials
from ms2l_ray.tracking.store import TrackingError, check_reachable, health_request

UCLA = SHARED_DATA / "nw-ucla" / "all_sqe"
PKU = SHARED_DATA / "pku-mmd-samples"
MS2L = str(Path(sys.executable).with_name("ms2l"))


def snapshot(*paths: Path) -> dict[str, tuple[str, bytes | str | None]]:
    """What sits at each path: a file's bytes, a symlink's target, a directory's listing, or nothing."""
    out: dict[str, tuple[str, bytes | str | None]] = {}
    for p in paths:
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_dir():
            out[str(p)] = ("dir", "\n".join(sorted(x.name for x in p.iterdir())))
        elif p.exists():
            out[str(p)] = ("file", p.read_bytes())
        else:
            out[str(p)] = ("none", None)
    return out


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- data loss
@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with things a careless OUT could destroy (the tests run with it as cwd)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("precious notes\n")
    (tmp_path / "link.arrow").symlink_to("notes.txt")
    (tmp_path / "somedir").mkdir()
    np.savez(tmp_path / "NTU60_CS.npz", x_train=np.zeros((1, 2, 150), np.float32))
    (tmp_path / "NTU60_CS_link.npz").symlink_to("NTU60_CS.npz")
    st = tmp_path / "stgcn"
    st.mkdir()
    (st / "train_data.npy").write_bytes(b"not really npy")
    (st / "train_label.pkl").write_bytes(b"labels")
    (tmp_path / "ucla").symlink_to(UCLA)  # the real shared dataset, reached through a link
    return tmp_path


PREPARE_REFUSED = [  # (argv after `ms2l data prepare`, path that must stay unchanged, message)
    (["builtin", "-", "notes.txt"], "notes.txt",
     "out {d}/notes.txt: already exists (a file); pass --force to replace it"),
    (["builtin", "-", "link.arrow"], "link.arrow",
     "out {d}/link.arrow: already exists (a symlink); pass --force to replace it"),
    (["builtin", "-", "somedir", "--force"], "somedir",
     "out {d}/somedir: is a directory; a store is one file (e.g. {d}/somedir/dataset.arrow)"),
    (["ctrgcn", "NTU60_CS.npz", "NTU60_CS.npz"], "NTU60_CS.npz",
     "out {d}/NTU60_CS.npz: is the source {d}/NTU60_CS.npz (or holds it); the store would replace the dataset it "
     "is made from; choose another OUT"),
    (["ctrgcn", "NTU60_CS.npz", "NTU60_CS.npz", "--force"], "NTU60_CS.npz",
     "out {d}/NTU60_CS.npz: is the source {d}/NTU60_CS.npz (or holds it); the store would replace the dataset it "
     "is made from; choose another OUT"),
    (["ctrgcn", "NTU60_CS.npz", "NTU60_CS_link.npz", "--force"], "NTU60_CS_link.npz",
     "out {d}/NTU60_CS_link.npz: is the source {d}/NTU60_CS.npz (or holds it); the store would replace the "
     "dataset it is made from; choose another OUT"),
    (["ctrgcn", "somedir/../NTU60_CS.npz", "NTU60_CS.npz", "--force"], "NTU60_CS.npz",
     "out {d}/NTU60_CS.npz: is the source {d}/NTU60_CS.npz (or holds it); the store would replace the dataset it "
     "is made from; choose another OUT"),
    (["stgcn", "stgcn", "stgcn/train_label.pkl", "--force"], "stgcn/train_label.pkl",
     "out {d}/stgcn/train_label.pkl: an existing file in the source directory {d}/stgcn that is not a store; it "
     "may be part of the dataset; choose another OUT"),
    (["stgcn", "stgcn/train_data.npy", "stgcn/train_label.pkl", "--force"], "stgcn/train_label.pkl",
     "out {d}/stgcn/train_label.pkl: an existing file in the source directory {d}/stgcn that is not a store; it "
     "may be part of the dataset; choose another OUT"),
    (["stgcn", "stgcn", "stgcn", "--force"], "stgcn",
     "out {d}/stgcn: is the source {d}/stgcn (or holds it); the store would replace the dataset it is made from; "
     "choose another OUT"),
    (["ctrgcn", "stgcn/train_data.npy", ".", "--force"], "stgcn",
     "out {d}: is the source {d}/stgcn (or holds it); the store would replace the dataset it is made from; "
     "choose another OUT"),
    (["nw-ucla", "ucla", "ucla", "--force"], "ucla",
     "out {d}/ucla: is the source " + str(UCLA.resolve()) + " (or holds it); the store would replace the dataset "
     "it is made "
     "from; choose another OUT"),
    (["ntu", "somedir", "notes.txt", "--missing-list", "notes.txt", "--force"], "notes.txt",
     "out {d}/notes.txt: is the source {d}/notes.txt (or holds it); the store would replace the dataset it is made "
     "from; choose another OUT"),
    (["ntu", "notes.txt", "out.arrow"], "out.arrow", "ntu: {d}/notes.txt is not a directory of .skeleton files"),
    (["ctrgcn", "missing.npz", "out.arrow"], "out.arrow", "ctrgcn: source {d}/missing.npz does not exist"),
    (["builtin", "-", "out.arrow", "--resample", "0"], "out.arrow", "--resample must be >= 1, got 0"),
]


@pytest.mark.parametrize(("argv", "keep", "msg"), PREPARE_REFUSED, ids=[" ".join(c[0]) for c in PREPARE_REFUSED])
def test_prepare_refuses_to_destroy(files: Path, argv: list[str], keep: str, msg: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    watched = [files / keep, files / "notes.txt", files / "NTU60_CS.npz", files / "stgcn",
               files / "stgcn" / "train_label.pkl"]
    before = snapshot(*watched)
    listing = sorted(p.name for p in files.iterdir())
    code, err = run_cli(["data", "prepare", *argv], capsys)
    assert code == 2
    assert err == f"ms2l data prepare: error: {msg.format(d=files)}\n"
    assert "Traceback" not in err
    assert snapshot(*watched) == before
    assert sorted(p.name for p in files.iterdir()) == listing  # no temp file, no partial store


def test_prepare_real_data_then_refuses_to_replace_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pku.arrow"
    assert main(["data", "prepare", "pku-mmd", str(PKU), str(out), "--resample", "8"]) == 0
    assert "wrote 24 sequences" in capsys.readouterr().out
    before = out.read_bytes()
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    code, err = run_cli(["data", "prepare", "pku-mmd", str(PKU), str(out)], capsys)
    assert (code, err) == (2, f"ms2l data prepare: error: out {out}: already exists (a file); pass --force to "
                              f"replace it\n")
    assert out.read_bytes() == before
    # a forced prepare that fails on bad data leaves the previous store as it was (exit 1: a data error)
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    code, err = run_cli(["data", "prepare", "ctrgcn", str(tmp_path / "garbage.npz"), str(out), "--force"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err == (f"ms2l data prepare: error: {tmp_path}/garbage.npz: field 'npz' = 'BadZipFile': File is not a zip "
                   f"file (--debug shows the traceback)\n")
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["garbage.npz", "pku.arrow"]
    # --force replaces our own store
    assert main(["data", "prepare", "pku-mmd", str(PKU), str(out), "--force", "--resample", "8"]) == 0
    assert out.read_bytes() == before  # same input, same bytes: the conversion is deterministic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_force_replaces_a_symlink_not_its_target(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", "builtin", "-", "link.arrow", "--force", "--num-sequences", "12"]) == 0
    assert not (files / "link.arrow").is_symlink() and (files / "link.arrow").stat().st_size > 1000
    assert (files / "notes.txt").read_text() == "precious notes\n"


def _fake_temps(folder: Path, name: str, pid: int) -> list[Path]:
    made = [folder / f".{name}.{pid}.abcd1234.frames.tmp", folder / f".{name}.{pid}.abcd1234.tmp"]
    for p in made:
        p.write_bytes(b"\0" * 64)
    return made


def test_leftover_temp_files_are_removed_or_reported(tmp_path: Path) -> None:
    from ms2l_ray.data.prepare import prepare
    from ms2l_ray.data.store import leftover_temp_files

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        dead_pid = int(dead.stdout)
        stale = _fake_temps(tmp_path, "s.arrow", dead_pid)
        legacy = tmp_path / ".s.arrow.q7x_2abc.tmp"  # an older version's pid-less name
        legacy.write_bytes(b"x")
        live = _fake_temps(tmp_path, "s.arrow", sleeper.pid)
        other = _fake_temps(tmp_path, "other.arrow", dead_pid)  # another store's: not ours to touch
        assert leftover_temp_files(tmp_path / "s.arrow") == (sorted([*stale, legacy]), sorted(live))
        report = prepare("builtin", "-", tmp_path / "s.arrow", num_sequences=12)
        assert report.removed_temps == sorted(p.name for p in [*stale, legacy])
        assert report.live_temps == sorted(p.name for p in live)
        assert "removed 3 leftover temporary files of an interrupted prepare" in report.summary()
        assert "kept 2 temporary files of a prepare of the same store that is still running" in report.summary()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.arrow", *(p.name for p in [*live, *other])])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_killed_prepare_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "big.arrow"
    proc = subprocess.Popen([MS2L, "data", "prepare", "builtin", "-", str(out), "--num-sequences", "20000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not list(tmp_path.glob(".big.arrow.*.tmp")):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no temporary file appeared"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    leftovers = sorted(p.name for p in tmp_path.glob(".big.arrow.*.tmp"))
    assert leftovers and not out.exists()  # killed: no half-written store, but the temp files stay behind
    done = subprocess.run([MS2L, "data", "prepare", "builtin", "-", str(out), "--num-sequences", "12"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"removed {len(leftovers)} leftover temporary files of an interrupted prepare: " \
           + ", ".join(leftovers) in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.arrow"]
    assert "Traceback" not in done.stderr


def test_entry_point_exit_codes_and_debug(files: Path) -> None:
    before = snapshot(files / "notes.txt")
    done = subprocess.run([MS2L, "data", "prepare", "builtin", "-", "notes.txt"], capture_output=True, text=True,
                          cwd=files, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == f"ms2l data prepare: error: out {files}/notes.txt: already exists (a file); pass --force " \
                          f"to replace it\n"
    assert snapshot(files / "notes.txt") == before
    for argv in (["--debug", "data", "info", "missing.arrow"], ["data", "info", "missing.arrow", "--debug"]):
        dbg = subprocess.run([MS2L, *argv], capture_output=True, text=True, cwd=files, timeout=300)
        assert dbg.returncode == 2
        assert "Traceback (most recent call last)" in dbg.stderr and "FileNotFoundError" in dbg.stderr
        assert dbg.stderr.endswith("ms2l data info: error: store missing.arrow does not exist\n")


# -------------------------------------------------------------------------------- pretrain --out, names
NAME_CASES = [  # (value, accepted)
    ("pretrain-20260101-000000-ab12cd", True), ("a", True), ("a.b_c-d", True), ("-x", True), ("x" * 100, True),
    ("..", False), (".", False), (".hidden", False), ("a/b", False), ("../../x", False), ("a\\b", False),
    ("", False), ("x" * 101, False), ("a b", False), ("é", False),
]


@pytest.mark.parametrize(("value", "ok"), NAME_CASES, ids=[repr(v[:12]) for v, _ in NAME_CASES])
def test_one_name_rule(value: str, ok: bool) -> None:
    assert bool(NAME_PATTERN.fullmatch(value)) is ok  # the regex form (grid cells) agrees with the function
    if ok:
        assert check_name("--name", value) == value
        return
    with pytest.raises(ConfigError) as err:
        check_name("--name", value)
    text = str(err.value)
    assert text.startswith("--name: ")
    if value == "":
        assert text == "--name: must not be empty"
    elif len(value) > 100:
        assert text == f"--name: at most 100 characters, got {len(value)} ('xxxxxxxxxxxxxxxxxxxx'...)"
    else:
        assert text == (f"--name: letters, digits, '_', '.', '-' only, not starting with '.', and no path "
                        f"separators, got {value!r}")


def test_default_names_are_unique_per_launch() -> None:
    names = {unique_name("pretrain") for _ in range(200)}
    assert len(names) == 200
    assert all(NAME_PATTERN.fullmatch(n) and n.startswith("pretrain-") and len(n) == len("pretrain-") + 22
               for n in names)
    assert len(unique_name("x" * 100)) == 100  # a long grid name is cut, never over the bound


def test_records_refuse_names_that_leave_the_storage_folder(tmp_path: Path) -> None:
    from ms2l_ray.jobs.records import read_record, write_record
    from ms2l_ray.studies.search.tuner import search_paths

    planted = tmp_path / "x" / "ms2l_ablation.json"
    planted.parent.mkdir()
    planted.write_text('{"out_dir": "/etc"}')
    storage = str(tmp_path / "storage" / "inner")
    for name in ("../../x", "..", "a/b"):
        with pytest.raises(ConfigError, match="^run name: "):
            read_record(storage, name, "ms2l_ablation.json")
        with pytest.raises(ConfigError, match="^run name: "):
            write_record(storage, name, "ms2l_job.json", {"a": 1})
        with pytest.raises(ConfigError, match="^search name: "):
            search_paths(storage, name)
    assert not (tmp_path / "storage").exists() and planted.read_text() == '{"out_dir": "/etc"}'


NAME_REFUSED = [  # (argv, message)
    (["pretrain", "--preset", "smoke", "--out", "enc2", "--name", "..", "--no-tracking"], "--name"),
    (["pretrain", "--preset", "smoke", "--out", "enc2", "--name", "a/b", "--no-tracking"], "--name"),
    (["pretrain", "--preset", "smoke", "--resume", "../../x", "--no-tracking"], "--resume"),
    (["evaluate", "--preset", "smoke", "--name", ".hidden", "--no-tracking"], "--name"),
    (["ablate", "grid.yaml", "--name", "../../x"], "--name"),
    (["tune", "space.yaml", "--name", "..", "--no-tracking"], "--name"),
]


def _grid_and_space(files: Path) -> list[str]:
    """A grid and a search space in the working folder; the folder's listing, which a refused command keeps."""
    (files / "grid.yaml").write_bytes((ABLATIONS / "quick.yaml").read_bytes())
    (files / "space.yaml").write_bytes((SEARCH_SPACES / "quick.yaml").read_bytes())
    return sorted(p.name for p in files.iterdir())


@pytest.mark.parametrize(("argv", "field"), NAME_REFUSED, ids=[" ".join(a[:1] + a[-3:]) for a, _ in NAME_REFUSED])
def test_cli_refuses_bad_names_before_any_work(files: Path, argv: list[str], field: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    listing = _grid_and_space(files)
    code, err = run_cli(argv, capsys)
    value = argv[argv.index(field) + 1]
    assert code == 2
    assert err == (f"ms2l {argv[0]}: error: {field}: letters, digits, '_', '.', '-' only, not starting with '.', "
                   f"and no path separators, got {value!r}\n")
    assert sorted(p.name for p in files.iterdir()) == listing  # no ray_results, mlflow.db, outputs/


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_pretrain_refuses_to_overwrite_an_encoder(files: Path, engine: str, capsys: pytest.CaptureFixture[str]) -> None:
    enc = files / "enc"
    enc.mkdir()
    (enc / "encoder.pt").write_bytes(b"the only copy of last week's encoder")
    (enc / "config.yaml").write_text("seed: 3\n")
    before = snapshot(enc / "encoder.pt", enc / "config.yaml", enc)
    code, err = run_cli(["pretrain", "--preset", "smoke", "--engine", engine, "--out", "enc", "--no-tracking"], capsys)
    assert code == 2
    assert err == (f"ms2l pretrain: error: --out {enc}: already holds encoder.pt; pass --force to overwrite it, or "
                   f"another --out\n")
    assert snapshot(enc / "encoder.pt", enc / "config.yaml", enc) == before
    code, err = run_cli(["pretrain", "--preset", "smoke", "--engine", engine, "--out", "notes.txt",
                         "--no-tracking"], capsys)
    assert code == 2
    assert err == (f"ms2l pretrain: error: --out {files}/notes.txt: is a file, not a directory (the encoder is "
                   f"written as {files}/notes.txt/encoder.safetensors)\n")
    assert (files / "notes.txt").read_text() == "precious notes\n"


# ------------------------------------------------------------------------------------------------ secrets
REDACT_CASES = [
    ("https://alice:s3cret@mlflow.example.com/x", "https://***@mlflow.example.com/x"),
    ("https://ghp_token@github.com/o/r", "https://***@github.com/o/r"),
    ("postgresql://u:p@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("https://u:p%40ss@h/?token=abc&page=2", "https://***@h/?token=***&page=2"),
    ("https://h/x?password=pw&user=bob", "https://h/x?password=***&user=bob"),
    ("https://h/x?api_key=k1&key=k2&sig=s&secret=t#frag", "https://h/x?api_key=***&key=***&sig=***&secret=***#frag"),
    ("s3://b/o?X-Amz-Signature=zz&X-Amz-Credential=cc&versionId=3",
     "s3://b/o?X-Amz-Signature=***&X-Amz-Credential=***&versionId=3"),
    ("https://h/x?token=", "https://h/x?token="),  # nothing to hide
    ("sqlite:////tmp/m.db", "sqlite:////tmp/m.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("/plain/path", "/plain/path"),
]


@pytest.mark.parametrize(("uri", "want"), REDACT_CASES, ids=[u for u, _ in REDACT_CASES])
def test_redact_uri(uri: str, want: str) -> None:
    assert redact_uri(uri) == want
    assert redact_uri(want) == want  # idempotent


def test_redact_text_and_credentials_split() -> None:
    assert redact_text("dataset s3://key:secret@bucket/x, server http://h:5000 ok") == \
        "dataset s3://***@bucket/x, server http://h:5000 ok"
    assert split_credentials("https://u%40x:p%3Aw@host:5000/m?q=1") == ("https://host:5000/m?q=1", "u@x", "p:w")
    assert split_credentials("https://tok@host") == ("https://host", "tok", None)
    assert split_credentials("http://host:5000") == ("http://host:5000", None, None)


def test_one_secret_key_detector() -> None:
    from ms2l_ray.tracking.runs import mask_secrets
    from tools import check_cluster

    assert check_cluster.is_secret_key is is_secret_key
    params = {"db_password": "pw", "PGPASSWORD": "pw", "apiKey": "k", "data.dataset": "s3://key:secret@bucket/x",
              "tags.encoder": "https://u:p@h/e?token=t", "RAY_AUTH_MODE": "token", "tasks.temperature": 0.9,
              "author": "me", "api_key": ""}
    assert mask_secrets(params) == {
        "db_password": "***", "PGPASSWORD": "***", "apiKey": "***", "data.dataset": "s3://***@bucket/x",
        "tags.encoder": "https://***@h/e?token=***", "RAY_AUTH_MODE": "token", "tasks.temperature": 0.9,
        "author": "me", "api_key": ""}


def test_logged_params_and_tags_carry_no_credentials(sqlite_uri: str) -> None:
    from ms2l_ray.tracking.runs import start_run

    run = start_run(sqlite_uri, "hardening", "r", tags={"encoder": "s3://AKIAKEY:topsecret@bucket/enc"})
    run.log_params({"data.dataset": "s3://AKIAKEY:topsecret@bucket/ucla.arrow", "db_token": "t0k",
                    "model.hidden_size": 128})
    run.set_tags({"tracking_uri": "https://u:pw@mlflow.example/x?token=abc"})
    got = client(sqlite_uri).get_run(run.run_id).data
    assert got.params == {"data.dataset": "s3://***@bucket/ucla.arrow", "db_token": "***", "model.hidden_size": "128"}
    assert got.tags["encoder"] == "s3://***@bucket/enc"
    assert got.tags["tracking_uri"] == "https://***@mlflow.example/x?token=***"
    assert not any("topsecret" in v or "pw@" in v or "t0k" in v for v in [*got.params.values(), *got.tags.values()])


class _BasicAuthHealth(http.server.BaseHTTPRequestHandler):
    """``/health`` (under an optional prefix) answers 200 only with ``Authorization: Basic alice:s3cr:t``."""

    expected = "Basic " + base64.b64encode(b"alice:s3cr:t").decode()
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append((self.path, self.headers.get("Authorization")))
        ok = self.path.partition("?")[0] in ("/health", "/mlflow/health", "/api/2.0/mlflow/experiments/search",
                                             "/mlflow/api/2.0/mlflow/experiments/search") \
            and self.headers.get("Authorization") == self.expected
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"no")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def auth_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BasicAuthHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _BasicAuthHealth.seen.clear()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_health_probe_sends_userinfo_as_basic_auth(auth_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    port = auth_server
    check_reachable(f"http://alice:s3cr%3At@127.0.0.1:{port}")  # passes: credentials went into the header
    check_reachable(f"http://alice:s3cr%3At@127.0.0.1:{port}/mlflow/")
    probe = "/api/2.0/mlflow/experiments/search?max_results=1"  # after /health: the credentials themselves
    assert [p for p, _ in _BasicAuthHealth.seen] == ["/health", probe, "/mlflow/health", "/mlflow" + probe]
    assert health_request(f"http://alice:pw@127.0.0.1:{port}/x").full_url == f"http://127.0.0.1:{port}/x/health"
    cases = [
        (f"http://alice:wrong@127.0.0.1:{port}",
         f"MLflow tracking server http://***@127.0.0.1:{port} answered 401 on /health (check the credentials in the "
         f"URI or MLFLOW_TRACKING_USERNAME/PASSWORD)"),
        (f"http://127.0.0.1:{port}",
         f"MLflow tracking server http://127.0.0.1:{port} answered 401 on /health (check the credentials in the URI "
         f"or MLFLOW_TRACKING_USERNAME/PASSWORD)"),
    ]
    for uri, want in cases:
        with pytest.raises(TrackingError) as err:
            check_reachable(uri)
        assert str(err.value) == want and "wrong" not in str(err.value)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cr:t")
    check_reachable(f"http://127.0.0.1:{port}")  # the environment's credentials, as MLflow itself uses them


def test_tracking_errors_never_echo_credentials(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cases = [
        (f"http://bob:hunter2@127.0.0.1:{port}/x?token=tk",
         f"ms2l pretrain: error: MLflow tracking server http://***@127.0.0.1:{port}/x?token=*** is unreachable "
         f"(<urlopen error [Errno 111] Connection refused>); start it or pass another --tracking-uri / "
         f"MLFLOW_TRACKING_URI\n"),
        ("gopher://bob:hunter2@h/x", "ms2l pretrain: error: unsupported tracking URI 'gopher://***@h/x'\n"),
        (f"sqlite:///{files}/nope/m.db?password=hunter2",
         f"ms2l pretrain: error: tracking URI sqlite:///{files}/nope/m.db?password=***: directory {files}/nope does "
         f"not exist\n"),
    ]
    for uri, want in cases:
        code, err = run_cli(["pretrain", "--preset", "smoke", "--out", "enc3", "--tracking-uri", uri], capsys)
        assert (code, err) == (2, want)
        assert "hunter2" not in err and "=tk" not in err
    assert not (files / "enc3").exists() and not (files / "ray_results").exists()


# ---------------------------------------------------------------------------------------- relative paths
def test_absolute_path_rule(files: Path) -> None:
    assert [absolute_path(v) for v in ("builtin", "random", "-", "s3://b/x", "runs:/abc/encoder", "models:/m/1",
                                        "file:///x")] == ["builtin", "random", "-", "s3://b/x", "runs:/abc/encoder",
                                                          "models:/m/1", "file:///x"]
    assert absolute_path("store.arrow") == f"{files}/store.arrow"
    assert absolute_path("link.arrow") == f"{files}/link.arrow"  # a symlink stays itself (an output replaces it)
    assert absolute_path("~/x") == str(Path.home() / "x")
    assert absolute_path(None) is None


PATH_ARGS = [  # (argv, {attribute: expected value, with {d} = the working folder})
    (["pretrain", "--dataset", "store.arrow", "--out", "enc", "--config", "c.yaml", "--storage-path", "ray",
      "--json", "m.json"],
     {"dataset": "{d}/store.arrow", "out": Path("{d}/enc"), "config": Path("{d}/c.yaml"), "storage_path": "{d}/ray",
      "json_out": Path("{d}/m.json")}),
    (["pretrain", "--dataset", "builtin", "--storage-path", "s3://bucket/ray"],
     {"dataset": "builtin", "storage_path": "s3://bucket/ray"}),
    (["evaluate", "--encoder", "enc", "--dataset", "../up.arrow"],
     {"encoder": "{d}/enc", "dataset": "{d}/../up.arrow"}),
    (["evaluate", "--encoder", "runs:/0123/encoder"], {"encoder": "runs:/0123/encoder"}),
    (["evaluate", "--encoder", "random"], {"encoder": "random"}),
    (["run", "exp.yaml", "--dataset", "s.arrow", "--out", "o"],
     {"experiment_file": Path("{d}/exp.yaml"), "dataset": "{d}/s.arrow", "out": Path("{d}/o")}),
    (["ablate", "g.yaml", "--dataset", "s.arrow", "--out", "o", "--storage-path", "r"],
     {"grid": Path("{d}/g.yaml"), "dataset": "{d}/s.arrow", "out": Path("{d}/o"), "storage_path": "{d}/r"}),
    (["tune", "sp.yaml", "--dataset", "s.arrow", "--storage-path", "r"],
     {"space": Path("{d}/sp.yaml"), "dataset": "{d}/s.arrow", "storage_path": "{d}/r"}),
    (["rerun", "abc", "--out", "o"], {"out": Path("{d}/o")}),
    (["data", "prepare", "ntu", "raw", "o.arrow"], {"source": "{d}/raw", "out": "{d}/o.arrow"}),
    (["data", "prepare", "builtin", "-", "o.arrow"], {"source": "-", "out": "{d}/o.arrow"}),
]


@pytest.mark.parametrize(("argv", "want"), PATH_ARGS, ids=[" ".join(a[:3]) for a, _ in PATH_ARGS])
def test_every_command_makes_user_paths_absolute(files: Path, argv: list[str], want: dict[str, Any]) -> None:
    args = absolute_args(build_parser().parse_args(argv))
    for attr, value in want.items():
        expected = type(value)(str(value).format(d=files))
        assert getattr(args, attr) == expected, attr


def test_dataset_from_set_config_grid_and_space_is_made_absolute(files: Path) -> None:
    from ms2l_ray.cli.common import absolute_dataset_delta, resolve_config

    (files / "c.yaml").write_text("data:\n  dataset: fromfile.arrow\n")
    args = absolute_args(build_parser().parse_args(["pretrain", "--config", "c.yaml"]))
    assert resolve_config(args).data.dataset == f"{files}/fromfile.arrow"
    args = absolute_args(build_parser().parse_args(["pretrain", "--set", "data.dataset=viaset.arrow"]))
    assert resolve_config(args).data.dataset == f"{files}/viaset.arrow"
    args = absolute_args(build_parser().parse_args(["pretrain"]))
    assert resolve_config(args).data.dataset == "builtin"
    assert absolute_dataset_delta({"data": {"dataset": "g.arrow"}, "seed": 1}) == \
        {"data": {"dataset": f"{files}/g.arrow"}, "seed": 1}
    assert absolute_dataset_delta({"data": {"dataset": "s3://b/g.arrow"}}) == {"data": {"dataset": "s3://b/g.arrow"}}

    from ms2l_ray.cli.search_cmds import _extra

    ns = argparse.Namespace(overrides=["data.dataset=t.arrow"], dataset=None, seed=None)
    assert _extra(ns) == {"data": {"dataset": f"{files}/t.arrow"}}


# --------------------------------------------------------------------------------------- exit-code policy
class _RemoteWrapper(Exception):
    """Stands in for ``ray.exceptions.RayTaskError``: its text is a remote traceback, ``.cause`` the error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("ray::train_fn() (pid=1)\nTraceback (most recent call last):\n  File x\n" + str(cause))
        self.cause = cause


_RemoteWrapper.__module__ = "ray.exceptions"

EXIT_CASES: list[tuple[BaseException, int, str]] = [
    (ConfigError("tasks.temperature: must be > 0"), 2, "tasks.temperature: must be > 0"),
    (TrackingError("unsupported tracking URI 'x'"), 2, "unsupported tracking URI 'x'"),
    (FileNotFoundError("store s does not exist"), 2, "store s does not exist"),
    (ValueError("--workers must be >= 1, got 0"), 2, "--workers must be >= 1, got 0"),
    (DataFormatError("a.skeleton", "joint count", 24, "expected 25", line=3), 1,
     "a.skeleton:3: field 'joint count' = 24: expected 25"),
    (RuntimeError("loss is NaN at epoch 1"), 1, "RuntimeError: loss is NaN at epoch 1"),
    (OSError("No space left on device"), 1, "OSError: No space left on device"),
    (_RemoteWrapper(FileNotFoundError("data.dataset: store /x does not exist")), 2,
     "data.dataset: store /x does not exist"),
    (_RemoteWrapper(RuntimeError("boom")), 1, "RuntimeError: boom"),
    (RuntimeError("server https://u:pw@h/x failed"), 1, "RuntimeError: server https://***@h/x failed"),
    (KeyboardInterrupt(), 130, "KeyboardInterrupt"),
]


@pytest.mark.parametrize(("exc", "code", "text"), EXIT_CASES, ids=[type(e).__name__ for e, _, _ in EXIT_CASES])
def test_exit_code_policy(exc: BaseException, code: int, text: str) -> None:
    assert exit_code(exc) == code
    assert message(exc) == text
    assert "Traceback" not in message(exc)


def test_report_of_an_experiment_named_dotdot_stays_in_reports(tmp_path: Path, sqlite_uri: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    c = client(sqlite_uri)
    run = c.create_run(c.create_experiment(".."), run_name="x", tags={"kind": "pretrain"})
    c.set_terminated(run.info.run_id)
    capsys.readouterr()  # MLflow's own log lines from creating the store
    listing = sorted(p.name for p in tmp_path.parent.iterdir())
    code, err = run_cli(["report", "..", "--tracking-uri", sqlite_uri, "--no-attach"], capsys)
    assert (code, err) == (2, "ms2l report: error: report folder reports/<target> (choose another with --out): "
                              "letters, digits, '_', '.', '-' only, not starting with '.', and no path separators, "
                              "got '..'\n")
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == listing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_resume_needs_the_credentials_a_redacted_query_left_out() -> None:
    from ms2l_ray.tracking.store import restore_uri

    full = "https://mlflow.example/x?token=abc"
    recorded = redact_uri(full)
    assert recorded == "https://mlflow.example/x?token=***"
    assert restore_uri(recorded, full, "job j") == full
    with pytest.raises(ConfigError, match=r"job j uses https://mlflow.example/x\?token=\*\*\* \(credentials not"):
        restore_uri(recorded, None, "job j")


def test_run_refuses_an_out_whose_pretrain_encoder_exists(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = sorted(EXPERIMENTS.glob("*.yaml"))[0]
    (files / "o" / "pretrain").mkdir(parents=True)
    (files / "o" / "pretrain" / "encoder.pt").write_bytes(b"keep me")
    code, err = run_cli(["run", str(experiment), "--out", "o", "--no-tracking"], capsys)
    assert (code, err) == (2, f"ms2l run: error: --out {files}/o/pretrain: already holds encoder.pt; pass --force to "
                              f"overwrite it, or another --out\n")
    assert (files / "o" / "pretrain" / "encoder.pt").read_bytes() == b"keep me"
    assert not (files / "ray_results").exists()


BUDGET_REFUSED = [  # (argv, the error after "ms2l <command>: error: ")
    (["tune", "space.yaml", "--time-budget", "2x", "--no-tracking"],
     "--time-budget '2x': expected a duration such as 90s, 45m, 2h or 1h30m"),
    (["tune", "space.yaml", "--time-budget", "0", "--no-tracking"],
     "--time-budget '0': must be more than 0 s and at most 366 days"),
    (["tune", "space.yaml", "--num-samples", "3", "--max-trials", "4", "--no-tracking"],
     "--num-samples 3 and --max-trials 4: give one (they set the same trial count)"),
    (["tune", "space.yaml", "--max-trials", "0", "--no-tracking"], "--max-trials/--num-samples must be >= 1, got 0"),
    (["ablate", "grid.yaml", "--time-budget", "1h1h"],
     "--time-budget '1h1h': expected a duration such as 90s, 45m, 2h or 1h30m"),
]


@pytest.mark.parametrize(("argv", "message"), BUDGET_REFUSED, ids=[" ".join(a[:1] + a[2:4]) for a, _ in BUDGET_REFUSED])
def test_cli_refuses_bad_budgets_before_any_work(files: Path, argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    listing = _grid_and_space(files)
    code, err = run_cli(argv, capsys)
    assert (code, err) == (2, f"ms2l {argv[0]}: error: {message}\n")
    assert sorted(p.name for p in files.iterdir()) == listing  # no ray_results, mlflow.db, outputs/
