"""Every config key with its value, description, default and allowed values:
``prunescope config`` (the resolved config as annotated TOML) and the generated key
reference ``docs/config.md`` (``prunescope config --markdown``; a test keeps it current).

Keys come from the schema and from the registries that own sections (each analysis's
``[analysis.<name>]``, each pruning method's ``[imp.<method>]``); the vocabularies that
registries close (models, datasets, pruning methods) are listed from them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from prunescope.config.load import toml_literal
from prunescope.config.schema import AnalysisSection, Config, ImpSection


@dataclass(frozen=True)
class Key:
    name: str  # dotted
    value: Any
    description: str
    default: Any
    allowed: str


def _vocabulary(name: str) -> str | None:
    """Choices a registry owns, by key."""
    if name == "model.name":
        from prunescope.models import model_names

        return f"one of {', '.join(model_names())}, or package.module:function"
    if name == "data.name":
        from prunescope.data import dataset_names

        return f"one of {', '.join(dataset_names())}"
    if name == "imp.method":
        from prunescope.pruning.registry import methods

        return f"one of {', '.join(methods())}"
    if name == "analysis.runtime.formats":
        from prunescope.runtime.formats import FORMATS

        return f"a list of auto or {', '.join(FORMATS)}"
    return None


def _bounds(metadata: list) -> list[str]:
    words = {at.Gt: ("gt", ">"), at.Ge: ("ge", ">="), at.Lt: ("lt", "<"), at.Le: ("le", "<=")}
    out = []
    for m in metadata:
        for kind, (attr, sign) in words.items():
            if isinstance(m, kind):
                out.append(f"{sign} {getattr(m, attr)}")
    return out


def _type_words(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_type_words(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" (or unset)" if type(None) in args else "")
    if origin is list:
        return f"a list of {_type_words(args[0])}" if args else "a list"
    if origin is dict:
        return "a table"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> Any:
    if field.default is not PydanticUndefined:
        return field.default
    if field.default_factory is not None:
        return field.default_factory()
    return None


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The sections a registry adds to ``model`` (analyses, pruning methods)."""
    if model is AnalysisSection:
        from prunescope.analysis.registry import settings_models

        return settings_models()
    if model is ImpSection:
        from prunescope.pruning.registry import settings_models as method_settings

        return method_settings()
    return {}


def keys(cfg: BaseModel, model: type[BaseModel] = Config, prefix: str = "") -> list[Key]:
    """Every key of ``cfg`` (a validated config or section), in schema order."""
    out = []
    subsections = []
    for name, field in model.model_fields.items():
        value = getattr(cfg, name)
        full = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            subsections.append((full, value, type(value)))
            continue
        allowed = _vocabulary(full) or ", ".join(
            [_type_words(field.annotation), *_bounds(field.metadata)]
        )
        out.append(Key(full, value, field.description or "", _default(field), allowed))
    for name, section in _sections(model).items():
        subsections.append((f"{prefix}{name}", getattr(cfg, name), section))
    for full, value, section in subsections:
        out.extend(keys(value, section, f"{full}."))
    return out


def _toml_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return toml_literal(value)


def annotated_toml(cfg: Config) -> str:
    """The config as TOML, each key preceded by its description, default and allowed values
    (an unset key as a comment: TOML has no null)."""
    lines, section = [], ""
    for k in keys(cfg):
        head, _, leaf = k.name.rpartition(".")
        if head != section:
            lines += ["", f"[{head}]"]
            section = head
        about = f"{k.description}; " if k.description else ""
        lines.append(f"# {about}default {_toml_value(k.default) or 'unset'}; {k.allowed}")
        value = _toml_value(k.value)
        lines.append(f"{leaf} = {value}" if value else f"# {leaf}: not set")
    return "\n".join(lines).lstrip("\n") + "\n"


def markdown_reference(cfg: Config) -> str:
    """``docs/config.md``: every key of the default config, as a table per section."""
    out = [
        "# Config keys",
        "",
        "Generated by `prunescope config --markdown` from the schema and the registries; "
        "`tests/test_config_command.py` keeps this page current. Set any key with "
        "`--set key=value` (read as TOML) or in a `--config` file.",
    ]
    section = None
    for k in keys(cfg):
        head = k.name.rpartition(".")[0] or "top level"
        if head != section:
            out += [
                "",
                f"## {head}",
                "",
                "| key | default | allowed | description |",
                "| --- | --- | --- | --- |",
            ]
            section = head
        cells = [f"`{k.name}`", f"`{_toml_value(k.default) or 'unset'}`", k.allowed, k.description]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"
