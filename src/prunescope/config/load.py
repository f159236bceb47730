"""Build a validated config from presets, TOML files and ``--set`` overrides.

Every error a user can make ends in a :class:`ConfigError` holding one line per
bad field: where it is, what was given, and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from prunescope.config.analysis_sections import collecting
from prunescope.config.schema import AnalysisSection, Config, ImpSection
from prunescope.errors import ConfigError
from prunescope.trust import code_names, vouch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_PACKAGE = "prunescope.presets"


def preset_names() -> list[str]:
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def preset_text(name: str) -> str:
    if name not in preset_names():
        close = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError([f"unknown preset {name!r}{hint}; presets: {', '.join(preset_names())}"])
    return resources.files(PRESET_PACKAGE).joinpath(f"{name}.toml").read_text()


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per nested array
        raise ConfigError([f"{source}: values nested too deeply"]) from None


def read_toml_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file {str(p)!r} does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config file {str(p)!r} cannot be read: {exc}"]) from None
    return parse_toml(text, str(p))


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value``: the value is read as TOML (``0.2``, ``["fc"]``, ``true``), else as a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([f"--set {item!r}: expected KEY=VALUE, e.g. --set imp.rate=0.2"])
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError([f"--set {item!r}: {key!r} is not a dotted key like imp.rate"])
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError([f"--set {item!r}: {where} is a value, not a section"])
            node = child
        node[parts[-1]] = value
    return out


def known_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config (the analyses' sections from their registry)."""
    keys = []
    for name, field in model.model_fields.items():
        full = f"{prefix}{name}"
        keys.append(full)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(known_keys(ann, f"{full}."))
    sections = {}
    if model is AnalysisSection:
        from prunescope.analysis.registry import settings_models as sections_of
    elif model is ImpSection:
        from prunescope.pruning.registry import settings_models as sections_of
    else:
        sections_of = dict
    sections = sections_of()
    for name, section in sections.items():
        keys.append(f"{prefix}{name}")
        keys.extend(known_keys(section, f"{prefix}{name}."))
    return keys


def _format_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Names people write for a key that prunescope spells otherwise (other tools' names).
SYNONYMS = {
    "learning_rate": "lr",
    "lr_rate": "lr",
    "wd": "weight_decay",
    "bs": "batch_size",
    "pruning_rate": "rate",
    "prune_rate": "rate",
    "sparsity_rate": "rate",
    "iterations": "levels",
    "rounds": "levels",
    "arch": "name",
    "architecture": "name",
    "dataset": "name",
    "data_dir": "root",
    "path": "root",
    "rewind_epoch": "pretrain_epochs",
    "warmup": "warmup_epochs",
}


def closest_key(loc: str, keys: list[str]) -> str | None:
    """The key meant: a synonym in the same section, else the closest name in that section,
    else the closest full key."""
    section, _, last = loc.rpartition(".")
    siblings = [k for k in keys if k.rpartition(".")[0] == section]
    names = {k.rpartition(".")[2]: k for k in siblings}
    if SYNONYMS.get(last) in names:
        return names[SYNONYMS[last]]
    close = difflib.get_close_matches(last, list(names), n=1, cutoff=0.5)
    if close:
        return names[close[0]]
    close = difflib.get_close_matches(loc, keys, n=1, cutoff=0.6)
    return close[0] if close else None


def _list_hint(loc: str, value: Any) -> str:
    """A bare string where a list is wanted: show the TOML list (imp.exclude=fc -> ["fc"])."""
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else []
    if not items:
        return ""
    return f" (write --set '{loc}={json.dumps(items)}')"


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per bad field; ``prefix`` is where the validated section sits
    (``analysis.zeroing.``)."""
    keys = known_keys()
    lines = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = closest_key(loc, keys)
            hint = f" (did you mean {close!r}?)" if close else ""
            lines.append(f"unknown config key {loc!r}{hint}")
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "list_type":
            msg += _list_hint(loc, err.get("input"))
        where = f"{loc} = {_format_value(err.get('input'))}: " if loc else ""
        lines.append(f"{where}{msg}")
    return lines


def validate(data: dict[str, Any]) -> Config:
    """The config, or one :class:`ConfigError` holding a line for every bad field (the
    registered sections' included: :mod:`prunescope.config.analysis_sections`)."""
    with collecting() as section_errors:
        try:
            cfg = Config.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc) + section_errors) from None
    if section_errors:
        raise ConfigError(section_errors)
    return cfg


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Defaults, then a preset, then a file, then ``--set`` items; validated and resolved."""
    data: dict[str, Any] = {}
    if preset is not None:
        data = deep_merge(data, parse_toml(preset_text(preset), f"preset {preset!r}"))
    if config_file is not None:
        data = deep_merge(data, read_toml_file(config_file))
    data = apply_overrides(data, overrides or [])
    cfg = validate(data)
    vouch(code_names(cfg))  # the caller's own config: its code may be imported
    return resolve(cfg)


def resolve(cfg: Config) -> Config:
    """Write out the defaults that depend on other choices (classifier, image size)."""
    from prunescope.data import data_kind, dataset_spec

    cfg = cfg.model_copy(deep=True)
    spec = dataset_spec(cfg.data.name)
    data_kind(spec.kind).resolve(cfg.data, spec)
    if cfg.imp.exclude is None:
        cfg.imp.exclude = default_exclude(cfg)
    return cfg


def default_exclude(cfg: Config) -> list[str]:
    """A built-in model's classifier; for a user's model, its ``classifier_layers`` or the
    layer that produces its output, which needs the model built with the config's
    prunable types and run on a batch of its data."""
    from prunescope.models import is_user_model, model_spec

    if not is_user_model(cfg.model.name):
        return list(model_spec(cfg.model.name).classifier)
    from prunescope.data import prepare_from_config
    from prunescope.models.build import model_from_config
    from prunescope.models.user import default_classifier

    data = prepare_from_config(cfg)
    model = model_from_config(cfg, data.model_inputs())
    return default_classifier(model, data.probe_batch()[0])


def toml_literal(value: Any) -> str:
    """A value as one line of TOML that ``--set`` reads back as the same value (lists and
    tables inline); TypeError for what TOML cannot hold."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_literal(k)} = {toml_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def config_to_toml(cfg: Config) -> str:
    """The resolved config as TOML; unset optional keys are listed as comments (TOML has no null)."""
    data = cfg.model_dump(mode="json")
    unset: dict[str, list[str]] = {}

    def strip(node: dict[str, Any], path: str) -> dict[str, Any]:
        out = {}
        for key, value in node.items():
            if value is None:
                unset.setdefault(path, []).append(key)
            elif isinstance(value, dict):
                out[key] = strip(value, f"{path}.{key}" if path else key)
            else:
                out[key] = value
        return out

    text = tomli_w.dumps(strip(data, ""))
    lines = text.splitlines()
    out_lines = []
    for line in lines:
        out_lines.append(line)
        if line.startswith("[") and line.endswith("]"):
            for key in unset.get(line[1:-1], []):
                out_lines.append(f"# {key}: not set")
    header = [f"# {key}: not set" for key in unset.get("", [])]
    return "\n".join(header + out_lines) + "\n"


def config_from_toml_text(text: str, source: str) -> Config:
    return validate(parse_toml(text, source))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{full}."))
        else:
            out[full] = value
    return out


def config_differences(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    fa, fb = flatten(a.model_dump(mode="json")), flatten(b.model_dump(mode="json"))
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
