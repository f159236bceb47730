"""A sweep file and the runs it expands to (docs/guide.md, "Sweeps"; docs/formats.md).

```toml
[base]
preset = "cpu-resnet20-cifar10"
set = ["data.root=/data/cifar10"]

[grid]
"imp.pretrain_epochs" = [1, 5]
seed = [0, 1, 2]
"model.name,data.name" = [["resnet20", "cifar10"], ["vgg16", "tinyimagenet"]]  # varied together

[slurm]
partition = "gpu"
time = 720  # minutes
```

Every grid point is the base plus one value per key, validated as a whole config before
any run starts. Its run directory is ``<slug>-<hash8>``: the slug names the values that
vary, the hash is of the config's settings that decide its numbers (where and how fast it
runs, and what is analysed, may change without making it another run).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prunescope.config import Config, build_config
from prunescope.config.load import closest_key, flatten, known_keys, toml_literal, tomllib
from prunescope.errors import ConfigError, UserInputError, shorten
from prunescope.rundir.files import read_regular
from prunescope.rundir.session import RESUMABLE_KEYS

# A grid is counted before it is expanded: each point is validated as a whole config
# (~10 ms), so a mistyped million-point grid would run for hours before any run starts.
MAX_RUNS = 10_000
# A hand-written sweep file is a few KB; the cap only keeps a wrong path from being read
# into memory.
MAX_SWEEP_FILE_BYTES = 16 * 2**20
# submitit writes [slurm] keys and values into the sbatch script, one per line: a newline in
# one (``partition = "gpu\ntouch X #"``) would start a shell line of its own.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SweepBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str | None = None
    config: Path | None = None  # relative to the sweep file
    set: list[str] = Field(default_factory=list)


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: SweepBase = Field(default_factory=SweepBase)
    # config key (or "key1,key2" varied together) -> the values it takes
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    # submitit executor parameters; see slurm.py for the short names
    slurm: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class SweepPoint:
    values: dict[str, Any]  # config key -> value, in grid order
    overrides: tuple[str, ...]  # the base's --set items, then this point's
    config: Config
    name: str  # <slug>-<hash8>

    def cli_args(self, base: SweepBase) -> list[str]:
        """``prunescope run`` arguments (without the run directory) for this point."""
        args = ["--preset", base.preset] if base.preset else []
        if base.config is not None:
            args += ["--config", str(base.config)]
        for item in self.overrides:
            args += ["--set", item]
        return args


def read_sweep_text(path: Path) -> str:
    """The sweep file as text. A symlink the user made is followed, but a FIFO or a device
    is refused rather than read (which would block, or never end)."""
    try:
        data = read_regular(Path(path).resolve(), MAX_SWEEP_FILE_BYTES)
    except OSError as exc:
        raise UserInputError(f"cannot read sweep file {path} ({exc.strerror or exc})") from None
    if len(data) > MAX_SWEEP_FILE_BYTES:
        raise UserInputError(f"sweep file {path} is larger than {MAX_SWEEP_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"sweep file {path} is not UTF-8 text (at byte offset {exc.start}); save it as UTF-8"
        ) from None


def printable(text: str) -> str:
    """``text`` with every control character escaped, so that it prints as one line."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def check_slurm_table(table: dict[str, Any], source: str) -> None:
    """Refuse a control character in any key or string of ``[slurm]``, nested ones included."""
    stack: list[tuple[str, Any]] = [("slurm", table)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((f"{where}.{key}", key))
                stack.append((f"{where}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif not isinstance(value, str | int | float | bool):  # a TOML date or time
            raise ConfigError(
                [
                    f"{source}: {printable(where)} is a {type(value).__name__}; submitit takes "
                    f"strings, numbers, booleans, lists and tables"
                ]
            )
        elif isinstance(value, str) and CONTROL.search(value):
            raise ConfigError(
                [
                    f"{source}: {printable(where)} holds a control character "
                    f"({shorten(value, 60)}); submitit writes it into a shell script"
                ]
            )


def load_sweep(path: Path) -> SweepFile:
    try:
        data = tomllib.loads(read_sweep_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"sweep file {path} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array
        raise UserInputError(f"sweep file {path} nests its values too deeply") from None
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [f"{path}: {field_name(e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from None
    check_slurm_table(sweep.slurm, str(path))
    if sweep.base.config is not None and not sweep.base.config.is_absolute():
        sweep.base.config = (Path(path).parent / sweep.base.config).resolve()
    return sweep


def field_name(loc: tuple) -> str:
    """A pydantic location as one printable line (a TOML key may hold a newline)."""
    return printable(".".join(map(str, loc)))


def grid_literal(value: Any) -> str:
    """A grid value as one line of TOML (:func:`~prunescope.config.load.toml_literal`)."""
    try:
        return toml_literal(value)
    except TypeError:
        raise UserInputError(f"a grid value must be a TOML value, got {value!r}") from None


def grid_axes(grid: dict[str, list[Any]]) -> list[tuple[list[str], list[list[Any]]]]:
    """Each grid entry as (keys, one list of values per choice); paired keys vary together."""
    keys_known = known_keys()
    axes = []
    for entry, choices in grid.items():
        keys = [k.strip() for k in entry.split(",")]
        for key in keys:
            if key not in keys_known:
                close = closest_key(key, keys_known)
                hint = f" (did you mean {close!r}?)" if close else ""
                raise ConfigError([f"grid key {key!r} is not a config key{hint}"])
        if not choices:
            raise ConfigError([f"grid key {entry!r} has no values"])
        rows = []
        for choice in choices:
            if len(keys) > 1 and not isinstance(choice, list):
                raise ConfigError(
                    [
                        f"grid {entry!r}: each choice is a list of {len(keys)} values, "
                        f"one per key; got {shorten(choice, 60)}"
                    ]
                )
            row = list(choice) if len(keys) > 1 else [choice]
            if len(row) != len(keys):
                raise ConfigError(
                    [f"grid {entry!r}: {choice!r} has {len(row)} values for {len(keys)} keys"]
                )
            rows.append(row)
        axes.append((keys, rows))
    return axes


def check_grid_size(axes: list[tuple[list[str], list[list[Any]]]], max_runs: int) -> int:
    """The number of grid points, counted from the axes before any point is built."""
    count = math.prod(len(rows) for _, rows in axes)
    if count > max_runs:
        raise UserInputError(
            f"the grid has {count:,} points, more than {max_runs:,}; "
            f"check the grid, or allow it with --max-runs {count}"
        )
    return count


def expand(sweep: SweepFile, max_runs: int = MAX_RUNS) -> list[SweepPoint]:
    """Every grid point as a validated config, in grid order (the last key varies fastest)."""
    axes = grid_axes(sweep.grid)
    check_grid_size(axes, max_runs)
    points, names = [], {}
    for combo in itertools.product(*(rows for _, rows in axes)):
        values = {
            k: v
            for (keys, _), row in zip(axes, combo, strict=True)
            for k, v in zip(keys, row, strict=True)
        }
        overrides = (*sweep.base.set, *(f"{k}={grid_literal(v)}" for k, v in values.items()))
        try:
            cfg = build_config(sweep.base.preset, sweep.base.config, list(overrides))
        except ConfigError as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the base"
            raise ConfigError([f"grid point {where}: {line}" for line in exc.lines]) from None
        except UserInputError as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the base"
            raise UserInputError(f"grid point {where}: {exc}") from None
        name = f"{slug(values)}-{config_hash(cfg)}"
        if name in names:
            raise ConfigError([f"grid points {names[name]} and {values} are the same run ({name})"])
        names[name] = values
        points.append(SweepPoint(values, overrides, cfg, name))
    return points


def slug(values: dict[str, Any]) -> str:
    """``pretrain_epochs5-seed1``: the last part of each varied key and its value."""
    if not values:
        return "base"
    parts = []
    for key, value in values.items():
        text = "_".join(map(str, value)) if isinstance(value, list) else str(value)
        text = text.rsplit(":", 1)[-1] if key == "model.name" else text
        parts.append(re.sub(r"[^A-Za-z0-9._]+", "_", f"{key.rsplit('.', 1)[-1]}{text}"))
    return "-".join(parts)[:80].strip("-_.") or "run"


def _decides_numbers(key: str) -> bool:
    return not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def config_hash(cfg: Config) -> str:
    """Eight hex digits of sha256 over the settings a resume may not change."""
    flat = flatten(cfg.model_dump(mode="json"))
    kept = {k: v for k, v in sorted(flat.items()) if _decides_numbers(k)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]
