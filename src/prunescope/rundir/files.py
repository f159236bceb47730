"""Touching the files of a run directory without trusting it.

A run directory may come from someone else. A path read from its manifest must
stay inside it (symlinks included), and a read must never block on a FIFO or
read a device such as ``/dev/zero`` until memory runs out: only regular files
are read, and never more than their recorded size.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from prunescope.errors import RunDirError


class NotARegularFile(OSError):
    """A run file that is a device, FIFO, socket or folder."""


def inside(root: Path, rel: str) -> Path:
    """``root / rel`` after resolving every symlink; it must lie inside ``root``.

    ``rel`` has been checked to be relative and free of ``..`` (the manifest schema
    does that); this catches symlinks that lead out.
    """
    base = root.resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise RunDirError(
            f"{root / rel} leads outside the run directory (to {str(target)[:200]}); "
            f"the run directory cannot be trusted"
        )
    return target


def _open_regular(path: Path) -> int:
    """A descriptor of a regular file, opened without following a link or blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.EINVAL, "not a regular file")
    return fd


def regular_file_size(path: Path) -> int:
    """The size of a regular file; :class:`NotARegularFile` for a FIFO, device or folder
    (checked before a library opens it, which could block on a FIFO)."""
    fd = _open_regular(path)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a regular file (one more than allowed shows it grew).

    Raises :class:`FileNotFoundError`, :class:`NotARegularFile` or another
    :class:`OSError`.
    """
    fd = _open_regular(path)
    try:
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_not_symlink(path: Path, what: str) -> None:
    """Folders prunescope writes into (``report/``, a branch, a sweep's run) must be real
    folders: a link could lead the write anywhere."""
    if path.is_symlink():
        raise RunDirError(
            f"{path} is a symbolic link; prunescope writes {what} only into a real folder, never "
            f"through a link (remove the link)"
        )


def _steps(path: Path, base: Path | None) -> list[Path]:
    """``path`` and the folders between ``base`` and it (base excluded)."""
    if base is None:
        return [path]
    rel = path.relative_to(base)
    return [Path(base).joinpath(*rel.parts[: i + 1]) for i in range(len(rel.parts))]


def check_no_link_below(base: Path, path: Path, what: str) -> None:
    """No folder from ``base`` (excluded) down to ``path`` is a symbolic link."""
    for step in _steps(Path(path), Path(base)):
        check_not_symlink(step, what)


def own_folder(path: Path, what: str, *, base: Path | None = None) -> Path:
    """A folder prunescope writes into (a branch, a sweep's run, ``logs/``, ``report/``, an
    export's ``--out``), created where missing. Neither it nor any folder between ``base``
    (a folder the command already trusts, such as the run directory) and it may be a
    symbolic link: a link could lead the write anywhere (another run, a system folder), so
    none is followed, wherever it points."""
    path = Path(path)
    steps = _steps(path, base)
    if base is None and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    for step in steps:
        check_not_symlink(step, what)
        try:
            step.mkdir(exist_ok=True)
        except FileExistsError:
            raise RunDirError(
                f"{step} exists and is not a folder; prunescope writes {what} there"
            ) from None
        except OSError as exc:
            raise RunDirError(f"cannot create {step} for {what} ({exc.strerror})") from None
        check_not_symlink(step, what)  # a link made between the check and the mkdir
    return path
