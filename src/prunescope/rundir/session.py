"""Opening a run directory for writing: create it, or resume it with a compatible config."""

from __future__ import annotations

import logging
from pathlib import Path

from prunescope.config import (
    Config,
    config_differences,
    config_from_toml_text,
    config_to_toml,
    resolve,
)
from prunescope.errors import ConfigError, RunDirError
from prunescope.rundir.layout import CONFIG, RunDir, environment, now
from prunescope.rundir.lock import RunLock

log = logging.getLogger("prunescope")

# Keys that may change when a run is resumed: where things are and how fast they
# run, what is analysed and reported, and how many levels to go to. Everything
# else decides the numbers the finished levels hold.
RESUMABLE_KEYS = (
    "device",
    "data.root",
    "data.download",
    "train.compile",
    "train.checkpoint_every",
    "train.eval_batch_size",
    "imp.levels",
    "analysis.",
    "report.",
)


def _resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def read_run_config(rd: RunDir) -> Config:
    text = rd.read(CONFIG).decode("utf-8")
    try:
        return config_from_toml_text(text, str(rd.path(CONFIG)))
    except ConfigError as exc:
        raise RunDirError(
            f"{rd.path(CONFIG)} does not validate with this prunescope ({exc.lines[0]}); "
            f"the run was made by another version"
        ) from None


def open_run_dir(root: str | Path) -> tuple[RunDir, Config]:
    """Read-only access: the verified manifest and config of an existing run."""
    rd = RunDir(root)
    rd.load_manifest()
    return rd, read_run_config(rd)


class WriteSession:
    """Holds the lock while a run directory is written; creates or resumes it."""

    def __init__(self, root: str | Path, cfg: Config | None, device_name: str, create: bool = True):
        self.rd = RunDir(root)
        self.create = create
        self.cfg_in = cfg
        self.device_name = device_name
        self.lock = RunLock(Path(root))
        self.cfg: Config

    def __enter__(self) -> WriteSession:
        root = self.rd.root
        if not self.create:
            self.rd.load_manifest()  # an existing run, or a clear error before anything is written
        if root.exists() and not root.is_dir():
            raise RunDirError(f"{root} exists and is not a folder")
        if (
            not self.rd.exists()
            and root.exists()
            and any(p.name != ".lock" for p in root.iterdir())
        ):
            raise RunDirError(f"{root} exists, is not empty and is not a prunescope run directory")
        self.lock.acquire()
        try:
            self._open()
        except BaseException:
            self.lock.release()
            raise
        return self

    def _open(self) -> None:
        rd = self.rd
        if not rd.exists():
            cfg = self.cfg_in if self.cfg_in is not None else resolve(Config())
            rd.create(
                config_to_toml(cfg), environment(self.device_name), cfg.model.name, cfg.data.name
            )
            self.cfg = cfg
            log.info("new run directory %s", rd.root)
        else:
            rd.load_manifest()
            rd.cleanup_temporaries()
            stored = read_run_config(rd)
            if self.cfg_in is None:
                self.cfg = stored
            else:
                diff = config_differences(stored, self.cfg_in)
                fixed = [k for k in diff if not _resumable(k)]
                if fixed:
                    raise RunDirError(
                        f"{rd.root} was made with a different config ({', '.join(fixed)} differ); "
                        f"use another --run-dir, or run without --preset/--config/--set to resume it as it was"
                    )
                self.cfg = self.cfg_in
                if diff:
                    log.info("resuming with changed settings: %s", ", ".join(diff))
                    rd.write(CONFIG, config_to_toml(self.cfg).encode())
            log.info(
                "resuming run directory %s (levels done: %s)",
                rd.root,
                ", ".join(map(str, rd.completed_levels())) or "none",
            )
        rd.manifest["sessions"].append({"started": now(), **environment(self.device_name)})
        rd.save_manifest()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
