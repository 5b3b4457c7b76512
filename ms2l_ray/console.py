"""The terminal a person reads while jobs run: our lines on stdout, Ray's and MLflow's internals in a log file.

Why: a run's terminal used to interleave Ray's worker prefixes, controller error lines and MLflow warnings
with the few lines that say how the study is going, so progress could not be told from trouble. Here

* Train workers mark their progress lines (:func:`progress_line`); the driver picks them out of Ray's log
  stream and shows one live line per running job (a ``tqdm`` line when stdout is a terminal, a plain
  line at most every :data:`PLAIN_EVERY_S` seconds per job when it is not: CI, ``ray job submit`` logs);
* everything else Ray streams from workers, and the ``ray``/``mlflow``/``alembic``/``optuna`` loggers and
  Python warnings of this process, go to ``<output folder>/ms2l.log``, whose path is printed once;
* ``--verbose`` leaves Ray's and MLflow's own printing alone (internals back on the terminal).

Result lines (one per finished cell-seed, trial or job) go through :func:`say`, which keeps live lines intact.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

LOG_FILE = "ms2l.log"
PLAIN_EVERY_S = 30.0
MARK = "@ms2l "  # a worker line "@ms2l <job> | <text>" is progress of <job>; "@ms2l <job> done" ends its line
DONE = "done"
INTERNAL_LOGGERS = ("ray", "mlflow", "alembic", "optuna", "py.warnings", "urllib3", "filelock", "torch")
_STAMP = re.compile(r"-\d{8}-\d{6}(-[0-9a-f]+)?$")  # names.unique_stamp's suffix: Ray needs it, people do not


def progress_line(job: str, text: str) -> str:
    """The line a worker prints for ``job``'s progress (see :data:`MARK`)."""
    return f"{MARK}{job} | {text}"


def done_line(job: str) -> str:
    """The line a worker prints when ``job`` ends: its live line goes away."""
    return f"{MARK}{job} {DONE}"


def job_label(ray_name: str) -> str:
    """A Ray Train run name as people read it: without the uniqueness timestamp."""
    return _STAMP.sub("", ray_name)


def parse_mark(line: str) -> tuple[str, str | None] | None:
    """``(job, text)`` of a marked worker line, ``(job, None)`` for its end, None for any other line."""
    if not line.startswith(MARK):
        return None
    body = line[len(MARK):]
    if " | " in body:
        job, text = body.split(" | ", 1)
        return job, text
    if body.endswith(" " + DONE):
        return body[: -len(DONE) - 1], None
    return None


@dataclass
class Console:
    """Live lines per job and result lines on ``stream``; internals to ``log`` (a file, or nowhere)."""

    stream: TextIO | None = None  # None: whatever sys.stdout is at each write (a plain print, redirections too)
    log: TextIO | None = None
    live: bool = False  # tqdm lines (stdout is a terminal) rather than throttled plain lines
    log_path: Path | None = None
    routed: bool = False  # Ray's worker output comes through ray_lines
    handler: logging.Handler | None = None  # the log file's handler for the libraries' loggers
    _bars: dict[str, Any] = field(default_factory=dict)
    _shown: dict[str, float] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def out(self) -> TextIO:
        """Where the lines go: ``stream``, else the current ``sys.stdout``."""
        return self.stream if self.stream is not None else sys.stdout

    def say(self, text: str) -> None:
        """A line that stays: a result, a summary, a note for the user."""
        with self._lock:
            if self._bars:
                from tqdm import tqdm

                tqdm.write(text, file=self.out)
            else:
                self.out.write(text + "\n")
            self.out.flush()
            self.internal(text)

    def internal(self, text: str) -> None:
        """A line for the log file only."""
        if self.log is not None:
            with self._lock:
                self.log.write(text.rstrip("\n") + "\n")
                self.log.flush()

    def progress(self, job: str, text: str) -> None:
        """``job``'s latest state (phase, epoch, metric, ETA); replaces its previous one."""
        label = job_label(job)
        with self._lock:
            self.internal(f"[progress] {label}: {text}")
            if self.live:
                bar = self._bars.get(job)
                if bar is None:
                    from tqdm import tqdm

                    bar = tqdm(total=None, bar_format="{desc}", file=self.out, leave=False,
                               position=len(self._bars), dynamic_ncols=True)
                    self._bars[job] = bar
                bar.set_description_str(f"{label}: {text}")
                return
            now = time.monotonic()
            first = self._shown.setdefault(job, now)
            if now - first >= PLAIN_EVERY_S:
                self._shown[job] = now
                self.out.write(f"  … {label}: {text}\n")
                self.out.flush()

    def finish(self, prefix: str) -> None:
        """Drop the live lines of every job whose Ray name starts with ``prefix`` (it ended, or its group did)."""
        with self._lock:
            for job in [j for j in (*self._bars, *self._shown) if j.startswith(prefix)]:
                bar = self._bars.pop(job, None)
                if bar is not None:
                    bar.close()
                self._shown.pop(job, None)

    def close(self) -> None:
        """End the session's output: drop every live line and flush the log file, so nothing is lost at exit."""
        self.finish("")
        if self.log is not None:
            self.log.flush()

    def ray_lines(self, data: dict[str, Any]) -> None:
        """Ray's stream-dispatcher handler: marked lines → live lines, all lines → the log file."""
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who + ' ' if who else ''}pid={data.get('pid')}) "
        for line in data.get("lines", []):
            mark = parse_mark(line)
            if mark is None:
                self.internal(prefix + line)
                continue
            job, text = mark
            if text is None:
                self.finish(job)
            else:
                self.progress(job, text)


