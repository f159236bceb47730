"""Opening a run directory for writing: create it, or resume it with a compatible config.

Nothing is created before the config has been checked against the machine (data,
device, model): a mistake the config could have caught leaves no run directory
behind. A directory that holds no trained state yet (a first run that failed
before its rewind point) is taken over by the next ``run``, whatever its config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunescope.config import Config, config_differences, config_to_toml
from prunescope.config.load import flatten
from prunescope.config.request import ConfigRequest
from prunescope.errors import RunDirError, UserInputError
from prunescope.rundir.checkpoint import META
from prunescope.rundir.layout import CONFIG, REWIND, RunDir, environment, now
from prunescope.rundir.lock import RunLock
from prunescope.rundir.redo import forget_levels_from
from prunescope.rundir.run_config import EditedConfig, read_run_config, record_config
from prunescope.wording import level_list

log = logging.getLogger("prunescope")

# Keys that may change when a run is resumed: where things are and how fast they
# run, what is analysed and reported, and how many levels to go to. Everything
# else decides the numbers the finished levels hold.
RESUMABLE_KEYS = (
    "device",
    "data.root",
    "data.download",
    "train.compile",
    "train.capture",
    "threads",
    "train.checkpoint_every",
    "train.eval_batch_size",
    "imp.levels",
    "analysis.",
    "report.",
    "track.",  # how a run is observed, not what it computes
)


# With --redo-from N the levels from N on are trained again, so training settings may
# change; what made the kept levels and the rewind point may not.
KEPT_BY_REDO = (
    "seed",
    "model.",
    "data.name",
    "data.image_size",
    "data.context",
    "data.train_subset",
    "data.test_subset",
    "imp.exclude",
    "imp.prunable_types",
    "imp.rewind",
    "imp.pretrain_epochs",
)
KEPT_BY_REDO_ZERO = ("model.", "data.name")


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in patterns)


def _resumable(key: str) -> bool:
    return _matches(key, RESUMABLE_KEYS)


def resumable_changes(stored: Config, cfg: Config, why: str) -> list[str]:
    """The keys ``cfg`` changes, refused unless every one may change on a resume."""
    diff = config_differences(stored, cfg)
    fixed = [k for k in diff if not _resumable(k)]
    if fixed:
        raise UserInputError(
            f"--set {', '.join(fixed)}: {why} (only where and how fast it runs may change)"
        )
    return diff


def open_run_dir(root: str | Path) -> tuple[RunDir, Config]:
    """Read-only access: the verified manifest and config of an existing run."""
    rd = RunDir(root)
    rd.load_manifest()
    return rd, read_run_config(rd)


def why_missing(rd: RunDir, levels: int, missing: list[int]) -> str:
    """Why levels cannot be read: "level 9 is not a level of RUN (0-8)" or "levels 5-8 of
    RUN are not trained yet (levels 0-4 of 0-8 complete)"."""
    beyond = [lv for lv in missing if lv < 0 or lv > levels]
    if beyond:
        word = "level" if len(beyond) == 1 else "levels"
        return f"{word} {level_list(beyond)} {'is' if len(beyond) == 1 else 'are'} not a level of {rd.root} (0-{levels})"
    word = "level" if len(missing) == 1 else "levels"
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"{word} {level_list(missing)} of {rd.root} {verb} not trained yet "
        f"({levels_summary(rd, levels)})"
    )


