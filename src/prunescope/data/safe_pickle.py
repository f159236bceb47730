"""Reading the pickles datasets ship in (CIFAR-10's batches, Planetoid's parts) as data.

A dataset folder may come from anywhere, and a pickle can run code, hang or exhaust
memory. So: only regular files are read, never more than a cap (a FIFO would hang ``open``,
``/dev/zero`` never ends); the opcode stream is scanned for forged memo indices before it
loads; and only the classes that rebuild numpy arrays (plus what a reader adds) may load.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path

from prunescope.errors import DataError
from prunescope.rundir.files import NotARegularFile, read_regular

_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


class CorruptPickle(DataError):
    """The file was read but is not a pickle of what the reader allows."""

    def __init__(self, path: Path, detail: str):
        super().__init__(f"cannot read {path} ({detail})")
        self.detail = detail


class ArrayUnpickler(pickle.Unpickler):
    """Allow only what rebuilds numpy arrays, so a tampered file cannot run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
        }
    )

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def file_bytes(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file, read without blocking, at most ``limit``. A symbolic
    link is followed first (a data folder is the user's, and a linked shared copy is
    common). ``what`` names the reader in messages ("planetoid", "CIFAR-10")."""
    try:
        data = read_regular(Path(os.path.realpath(path)), limit)
    except FileNotFoundError:
        raise
    except NotARegularFile:
        raise DataError(
            f"{path} is not a regular file (a FIFO, device or folder): {what} reads only "
            f"regular files"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or one_line(exc)})") from None
    if len(data) > limit:
        raise DataError(f"{path} is larger than {limit:,} bytes, the most {what} reads")
    return data


def check_memo(data: bytes) -> None:
    """CPython's unpickler grows its memo table to the largest index a PUT names: an
    8-byte pickle naming 10**8 took 1.5 GB and 4.5 s here, and 2**32-1 asks for 64 GiB. A
    pickler numbers its memo from 0, one entry an opcode at most, so a larger index is
    forged. genops only parses (0.06 s for the 177,503 opcodes of a PubMed-sized graph)."""
    for count, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
        if op.name in _MEMO_PUTS and arg > count:
            raise pickle.UnpicklingError(f"memo index {arg} at opcode {count} is forged")


def load_pickle(
    path: Path, *, limit: int, what: str, unpickler: type[ArrayUnpickler], encoding: str
) -> object:
    """A pickle file read as data: capped, scanned, restricted to ``unpickler``'s classes.
    Any failure is one :class:`DataError` line; a missing file is FileNotFoundError."""
    data = file_bytes(path, limit, what)
    try:
        check_memo(data)
        return unpickler(io.BytesIO(data), encoding=encoding).load()
    except Exception as exc:  # whatever a forged pickle raises, the file is corrupt
        raise CorruptPickle(path, one_line(exc)) from None
