"""What a command asked for: a preset, a TOML file, ``--set`` items, or a whole config.

On a new run they build a config from the defaults (preset first, then the file,
then ``--set``). On a resume, ``--set`` alone applies on top of the config the run
recorded: ``prunescope run --run-dir D --set train.checkpoint_every=1`` changes one
key of that run, not of the built-in defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunescope.config.load import apply_overrides, build_config, resolve, validate
from prunescope.config.schema import Config
from prunescope.trust import code_names, vouch


@dataclass(frozen=True)
class ConfigRequest:
    preset: str | None = None
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()
    config: Config | None = None  # a config built by code (tests, sweeps), used as it is

    @classmethod
    def of(cls, cfg: Config | ConfigRequest | None) -> ConfigRequest | None:
        return ConfigRequest(config=cfg) if isinstance(cfg, Config) else cfg

    @property
    def complete(self) -> bool:
        """True when it names a whole config (not just changes to a stored one)."""
        return self.config is not None or self.preset is not None or self.config_file is not None

    def build(self, stored: Config | None = None) -> Config:
        """The config asked for; the code it names itself is vouched for (a stored config's
        code is not: :mod:`prunescope.trust`)."""
        if self.config is not None:  # prunescope's own code passes stored configs this way
            base = self.config
        elif self.complete or stored is None:
            return build_config(self.preset, self.config_file, list(self.overrides))
        else:
            base = stored
        if not self.overrides:
            return base
        vouch(code_names(apply_overrides({}, list(self.overrides))))
        data = base.model_dump(mode="json", exclude_none=True)
        return resolve(validate(apply_overrides(data, list(self.overrides))))
