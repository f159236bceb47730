"""``[analysis.<name>]`` sections, validated by the settings models the analyses register.

The config schema cannot list the analyses' sections itself (each analysis keeps its
settings beside its code, and a user's plugin brings its own), so ``[analysis]`` accepts
any key and this validates each against the registry once the plugins it names are
imported. A bad value is one config-error line naming ``analysis.<name>.<key>``.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from prunescope.errors import ConfigError

if TYPE_CHECKING:
    from prunescope.config.schema import AnalysisSection


def validate_sections(section: AnalysisSection) -> None:
    """Every registered analysis's settings in its model (defaults filled in); a section
    no analysis registers is refused, with the name meant."""
    from prunescope.analysis.plugins import load_plugins
    from prunescope.analysis.registry import settings_models

    load_plugins(section.plugins)
    models = settings_models(section.plugins)
    extra = section.__pydantic_extra__ if section.__pydantic_extra__ is not None else {}
    unknown = [k for k in extra if k not in models]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(models), n=1)
        hint = f" (did you mean 'analysis.{close[0]}'?)" if close else ""
        raise ConfigError(
            [
                f"unknown config key 'analysis.{unknown[0]}'{hint}; analyses with settings: "
                f"{', '.join(models)}"
            ]
        )
    for name, model in models.items():
        raw = extra.get(name, {})
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        try:
            extra[name] = model.model_validate(raw)
        except ValidationError as exc:
            from prunescope.config.load import format_validation_error

            raise ConfigError(format_validation_error(exc, prefix=f"analysis.{name}.")) from None
