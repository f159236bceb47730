"""Validated configuration: schema, presets, TOML files and ``--set`` overrides."""

from prunescope.config.load import (
    build_config,
    config_differences,
    config_from_toml_text,
    config_to_toml,
    preset_names,
    resolve,
)
from prunescope.config.schema import Config

__all__ = [
    "Config",
    "build_config",
    "config_differences",
    "config_from_toml_text",
    "config_to_toml",
    "preset_names",
    "resolve",
]
