"""Opening a run directory for writing: create it, or resume it with a compatible config."""

from __future__ import annotations

import logging
from pathlib import Path

from prunescope.config import (
    Config,
    config_differences,
    config_from_toml_text,
    config_to_toml,
)
from prunescope.config.load import flatten
from prunescope.errors import ConfigError, RunDirError, UserInputError
from prunescope.rundir.layout import CONFIG, RunDir, environment, now
from prunescope.rundir.lock import RunLock
from prunescope.rundir.redo import forget_levels_from

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


# With --redo-from N the levels from N on are trained again, so training settings may
# change; what made the kept levels and the rewind point may not.
KEPT_BY_REDO = (
    "seed",
    "model.",
    "data.name",
    "data.image_size",
    "data.train_subset",
    "data.test_subset",
    "imp.exclude",
    "imp.rewind",
    "imp.pretrain_epochs",
)
KEPT_BY_REDO_ZERO = ("model.", "data.name")


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in patterns)


def _resumable(key: str) -> bool:
    return _matches(key, RESUMABLE_KEYS)


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

    def __init__(
        self,
        root: str | Path,
        cfg: Config | None,
        device_name: str,
        create: bool = True,
        redo_from: int | None = None,
    ):
        self.rd = RunDir(root)
        self.create = create
        self.redo_from = redo_from
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
            if self.cfg_in is None:
                raise RunDirError(
                    f"{rd.root} is not a run directory yet; start one with --preset, --config or --set"
                )
            cfg = self.cfg_in
            rd.create(
                config_to_toml(cfg), environment(self.device_name), cfg.model.name, cfg.data.name
            )
            self.cfg = cfg
            log.info("new run directory %s", rd.root)
        else:
            rd.load_manifest()
            rd.cleanup_temporaries()
            rd.reconcile_pending()
            if not rd.recorded(CONFIG) and not rd.manifest["levels"] and self.cfg_in is not None:
                # killed while the run was being created: create it again
                rd.create(
                    config_to_toml(self.cfg_in),
                    environment(self.device_name),
                    self.cfg_in.model.name,
                    self.cfg_in.data.name,
                )
            stored = read_run_config(rd)
            if self.redo_from is not None:
                levels = (self.cfg_in or stored).imp.levels
                if not 0 <= self.redo_from <= levels:
                    raise UserInputError(
                        f"--redo-from {self.redo_from}: levels run from 0 to {levels}"
                    )
            if self.cfg_in is None:
                self.cfg = stored
                if self.redo_from is not None:
                    forget_levels_from(rd, self.redo_from)
            else:
                diff = config_differences(stored, self.cfg_in)
                if self.redo_from is None:
                    fixed = [k for k in diff if not _resumable(k)]
                    hint = (
                        "use --redo-from N to train level N and later ones again with the new settings, "
                        "another --run-dir, or no --preset/--config/--set to resume the run as it was"
                    )
                else:
                    kept = KEPT_BY_REDO_ZERO if self.redo_from == 0 else KEPT_BY_REDO
                    fixed = [k for k in diff if _matches(k, kept)]
                    hint = (
                        "these decide the levels before --redo-from and the rewind point; "
                        "use another --run-dir for them"
                    )
                if fixed:
                    raise RunDirError(
                        f"{rd.root} was made with a different config ({', '.join(fixed)} differ); {hint}"
                    )
                self.cfg = self.cfg_in
                if self.redo_from is not None:
                    # before the new config is written: a crash in between must not leave
                    # levels trained with the old settings under the new config
                    forget_levels_from(rd, self.redo_from)
                if diff:
                    log.info("resuming with changed settings: %s", ", ".join(diff))
                    old, new = (
                        flatten(stored.model_dump(mode="json")),
                        flatten(self.cfg.model_dump(mode="json")),
                    )
                    rd.manifest.setdefault("config_history", []).append(
                        {
                            "at": now(),
                            "redo_from": self.redo_from,
                            "changed": {k: {"old": old.get(k), "new": new.get(k)} for k in diff},
                        }
                    )
                    rd.write(CONFIG, config_to_toml(self.cfg).encode())
            log.info(
                "run directory %s (levels done: %s)",
                rd.root,
                ", ".join(map(str, rd.completed_levels())) or "none",
            )
        rd.manifest["sessions"].append({"started": now(), **environment(self.device_name)})
        rd.save_manifest()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
