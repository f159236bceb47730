"""Atomic, fsynced file writes: a reader (or a crash) sees the old file or the new one, never half.

Every write goes to a temporary file in the same folder, is fsynced, renamed over
the target, and the folder is fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from prunescope.errors import EnvironmentFault, PrunescopeError, UnwritablePath

TMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Fault injection for the crash tests: PRUNESCOPE_FAULT_AT_WRITE="N" kills the process with
# SIGKILL in its N-th atomic write after the temporary file is written and before the rename;
# "N:after" kills it right after the rename (the file is new, the manifest does not know yet).
_FAULT = os.environ.get("PRUNESCOPE_FAULT_AT_WRITE", "")
_writes = 0


def _maybe_fault(stage: str) -> None:
    if _FAULT:
        n, _, when = _FAULT.partition(":")
        if _writes == int(n) and stage == (when or "before"):
            os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; return its sha256."""
    global _writes
    _writes += 1
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    except OSError as exc:
        raise environment_fault(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; run files are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _maybe_fault("before")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise environment_fault(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    _maybe_fault("after")
    return sha256_bytes(data)


def environment_fault(path: Path, exc: OSError) -> PrunescopeError:
    """A failed write as one line: a full disk is the machine's fault (exit 1); a path the
    user named that cannot be written is bad input (exit 2)."""
    if exc.errno == errno.ENOSPC:
        return EnvironmentFault(
            f"disk full while writing {path}; free space and run the same command again"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UnwritablePath(f"cannot write {path}: {exc.strerror}")
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return UnwritablePath(f"cannot create {path}: a parent is not a folder")
    return EnvironmentFault(f"cannot write {path}: {exc}")


def atomic_write_text(path: Path, text: str) -> str:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")


def atomic_write_json(path: Path, obj: Any) -> str:
    return atomic_write_bytes(path, json_bytes(obj))


def safetensors_payload(tensors: dict[str, torch.Tensor]) -> bytes:
    """Serialise tensors (moved to CPU, made contiguous) to safetensors bytes; a tensor that
    several keys share (tied weights) is saved once, under its first key."""
    from prunescope.models.ties import deduplicated

    clean = {k: v.detach().to("cpu").contiguous() for k, v in deduplicated(tensors).items()}
    return safetensors_bytes(clean)


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    return atomic_write_bytes(path, safetensors_payload(tensors))


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files left by a killed writer are garbage by construction.

    Symlinked folders are not followed: only the run directory's own files go.
    """
    if not folder.is_dir():
        return
    for parent, _dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            if name.startswith(TMP_PREFIX):
                Path(parent, name).unlink(missing_ok=True)