def levels_summary(rd: RunDir, levels: int) -> str:
    """ "level 0 of 0-8 complete", "levels 0-3 of 0-8 complete", "no level of 0-8 complete yet"."""
    done = [lv for lv in rd.completed_levels() if lv <= levels]
    if not done:
        return f"no level of 0-{levels} complete yet"
    word = "level" if len(done) == 1 else "levels"
    return f"{word} {level_list(done)} of 0-{levels} complete"


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and the parents of it that do not exist yet (deepest first)."""
    out = []
    for p in [root, *root.parents]:
        if p.exists() or p.is_symlink():
            break
        out.append(p)
    return out


class WriteSession:
    """Holds the lock while a run directory is written; creates or resumes it.

    ``preflight(cfg)`` runs before anything is created or changed and may refuse the
    config (data missing, no such device, a model that does not fit the data); what it
    returns is kept as ``self.prepared``.
    """

    def __init__(
        self,
        root: str | Path,
        request: ConfigRequest | Config | None = None,
        *,
        create: bool = True,
        redo_from: int | None = None,
        preflight: Callable[[Config], Any] | None = None,
    ):
        self.rd = RunDir(root)
        self.create = create
        self.redo_from = redo_from
        self.request = ConfigRequest.of(request)
        self.preflight = preflight
        self.prepared: Any = None
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
        made = _missing_folders(root)
        self.lock.acquire()
        self.rd.lock = self.lock
        try:
            self.cfg = self._open()
            rd = self.rd
            rd.session = {"started": now(), **environment(self.cfg.device)}
            rd.defer(lambda: rd.manifest["sessions"].append(rd.session))
        except BaseException:
            self.lock.release()
            if not self.rd.exists():  # refused before anything was created: leave nothing
                self.lock.path.unlink(missing_ok=True)
                for folder in made:
                    try:
                        folder.rmdir()
                    except OSError:
                        break
            raise
        return self

    def _check(self, cfg: Config) -> Config:
        if self.preflight is not None:
            self.prepared = self.preflight(cfg)
        return cfg

    def _create(self, cfg: Config) -> Config:
        self._check(cfg)
        self.rd.create(config_to_toml(cfg), environment(cfg.device), cfg.model.name, cfg.data.name)
        self.rd.manifest["config"] = cfg.model_dump(mode="json")
        return cfg

    def _open(self) -> Config:
        rd, request = self.rd, self.request
        if not rd.exists():
            if request is None:
                raise RunDirError(
                    f"{rd.root} is not a run directory yet; start one with --preset, --config or --set"
                )
            cfg = self._create(request.build())
            log.info("new run directory %s", rd.root)
            return cfg
        rd.load_manifest()
        rd.cleanup_temporaries()
        rd.reconcile_pending()
        if request is not None and self._holds_nothing_trained():
            cfg = request.build(self._stored_or_none())
            log.info("run directory %s holds no trained state yet: starting it afresh", rd.root)
            return self._create(cfg)
        stored, base = self._stored_config()
        cfg = request.build(base) if request is not None else base
        self._check_redo_range(cfg)
        self._check_changes(stored, cfg)
        self._check(cfg)
        if self.redo_from is not None:
            # before the new config is written: a crash in between must not leave
            # levels trained with the old settings under the new config
            forget_levels_from(rd, self.redo_from)
            self._record_changes(stored, cfg)
        else:  # recorded with the first result they produce, never by a command that fails
            rd.defer(lambda: self._record_changes(stored, cfg))
        log.info("run directory %s (%s)", rd.root, levels_summary(rd, cfg.imp.levels))
        return cfg

    def _holds_nothing_trained(self) -> bool:
        m = self.rd.manifest
        return not m["levels"] and REWIND not in m["files"] and META not in m["files"]

    def _stored_or_none(self) -> Config | None:
        try:
            return self._stored_config()[1]
        except RunDirError:
            return None

    def _stored_config(self) -> tuple[Config, Config]:
        """(what the run recorded, what a resume builds on): the same, except that with
        --redo-from a hand-edited config.toml is adopted for the levels trained again."""
        try:
            stored = read_run_config(self.rd)
        except EditedConfig as exc:
            if self.redo_from is None:
                raise
            log.info("adopting the edited %s from level %d on", CONFIG, self.redo_from)
            return exc.recorded, exc.edited
        return stored, stored

    def _check_redo_range(self, cfg: Config) -> None:
        if self.redo_from is not None and not 0 <= self.redo_from <= cfg.imp.levels:
            raise UserInputError(
                f"--redo-from {self.redo_from}: levels run from 0 to {cfg.imp.levels}"
            )

    def _check_changes(self, stored: Config, cfg: Config) -> None:
        diff = config_differences(stored, cfg)
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
                f"{self.rd.root} was made with a different config ({', '.join(fixed)} differ); {hint}"
            )

    def _record_changes(self, stored: Config, cfg: Config) -> None:
        rd = self.rd
        diff = config_differences(stored, cfg)
        edited = self.rd.check(CONFIG) is not None
        if not diff and not edited:
            if "config" not in rd.manifest:  # runs made before the manifest kept a copy
                rd.manifest["config"] = cfg.model_dump(mode="json")
            return
        if diff:
            log.info("resuming with changed settings: %s", ", ".join(diff))
            old, new = flatten(stored.model_dump(mode="json")), flatten(cfg.model_dump(mode="json"))
            rd.manifest.setdefault("config_history", []).append(
                {
                    "at": now(),
                    "redo_from": self.redo_from,
                    "changed": {k: {"old": old.get(k), "new": new.get(k)} for k in diff},
                }
            )
        record_config(rd, cfg)

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
