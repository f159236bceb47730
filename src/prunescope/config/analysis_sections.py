"""Config sections whose models live with their registries: ``[analysis.<name>]`` (each
analysis's settings, a user's plugin included) and ``[imp.<method>]`` (each pruning
method's).

The schema cannot list these itself (each analysis and method keeps its settings beside
its code), so ``[analysis]`` and ``[imp]`` accept extra keys, and a before-validator
replaces each by its registered model, defaults filled in. A bad value, or a key that no
registry entry owns, is one config-error line naming ``analysis.<name>.<key>``; inside
:func:`prunescope.config.load.validate` those lines join pydantic's own, so every bad
field of a config is reported at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ValidationError

from prunescope.errors import ConfigError

_COLLECTED: ContextVar[list[str] | None] = ContextVar("prunescope_section_errors", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Gather section errors instead of raising them (``validate`` adds pydantic's)."""
    lines: list[str] = []
    token = _COLLECTED.set(lines)
    try:
        yield lines
    finally:
        _COLLECTED.reset(token)


def _report(lines: list[str]) -> None:
    collected = _COLLECTED.get()
    if collected is None:
        raise ConfigError(lines)
    collected.extend(lines)


def registered_sections(
    data: Any, models: dict[str, type[BaseModel]], where: str, fixed: set[str]
) -> Any:
    """``data`` (the raw section) with every registered subsection validated by its model,
    defaults filled in; an unknown key or a bad value is reported (and left out)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key in [k for k in data if k not in fixed and k not in models]:
        from prunescope.config.load import closest_key, known_keys

        close = closest_key(f"{where}.{key}", known_keys())
        hint = f" (did you mean {close!r}?)" if close else ""
        _report([f"unknown config key '{where}.{key}'{hint}"])
        del data[key]
    for name, model in models.items():
        raw = data.get(name, {})
        if isinstance(raw, BaseModel):
            continue  # validated already (a config copied or built by code)
        try:
            data[name] = model.model_validate(raw)
        except ValidationError as exc:
            from prunescope.config.load import format_validation_error

            _report(format_validation_error(exc, prefix=f"{where}.{name}."))
            data[name] = model()
    return data


def analysis_sections(data: Any, fixed: set[str]) -> Any:
    """``[analysis]``: the plugins it names are imported first (trusted as user code)."""
    from prunescope.analysis.plugins import load_plugins
    from prunescope.analysis.registry import settings_models

    plugins = data.get("plugins", []) if isinstance(data, dict) else []
    if not (isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)):
        return data  # pydantic reports the field
    load_plugins(plugins)
    return registered_sections(data, settings_models(plugins), "analysis", fixed)


def method_sections(data: Any, fixed: set[str]) -> Any:
    from prunescope.pruning.registry import settings_models

    return registered_sections(data, settings_models(), "imp", fixed)
