"""A run's config: ``config.toml`` as recorded, and what to say when it was edited by hand.

The manifest keeps a copy of the resolved config beside the file's sha256, so a
``config.toml`` changed after the fact is not just "damaged": prunescope can say
which keys differ from what the levels were trained with, and ``--redo-from N``
can adopt the edited file for level N and later ones.
"""

from __future__ import annotations

from typing import Any

from prunescope.config import Config, config_differences, config_from_toml_text, config_to_toml
from prunescope.config.load import flatten, validate
from prunescope.errors import ConfigError, RunDirError, shorten
from prunescope.rundir.files import read_regular
from prunescope.rundir.layout import CONFIG, RunDir

MAX_CONFIG_BYTES = 1 << 20


class EditedConfig(RunDirError):
    """``config.toml`` no longer matches its record, but both still parse as configs."""

    def __init__(self, message: str, recorded: Config, edited: Config):
        super().__init__(message)
        self.recorded = recorded
        self.edited = edited


def record_config(rd: RunDir, cfg: Config) -> None:
    """Write ``config.toml`` and keep the same settings in the manifest."""
    rd.manifest["config"] = cfg.model_dump(mode="json")
    rd.write(CONFIG, config_to_toml(cfg).encode())


def recorded_config(rd: RunDir) -> Config | None:
    data = rd.manifest.get("config")
    if not isinstance(data, dict):
        return None
    try:
        return validate(data)
    except ConfigError:
        return None


def _parse_config(text: str, rd: RunDir) -> Config:
    try:
        return config_from_toml_text(text, str(rd.path(CONFIG)))
    except ConfigError as exc:
        raise RunDirError(
            f"{rd.path(CONFIG)} does not validate with this prunescope ({exc.lines[0]}); "
            f"the run was made by another version"
        ) from None


def _file_config(rd: RunDir) -> Config | None:
    """What config.toml says now, whatever its record (None when it does not parse)."""
    try:
        data = read_regular(rd.safe_path(CONFIG), MAX_CONFIG_BYTES)
        return config_from_toml_text(data.decode("utf-8"), str(rd.path(CONFIG)))
    except (OSError, UnicodeDecodeError, ConfigError, RunDirError):
        return None


def _value(flat: dict[str, Any], key: str) -> str:
    return shorten(flat.get(key), 40)


def read_run_config(rd: RunDir) -> Config:
    """The run's config, verified against its record; an edit is explained, not just refused."""
    try:
        text = rd.read_text(CONFIG)
    except RunDirError as exc:
        problem = rd.check(CONFIG)
        recorded, edited = recorded_config(rd), _file_config(rd)
        if problem is None or recorded is None or edited is None:
            raise
        diff = config_differences(recorded, edited)
        old, new = (
            flatten(recorded.model_dump(mode="json")),
            flatten(edited.model_dump(mode="json")),
        )
        changes = "; ".join(
            f"{k}: {_value(old, k)} recorded, {_value(new, k)} in the file" for k in diff[:4]
        )
        raise EditedConfig(
            f"{rd.path(CONFIG)} no longer matches the config the run recorded "
            f"({changes or 'formatting only'}); every level is intact: restore the recorded "
            f"value(s), or keep the edit and train again from level N with "
            f"'prunescope run --run-dir {rd.root} --redo-from N'",
            recorded,
            edited,
        ) from exc
    return _parse_config(text, rd)