_CONSOLE = Console()


def current() -> Console:
    """The process's console, for code that reports progress or internal lines without being handed one."""
    return _CONSOLE


def say(text: str) -> None:
    """Print a result line through the current console (a plain ``print`` when none is set up)."""
    _CONSOLE.say(text)


RAY_HANDLER, OUR_HANDLER = "ray_print_logs", "ms2l_console"


def route_ray_logs(console: Console | None = None) -> bool:
    """Take over Ray's printing of worker output in this driver (call after ``ray.init``).

    Ray's driver prints every line its workers write through one handler of its stream dispatcher; that
    handler is swapped for :meth:`Console.ray_lines` until the session ends. False (and nothing changed)
    in ``--verbose`` sessions and where Ray lacks the hook: then Ray prints as usual, nothing is lost.
    """
    console = console or _CONSOLE
    if console.log is None:
        return False
    if console.handler is not None:  # ray.init configured the "ray" logger afresh: back to the file
        _point_loggers(console.handler)
    try:
        from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover - another Ray layout
        return False
    names = [name for name, _ in dispatcher.handlers]
    if RAY_HANDLER not in names and OUR_HANDLER not in names:
        return False  # log_to_driver=False: nothing is printed to take over
    dispatcher.remove_handler(RAY_HANDLER)
    dispatcher.remove_handler(OUR_HANDLER)
    dispatcher.add_handler(OUR_HANDLER, console.ray_lines)
    console.routed = True
    return True


def _unroute_ray_logs() -> None:
    """Give Ray its own printing back (in-process callers, tests: the next session or plain code)."""
    import functools

    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover
        return
    dispatcher = worker.global_worker_stdstream_dispatcher
    if OUR_HANDLER not in [name for name, _ in dispatcher.handlers]:
        return
    dispatcher.remove_handler(OUR_HANDLER)
    if worker.global_worker.connected:
        ignore = worker._should_ignore_worker_log_prefix(worker.global_worker)
        dispatcher.add_handler(RAY_HANDLER, functools.partial(worker.print_to_stdstream, ignore_prefix=ignore))


def _point_loggers(handler: logging.Handler) -> None:
    for name in INTERNAL_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.propagate = False


@contextlib.contextmanager
def _internal_loggers(handler: logging.Handler) -> Iterator[None]:
    """The libraries' loggers and Python warnings write to ``handler`` only, restored afterwards."""
    import importlib

    for module in ("ray", "mlflow"):  # both configure their loggers on import: import first, then re-point
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    saved = {}
    for name in INTERNAL_LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.propagate)
    _point_loggers(handler)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate


@contextlib.contextmanager
def session(out_dir: Path | None, verbose: bool = False, stream: TextIO | None = None) -> Iterator[Console]:
    """The console of one command: internals to ``out_dir/ms2l.log`` (unless ``verbose``), its path said once.

    With ``out_dir`` None (no output folder) internals are still kept off the terminal but not kept.
    """
    global _CONSOLE
    stream = stream or sys.stdout
    live = bool(getattr(stream, "isatty", lambda: False)()) and not verbose
    previous = _CONSOLE
    if verbose:
        _CONSOLE = Console(stream=stream, live=False)
        try:
            yield _CONSOLE
        finally:
            _CONSOLE = previous
        return
    path = None
    log: TextIO
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / LOG_FILE
        log = path.open("a", encoding="utf-8")
    else:
        import io

        log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _CONSOLE = Console(stream=stream, log=log, live=live, log_path=path, handler=handler)
    if path is not None:
        stream.write(f"[ms2l] Ray and MLflow messages go to {path} (--verbose shows them here)\n")
        stream.flush()
    try:
        with _internal_loggers(handler):
            yield _CONSOLE
    except BaseException:
        if path is not None:  # the failure is summarised by the caller; the details are here
            _CONSOLE.say(f"[ms2l] details (Ray and MLflow messages) in {path}")
        raise
    finally:
        if _CONSOLE.routed:
            _unroute_ray_logs()
        _CONSOLE.close()
        _CONSOLE = previous
        log.close()
