"""One sweep run as a process: ``prunescope run`` on its run directory, its output and
exit code appended to ``SWEEP_DIR/logs/<name>.log``. Both executors run exactly this."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from prunescope.sweep.state import EXIT_MARK


def run_command(run_dir: Path, args: list[str], analyze: bool) -> list[str]:
    cmd = [sys.executable, "-m", "prunescope", "run", "--run-dir", str(run_dir), *args]
    return cmd if analyze else [*cmd, "--no-analyze"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the run gets SIGTERM when the sweep process dies, however it dies, so a
    killed sweep leaves no run holding its lock (it stops as on Ctrl-C, checkpoint kept)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
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
    with open(log, "a", encoding="utf-8") as out:
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
