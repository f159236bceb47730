"""One sweep run as a process: ``prunescope run`` on its run directory, its output and
exit code appended to ``SWEEP_DIR/logs/<name>.log``. Both executors run exactly this."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from prunescope.errors import RunDirError
from prunescope.rundir.files import own_folder
from prunescope.sweep.state import EXIT_MARK


def run_command(run_dir: Path, args: list[str], analyze: bool) -> list[str]:
    cmd = [sys.executable, "-m", "prunescope", "run", "--run-dir", str(run_dir), *args]
    return cmd if analyze else [*cmd, "--no-analyze"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the run gets SIGTERM when the sweep process dies, however it dies, so a
    killed sweep leaves no run holding its lock (it stops as on Ctrl-C, checkpoint kept)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def open_log(log: Path) -> TextIO:
    """The run's log, opened to append. ``logs/`` (made here if missing) and the log itself
    must not be links, and the log must be a regular file: a link would append to any file
    it names, a FIFO would block."""
    own_folder(log.parent, "a sweep's logs", base=log.parent.parent)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(log, flags, 0o666)
    except OSError as exc:
        raise RunDirError(f"cannot append to {log} ({_why(exc)}); remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunDirError(f"cannot append to {log} (not a regular file); remove it")
    os.set_blocking(fd, True)  # the run inherits it as its stdout
    return os.fdopen(fd, "a", encoding="utf-8")


def _why(exc: OSError) -> str:
    # O_NOFOLLOW fails with ELOOP on a link, O_NONBLOCK with ENXIO on a FIFO with no reader
    named = {errno.ELOOP: "a symbolic link", errno.ENXIO: "a FIFO"}
    return named.get(exc.errno, exc.strerror or str(exc))


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open_log(log) as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def finish(log: Path, code: int) -> None:
    with open_log(log) as out:
        out.write(f"{EXIT_MARK}{code}\n")


def run_to_end(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    proc = start(cmd, log, env)
    try:
        code = proc.wait()
    except BaseException:
        proc.terminate()  # a requeued or cancelled job: the run keeps its checkpoint
        proc.wait()
        raise
    finish(log, code)
    return code
