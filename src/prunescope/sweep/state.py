"""Where each run of a sweep stands, read from its run directory and its log, and the
sweep's own record (``sweep.json``: the grid, the runs, any job ids)."""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunescope.errors import PrunescopeError, RunDirError
from prunescope.rundir.atomic import atomic_write_bytes, json_bytes
from prunescope.rundir.layout import REPORT
from prunescope.rundir.lock import LOCK
from prunescope.rundir.session import open_run_dir

SWEEP_JSON = "sweep.json"
LOGS = "logs"
EXIT_MARK = "prunescope-sweep: exit "  # the last line of a run's log once its process ends


@dataclass
class RunState:
    name: str
    state: str  # complete | running | failed | stopped | pending | damaged
    levels_done: int
    levels: int
    note: str = ""


def log_path(sweep_dir: Path, name: str) -> Path:
    return Path(sweep_dir) / LOGS / f"{name}.log"


def is_running(run_dir: Path) -> bool:
    """True while a process holds the run's lock (the kernel drops it when that dies)."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    finally:
        os.close(fd)
    return False


def last_exit(log: Path) -> tuple[int | None, str]:
    """The exit code the log ends with (None while it runs or if it was killed), and the
    run's last ``prunescope:`` message (its one-line reason when it failed)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None, ""
    code = None
    if lines and lines[-1].startswith(EXIT_MARK):
        code = int(lines[-1][len(EXIT_MARK) :])
    said = [ln for ln in lines if ln.startswith("prunescope: ")]
    return code, said[-1][len("prunescope: ") :] if said else ""


def is_complete(run_dir: Path, levels: int, analyze: bool = True) -> bool:
    try:
        rd, _ = open_run_dir(run_dir)
    except (PrunescopeError, OSError):
        return False
    trained = set(range(levels + 1)) <= set(rd.completed_levels())
    return trained and (not analyze or rd.recorded(f"{REPORT}/summary.json"))


def run_state(sweep_dir: Path, name: str, levels: int) -> RunState:
    run_dir = Path(sweep_dir) / name
    code, said = last_exit(log_path(sweep_dir, name))
    if is_running(run_dir):
        return RunState(name, "running", _levels_done(run_dir), levels)
    if not (run_dir / "manifest.json").exists():
        state = "failed" if code else "pending"
        return RunState(name, state, 0, levels, said if code else "")
    try:
        rd, _ = open_run_dir(run_dir)
    except (RunDirError, PrunescopeError) as exc:
        return RunState(name, "damaged", 0, levels, str(exc))
    done = len([lv for lv in rd.completed_levels() if lv <= levels])
    if done == levels + 1 and code in (None, 0):
        return RunState(name, "complete", done, levels)
    if code:
        return RunState(name, "failed", done, levels, said)
    return RunState(name, "stopped", done, levels, "stopped before the end; the sweep resumes it")


def _levels_done(run_dir: Path) -> int:
    try:
        rd, _ = open_run_dir(run_dir)
    except (PrunescopeError, OSError):
        return 0
    return len(rd.completed_levels())


def read_record(sweep_dir: Path) -> dict[str, Any]:
    import json

    path = Path(sweep_dir) / SWEEP_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{sweep_dir} is not a sweep directory (no {SWEEP_JSON})") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} cannot be read ({exc})") from None


def write_record(sweep_dir: Path, record: dict[str, Any]) -> None:
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(sweep_dir) / SWEEP_JSON, json_bytes(record))
