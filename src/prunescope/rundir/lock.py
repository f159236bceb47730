"""One writer per run directory.

An advisory ``flock`` on ``RUN_DIR/.lock``: the kernel drops it when its process
dies, however it dies, so a lock left by a killed run is simply free again and
the next run takes it over. The file holds the owner's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from prunescope.errors import RunDirError
from prunescope.rundir.atomic import environment_fault

LOCK = ".lock"


class RunLock:
    def __init__(self, root: Path):
        self.path = Path(root) / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise environment_fault(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by another prunescope process (pid {owner}); "
                f"wait for it to finish or stop it first"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise environment_fault(self.path, exc) from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
