"""The pinned layout of a run directory (docs/formats.md) and its manifest.

Every file is written atomically and its sha256 recorded in ``manifest.json``;
every read checks the file against that record, so a damaged or half-written
file is reported, never used.
"""

from __future__ import annotations

import datetime as _dt
import errno
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load

from prunescope.errors import RunDirError, shorten
from prunescope.rundir.atomic import (
    atomic_write_bytes,
    json_bytes,
    remove_stale_temporaries,
    safetensors_payload,
    sha256_bytes,
)
from prunescope.rundir.files import NotARegularFile, inside, read_regular
from prunescope.rundir.manifest import (
    MAX_MANIFEST_BYTES,
    check_relative_path,
    parse_json_bytes,
    validate_manifest,
)
from prunescope.trust import opened_data_folder

FORMAT = "prunescope-run"
FORMAT_VERSION = 1

CONFIG = "config.toml"
MANIFEST = "manifest.json"
REWIND = "rewind.safetensors"
LEVELS = "levels"
ANALYSIS = "analysis"
REPORT = "report"


def level_name(level: int) -> str:
    return f"{level:02d}"


def level_file(level: int, name: str) -> str:
    return f"{LEVELS}/{level_name(level)}/{name}"


def level_of_file(rel: str) -> int | None:
    """The level a run file belongs to (``levels/NN/...``), else None."""
    parts = rel.split("/")
    if len(parts) > 2 and parts[0] == LEVELS and parts[1].isdigit():
        return int(parts[1])
    return None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit of the prunescope source, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str) -> dict[str, Any]:
    """Versions and the device a session ran on: the resolved one (what the hardware
    was), and the configured name beside it ("auto" alone says nothing afterwards)."""
    from prunescope import __version__
    from prunescope.training.device import describe_device, resolve_device

    return {
        "prunescope": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": describe_device(resolve_device(device)),
        "device_setting": device,
        "cpu": cpu_name(),
    }


def cpu_name() -> str | None:
    get = getattr(torch.cpu, "get_capabilities", None)
    name = get().get("cpu_name") if get else None
    return str(name) if name else (platform.processor() or None)


