"""One writer per run directory.

An advisory ``flock`` on ``RUN_DIR/.lock``: the kernel drops it when its process
dies, however it dies, so a lock left by a killed run is simply free again and
the next run takes it over. The file holds the owner's pid for the message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
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
            # never through a symlink: a planted link would let the lock truncate its target
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise RunDirError(
                    f"{self.path} is not a regular file (a symbolic link, folder or device); "
                    f"a run directory's lock must be one: remove it"
                ) from None
            raise environment_fault(self.path, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunDirError(f"{self.path} is not a regular file; remove it to use this run")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                text = os.read(fd, 512).decode(errors="replace").strip()
                owner = text.partition("\n")[0] or "unknown"
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

    def note(self, text: str) -> None:
        """What the holder is doing, after its pid (for ``status``); best effort."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n{text}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(root: Path) -> tuple[str, str] | None:
    """(pid, what it is doing) of the process holding ``root``'s lock, or None when it is
    free (checked with a shared lock dropped at once: status never blocks a writer)."""
    try:
        fd = os.open(Path(root) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, doing = os.read(fd, 512).decode(errors="replace").strip().partition("\n")
            return pid or "unknown", doing.strip()
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
