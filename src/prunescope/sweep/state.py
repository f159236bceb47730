"""Where each run of a sweep stands, read from its run directory and its log, and the
sweep's own record (``sweep.json``: the grid, the runs, any job ids).

A sweep folder may come from someone else: ``sweep.json`` is validated before any name in
it is used, a run name is one plain path component, and a run folder or log that is a
symbolic link is not followed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from prunescope.config.schema import MAX_LEVELS
from prunescope.errors import PrunescopeError, RunDirError, first_problem, shorten
from prunescope.rundir.atomic import atomic_write_bytes, json_bytes
from prunescope.rundir.files import read_regular
from prunescope.rundir.layout import REPORT
from prunescope.rundir.lock import LOCK
from prunescope.rundir.manifest import parse_json_bytes
from prunescope.rundir.session import open_run_dir

SWEEP_JSON = "sweep.json"
LOGS = "logs"
EXIT_MARK = "prunescope-sweep: exit "  # the last line of a run's log once its process ends
# sweep.json holds ~300 bytes per run: 64 MiB is ~200,000 runs, far past the grid limit.
MAX_RECORD_BYTES = 64 * 2**20
# A run's exit line and its last ``prunescope:`` message are at the end of its log.
LOG_TAIL_BYTES = 1 << 20
# What spec.py names a run, ``<slug>-<hash8>`` (see slug() and config_hash()): one plain
# path component, so a name read back from sweep.json never leads outside the sweep.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}-[0-9a-f]{8}")


def is_run_name(name: str) -> bool:
    return RUN_NAME.fullmatch(name) is not None


def check_run_name(name: str) -> str:
    if not is_run_name(name):
        raise ValueError("a run name is <slug>-<hash8>: letters, digits, '.', '_' and '-'")
    return name


RunName = Annotated[StrictStr, AfterValidator(check_run_name)]


class Entry(BaseModel):
    # Fields this version does not read are kept and ignored; those it reads are checked.
    model_config = ConfigDict(extra="allow", strict=True)


class RunEntry(Entry):
    name: RunName
    values: dict[str, Any] = Field(default_factory=dict)
    levels: Annotated[StrictInt, Field(ge=0, le=MAX_LEVELS)]


class JobEntry(Entry):
    executor: StrictStr
    job_ids: list[StrictStr | StrictInt]
    runs: list[RunName]


class SweepRecord(Entry):
    format: Literal["prunescope-sweep"]
    format_version: Literal[1]
    sweep_file: StrictStr
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    slurm: dict[str, Any]
    runs: list[RunEntry]
    jobs: list[JobEntry] = Field(default_factory=list)


@dataclass
class RunState:
    name: str
    state: str  # complete | running | failed | stopped | pending | damaged
    levels_done: int
    levels: int
    note: str = ""


def log_path(sweep_dir: Path, name: str) -> Path:
    return Path(sweep_dir) / LOGS / f"{name}.log"


def check_logs_folder(sweep_dir: Path) -> None:
    """The logs are read from the sweep's own ``logs/``, never through a link out of it."""
    logs = Path(sweep_dir) / LOGS
    if logs.is_symlink():
        raise RunDirError(
            f"{logs} is a symbolic link; a sweep's logs are a real folder of the sweep "
            f"(remove the link)"
        )


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


def log_tail(log: Path) -> list[str]:
    """The last lines of a run's log; none where it is missing or not a regular file (a FIFO
    would block the read, a link could lead anywhere)."""
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        size = os.fstat(fd)
        if not stat.S_ISREG(size.st_mode):
            return []
        start = max(0, size.st_size - LOG_TAIL_BYTES)
        data = os.pread(fd, LOG_TAIL_BYTES, start)
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if start else lines  # the first may be the end of a longer line


def last_exit(log: Path) -> tuple[int | None, str]:
    """The exit code the log ends with (None while it runs or if it was killed), and the
    run's last ``prunescope:`` message (its one-line reason when it failed)."""
    lines = log_tail(log)
    code = None
    if lines and lines[-1].startswith(EXIT_MARK):
        tail = lines[-1][len(EXIT_MARK) :]
        code = int(tail) if re.fullmatch(r"-?\d{1,4}", tail) else None
    said = [ln for ln in lines if ln.startswith("prunescope: ")]
    return code, said[-1][len("prunescope: ") :] if said else ""


def is_complete(run_dir: Path, levels: int, analyze: bool = True) -> bool:
    try:
        rd, _ = open_run_dir(run_dir)
    except (PrunescopeError, OSError):
        return False
    trained = set(range(levels + 1)) <= set(rd.completed_levels())
    return trained and (not analyze or rd.recorded(f"{REPORT}/summary.json"))


def run_folder(sweep_dir: Path, name: str) -> Path:
    """``SWEEP_DIR/name``, a real folder of the sweep (or not there yet), never a link."""
    if not is_run_name(name):  # sweep.json was validated; this guards any other caller
        raise RunDirError(f"{shorten(name, 60)} is not a sweep run name (<slug>-<hash8>)")
    run_dir = Path(sweep_dir) / name
    if run_dir.is_symlink():
        raise RunDirError(
            f"{run_dir} is a symbolic link; a sweep's runs are real folders of the sweep "
            f"(remove the link)"
        )
    return run_dir


def run_state(sweep_dir: Path, name: str, levels: int) -> RunState:
    run_dir = run_folder(sweep_dir, name)
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
    """``sweep.json``, checked against :class:`SweepRecord` (one line naming the first bad
    field); at most :data:`MAX_RECORD_BYTES` of a regular file, never through a link."""
    path = Path(sweep_dir) / SWEEP_JSON
    try:
        data = read_regular(path, MAX_RECORD_BYTES)
    except FileNotFoundError:
        raise RunDirError(f"{sweep_dir} is not a sweep directory (no {SWEEP_JSON})") from None
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise RunDirError(f"{path} cannot be read ({why})") from None
    if len(data) > MAX_RECORD_BYTES:
        raise RunDirError(f"{path} is larger than {MAX_RECORD_BYTES >> 20} MiB; it cannot be read")
    try:
        record = parse_json_bytes(data, str(path))
    except ValueError as exc:  # an integer of more than 4300 digits
        raise RunDirError(f"{path} is damaged ({shorten(str(exc), 80)})") from None
    check_record(record, path)
    return record


def check_record(record: Any, path: Path) -> None:
    if not isinstance(record, dict):
        raise RunDirError(f"damaged {path}: expected a JSON object")
    try:
        SweepRecord.model_validate(record)
    except ValidationError as exc:
        raise RunDirError(
            f"damaged {path}: {first_problem(exc)}; the sweep folder cannot be trusted"
        ) from None


def write_record(sweep_dir: Path, record: dict[str, Any]) -> None:
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(sweep_dir) / SWEEP_JSON, json_bytes(record))