class RunDir:
    """A run directory: paths, the manifest, and verified reads and recorded writes."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest: dict[str, Any] = {}
        # This command's session record (versions, device, threads) and other changes that
        # are recorded only with the first result the command writes: a command that fails
        # before writing one leaves the run directory as it found it.
        self.session: dict[str, Any] = {}
        self._deferred: list[Any] = []
        self.lock: Any = None  # the RunLock of the command writing it (a WriteSession's)

    def defer(self, change) -> None:
        """``change()`` runs just before the next write of this run directory."""
        self._deferred.append(change)

    def _flush_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)()

    # -- paths ---------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        """Where a run file is, as the user named the run directory (for messages)."""
        return self.root / rel

    def safe_path(self, rel: str) -> Path:
        """The file a run-relative path names; refused when it would lead outside the run."""
        check_relative_path(rel)
        return inside(self.root, rel)

    def exists(self) -> bool:
        return (self.root / MANIFEST).exists()

    # -- manifest ------------------------------------------------------------------------
    def create(self, config_text: str, env: dict[str, Any], model: str, dataset: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": now(),
            "model": model,
            "dataset": dataset,
            "environment": env,
            "files": {},
            "levels": {},
            "sessions": [],
        }
        self.write(CONFIG, config_text.encode())

    def load_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not self.root.is_dir():
            raise RunDirError(f"{self.root} is not a run directory (no such folder)")
        if not path.exists() and not path.is_symlink():
            raise RunDirError(f"{self.root} is not a prunescope run directory (no {MANIFEST})")
        opened_data_folder(self.root)  # no module is ever imported from inside it
        try:
            data = read_regular(inside(self.root, MANIFEST), MAX_MANIFEST_BYTES)
        except OSError as exc:
            raise RunDirError(
                f"{path} cannot be read ({exc.strerror or exc}); the run directory cannot be trusted"
            ) from None
        if len(data) > MAX_MANIFEST_BYTES:
            raise RunDirError(f"{path} is damaged (larger than any manifest prunescope writes)")
        manifest = parse_json_bytes(data, str(path))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise RunDirError(
                f"{self.root} is not a prunescope run directory ({MANIFEST} of another tool)"
            )
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise RunDirError(
                f"{self.root} was written by run format {shorten(version, 40)}; "
                f"this prunescope reads format {FORMAT_VERSION}"
            )
        validate_manifest(manifest, str(path))
        for rel in [*manifest["files"], *manifest.get("pending", {})]:
            inside(self.root, rel)  # a symlink on the way must not lead out: refused before any use
        manifest.setdefault("pending", {})
        self.manifest = manifest
        return manifest

    def save_manifest(self) -> None:
        self._flush_deferred()
        atomic_write_bytes(self.root / MANIFEST, json_bytes(self.manifest))

    def cleanup_temporaries(self) -> None:
        remove_stale_temporaries(self.root)

    # -- recorded writes and verified reads ----------------------------------------------
    def write(self, rel: str, data: bytes) -> str:
        """Write a run file atomically and record it.

        The new hash is announced as *pending* in the manifest before the file is
        renamed into place, so a crash between the rename and the final manifest
        save leaves a file that matches its pending record, not a "damaged" one.
        """
        record = {"sha256": sha256_bytes(data), "bytes": len(data)}
        if self.manifest.get("files", {}).get(rel) == record and self.check(rel) is None:
            return record["sha256"]  # the same bytes are there already: nothing changes
        self.manifest.setdefault("pending", {})[rel] = record
        target = self.safe_path(rel)
        self.save_manifest()
        atomic_write_bytes(target, data)
        self.manifest["files"][rel] = record
        del self.manifest["pending"][rel]
        self.save_manifest()
        return record["sha256"]

    def reconcile_pending(self) -> None:
        """After a crash: a pending file that made it into place is recorded, any other
        pending record is dropped (the rename never happened, the old record still holds)."""
        pending = self.manifest.get("pending") or {}
        for rel, record in pending.items():
            data = self._bytes(rel, record["bytes"])
            if data is not None and self._matches(data, record):
                self.manifest["files"][rel] = record
        if pending:
            self.manifest["pending"] = {}
            self.save_manifest()

    def write_json(self, rel: str, obj: Any) -> str:
        return self.write(rel, json_bytes(obj))

    def write_tensors(self, rel: str, tensors: dict[str, torch.Tensor]) -> str:
        # No safetensors metadata: its key order is not stable between processes, and a
        # resumed run must write the same bytes as an uninterrupted one.
        return self.write(rel, safetensors_payload(tensors))

    def forget(self, rel: str) -> None:
        """Drop a file and its record (a level redone, a checkpoint no longer needed)."""
        self.manifest["files"].pop(rel, None)
        self.manifest.get("pending", {}).pop(rel, None)
        self.save_manifest()
        self.safe_path(rel).unlink(missing_ok=True)

    def recorded(self, rel: str) -> bool:
        return rel in self.manifest.get("files", {})

    def _bytes(self, rel: str, limit: int) -> bytes | None:
        try:
            return read_regular(self.safe_path(rel), limit)
        except OSError:
            return None

    @staticmethod
    def _matches(data: bytes, record: dict) -> bool:
        return len(data) == record.get("bytes") and sha256_bytes(data) == record.get("sha256")

    def _verify(self, rel: str) -> tuple[bytes | None, str | None]:
        """(content, None) when the file matches its record (or a pending one), else (None, problem)."""
        record = self.manifest.get("files", {}).get(rel)
        pending = self.manifest.get("pending", {}).get(rel)
        if record is None and pending is None:
            return None, "not recorded in the manifest"
        limit = max(r["bytes"] for r in (record, pending) if r is not None)
        try:
            data = read_regular(self.safe_path(rel), limit)
        except FileNotFoundError:
            return None, "missing"
        except NotARegularFile:
            return None, "not a regular file"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None, "a symbolic link loop"
            return None, f"unreadable ({exc.strerror})"
        if any(r is not None and self._matches(data, r) for r in (record, pending)):
            return data, None
        want = (record or pending).get("bytes")
        if len(data) > limit:
            return None, f"larger than the manifest says ({want} bytes)"
        if len(data) != want:
            return None, f"truncated or resized ({len(data)} bytes, manifest says {want})"
        return None, "content does not match its sha256 in the manifest"

    def check(self, rel: str) -> str | None:
        """None when the file matches its record, else what is wrong with it."""
        return self._verify(rel)[1]

    def read(self, rel: str) -> bytes:
        data, problem = self._verify(rel)
        if problem == "not recorded in the manifest":
            raise RunDirError(
                f"{self.root / rel} is not recorded in the manifest; it cannot be trusted"
            )
        if problem == "missing":
            raise RunDirError(f"{self.root / rel} is missing; {self._advice(rel)}")
        if problem is not None:
            raise RunDirError(f"{self.root / rel} is damaged ({problem}); {self._advice(rel)}")
        return data

    def _advice(self, rel: str) -> str:
        level = level_of_file(rel)
        if level is not None:
            return f"redo it with 'prunescope run --run-dir {self.root} --redo-from {level}'"
        if rel.startswith(ANALYSIS + "/"):
            return f"recompute it with 'prunescope analyze {self.root} --force'"
        if rel == REWIND:
            return f"redo the run from its start with 'prunescope run --run-dir {self.root} --redo-from 0'"
        return "this run directory cannot be resumed; start a new one"

    def read_text(self, rel: str) -> str:
        try:
            return self.read(rel).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RunDirError(
                f"{self.root / rel} is not UTF-8 text (byte {exc.start}); the run directory "
                f"cannot be trusted"
            ) from None

    def read_json(self, rel: str) -> Any:
        return parse_json_bytes(self.read(rel), str(self.root / rel))

    def read_tensors(self, rel: str) -> dict[str, torch.Tensor]:
        try:
            return safetensors_load(self.read(rel))
        except (SafetensorError, ValueError) as exc:
            raise RunDirError(f"{self.root / rel} is not a valid safetensors file: {exc}") from None

    # -- levels --------------------------------------------------------------------------
    def level_record(self, level: int) -> dict[str, Any]:
        return self.manifest.setdefault("levels", {}).setdefault(level_name(level), {})

    def level_complete(self, level: int) -> bool:
        return (
            self.manifest.get("levels", {}).get(level_name(level), {}).get("status") == "complete"
        )

    def completed_levels(self) -> list[int]:
        return sorted(
            int(k)
            for k, v in self.manifest.get("levels", {}).items()
            if v.get("status") == "complete"
        )
