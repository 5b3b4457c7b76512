"""The console of a running command (``ms2l_ray.console``): our lines on stdout, internals in the log file.

Ray's stream of worker lines is fed in the form Ray's driver hands it to its handler (a dict per batch);
the live-line mode is driven through a real pseudo-terminal. The whole-command check — a real ablation's
terminal output — is in ``tests/platform/test_ablation.py`` (``test_console_shows_our_lines_and_files_…``).
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import struct
import termios
import warnings
from pathlib import Path

from ms2l_ray import console
from ms2l_ray.console import Console, done_line, job_label, parse_mark, progress_line, session


def _batch(*lines: str, actor: str = "RayTrainWorker", pid: int = 41) -> dict[str, object]:
    return {"lines": list(lines), "pid": pid, "actor_name": actor, "is_err": False}


def test_marks_round_trip_and_labels_drop_the_uniqueness_stamp() -> None:
    assert parse_mark(progress_line("q-all-s0-20261202-003824", "[pretrain] epoch 1/2")) == (
        "q-all-s0-20261202-003824", "[pretrain] epoch 1/2")
    assert parse_mark(done_line("q-all-s0-20261202-003824-3")) == ("q-all-s0-20261202-003824-3", None)
    assert parse_mark("[data] builtin: 200 sequences") is None
    assert job_label("q-all-s0-20261202-003824") == "q-all-s0"
    assert job_label("q-all-s0-20261202-003824-e7297b") == "q-all-s0"  # names.unique_stamp's form


def test_plain_console_files_ray_lines_and_throttles_progress(monkeypatch: object) -> None:
    out, log = io.StringIO(), io.StringIO()
    con = Console(stream=out, log=log, live=False)
    con.ray_lines(_batch("[2026-12-02 E 5494] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher'",
                         actor="TrainController"))
    con.ray_lines(_batch(progress_line("smoke-all-s0-20261202-003824", "[pretrain] epoch 1/1 step 5/5 eta 0s")))
    con.say("[ablate] 1/4 cell=all seed=0: linear.val_top1=12.50")
    assert out.getvalue() == "[ablate] 1/4 cell=all seed=0: linear.val_top1=12.50\n"  # only our result line
    text = log.getvalue()
    assert "(TrainController pid=41) [2026-12-02 E 5494] core_worker.cc" in text
    assert "[progress] smoke-all-s0: [pretrain] epoch 1/1 step 5/5 eta 0s" in text
    console_module = console
    monkeypatch.setattr(console_module, "PLAIN_EVERY_S", 0.0)  # type: ignore[attr-defined]
    con.ray_lines(_batch(progress_line("smoke-all-s0-20261202-003824", "[linear] epoch 2/2 top1=40.0")))
    assert out.getvalue().endswith("  … smoke-all-s0: [linear] epoch 2/2 top1=40.0\n")  # a heartbeat, not a flood
    con.ray_lines(_batch(done_line("smoke-all-s0-20261202-003824")))
    assert not con._shown


def test_live_lines_on_a_terminal_keep_result_lines_intact() -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
    with os.fdopen(slave, "w", buffering=1, closefd=True) as term:
        assert term.isatty()
        con = Console(stream=term, log=io.StringIO(), live=True)
        con.progress("quick-contrastive-s1-20261202-003824", "[pretrain] epoch 3/24 loss=1.9 eta 310s")
        con.progress("quick-motion-s0-20261202-003824", "[linear] epoch 1/5 top1=41.0 eta 20s")
        assert len(con._bars) == 2  # one live line per running job
        con.say("[ablate] 1/4 cell=motion seed=0: linear.val_top1=41.00")
        con.finish("quick-motion-s0-")
        con.close()
        assert not con._bars
        drawn = b""
        os.set_blocking(master, False)
        try:
            while chunk := os.read(master, 65536):
                drawn += chunk
        except BlockingIOError:
            pass
    os.close(master)
    screen = drawn.decode(errors="replace")
    assert "quick-contrastive-s1: [pretrain] epoch 3/24 loss=1.9 eta 310s" in screen
    assert "[ablate] 1/4 cell=motion seed=0: linear.val_top1=41.00" in screen


def test_session_files_library_loggers_and_warnings_and_restores_them(tmp_path: Path) -> None:
    import mlflow  # noqa: F401 - configures its logger on import, as in a real command
    import ray  # noqa: F401

    before = list(logging.getLogger("mlflow").handlers)
    out = io.StringIO()
    with session(tmp_path / "out", stream=out) as con:
        logging.getLogger("mlflow.pytorch").warning("Saving pytorch model by Pickle or CloudPickle format")
        logging.getLogger("ray").info("Started a local Ray instance.")
        warnings.warn("a library's deprecation", UserWarning, stacklevel=1)
        console.say("[ablate] ours")
        assert con.log_path == tmp_path / "out" / "ms2l.log"
    assert out.getvalue() == (f"[ms2l] Ray and MLflow messages go to {tmp_path / 'out' / 'ms2l.log'} "
                              f"(--verbose shows them here)\n[ablate] ours\n")
    log = (tmp_path / "out" / "ms2l.log").read_text()
    for needle in ("Pickle or CloudPickle", "Started a local Ray instance", "a library's deprecation", "ours"):
        assert needle in log
    assert logging.getLogger("mlflow").handlers == before  # in-process callers get the libraries back


def test_verbose_session_leaves_the_libraries_alone(tmp_path: Path) -> None:
    before = list(logging.getLogger("ray").handlers)
    with session(tmp_path / "v", verbose=True, stream=io.StringIO()) as con:
        assert con.log is None and logging.getLogger("ray").handlers == before
    assert not (tmp_path / "v" / "ms2l.log").exists()
