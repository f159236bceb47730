"""Reading and writing the tidy tables under ``analysis/`` (columns pinned in docs/formats.md)."""

from __future__ import annotations

import io

import pandas as pd

from prunescope.errors import RunDirError
from prunescope.rundir.layout import ANALYSIS, RunDir

# The pinned columns of every table (docs/formats.md, "Analysis tables"): filled by the module that
# writes each table (its analysis registers them), read by everything that reads one.
COLUMNS: dict[str, list[str]] = {}
KINDS: dict[str, dict[str, str]] = {}  # table -> column -> "text", "integer", "bool"


def register_table(name: str, columns: list[str], kinds: dict[str, str] | None = None) -> None:
    """A table's pinned columns; ``kinds`` says which hold text, integers or booleans where
    the shared sets below do not (numbers otherwise)."""
    if name in COLUMNS and COLUMNS[name] != list(columns):
        raise ValueError(f"table {name!r} registered twice with other columns")
    COLUMNS[name] = list(columns)
    KINDS[name] = {c: k for c, k in (kinds or {}).items() if c in columns}


def kind_of(table: str, column: str) -> str:
    declared = KINDS.get(table, {}).get(column)
    if declared:
        return declared
    if column in TEXT_COLUMNS:
        return "text"
    return "integer" if column in INTEGER_COLUMNS else "number"


# What each pinned column holds. Tables are read back from run directories that may
# come from someone else: a column of the wrong kind is a damaged table, never text
# that reaches a page or a figure label as if it were a number.
TEXT_COLUMNS = {
    "stage",
    "layer",
    "group",
    "reference",
    "metric",
    "format",
    "device",
}
INTEGER_COLUMNS = {
    "level",
    "reference_level",
    "neuron",
    "fan_in",
    "zeros",
    "weights",
    "neurons",
    "fully_pruned",
    "count",
}


def empty_table(name: str) -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS[name])


def table_path(name: str) -> str:
    return f"{ANALYSIS}/{name}.csv"


def csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def write_table(rd: RunDir, name: str, df: pd.DataFrame) -> None:
    cols = COLUMNS[name]
    if list(df.columns) != cols:
        raise ValueError(f"table {name} has columns {list(df.columns)}, expected {cols}")
    df = df.sort_values(
        [
            c
            for c in (
                "level",
                "reference",
                "alpha",
                "stage",
                "layer",
                "neuron",
                "metric",
                "bin_low",
            )
            if c in cols
        ],
        kind="stable",
        key=_sort_key(rd, cols),
    )
    rd.write(table_path(name), csv_bytes(df.reset_index(drop=True)))


def _sort_key(rd: RunDir, cols: list[str]):
    # Stages and layers keep network order (from the model), not alphabetical order.
    order = rd.manifest.get("layer_order", {})
    stages = {s: i for i, s in enumerate(order.get("stages", []))}
    layers = {name: i for i, name in enumerate(order.get("layers", []))}

    def key(series: pd.Series) -> pd.Series:
        if series.name == "stage" and stages:
            return series.map(lambda s: stages.get(s, len(stages)))
        if series.name == "layer" and layers:
            return series.map(lambda s: layers.get(s, len(layers)))
        return series

    return key


def read_table(rd: RunDir, name: str) -> pd.DataFrame:
    rel = table_path(name)
    data = rd.read(rel)
    kinds = {c: kind_of(name, c) for c in COLUMNS[name]}
    text = [c for c, k in kinds.items() if k == "text"]
    try:
        df = pd.read_csv(io.BytesIO(data), dtype={c: str for c in text})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{rd.path(rel)} is not a readable table ({str(exc)[:120]})") from None
    missing = [c for c in COLUMNS[name] if c not in df.columns]
    if missing:
        raise RunDirError(f"{rd.path(rel)} lacks columns {missing}")
    for c, kind in kinds.items():
        if not (df.empty or _holds(df[c], kind)):
            what = {"text": "text", "bool": "True/False"}.get(kind, "numbers")
            raise RunDirError(f"{rd.path(rel)} is damaged: column {c!r} does not hold {what}")
    return df


def _holds(column: pd.Series, kind: str) -> bool:
    if kind == "text":
        return not column.isna().any()
    if kind == "bool":
        return pd.api.types.is_bool_dtype(column)
    if kind == "integer":
        return pd.api.types.is_integer_dtype(column)
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def has_table(rd: RunDir, name: str) -> bool:
    return rd.recorded(table_path(name))
