"""Reading and writing the tidy tables under ``analysis/`` (columns pinned in docs/formats.md)."""

from __future__ import annotations

import io

import pandas as pd

from prunescope.errors import RunDirError
from prunescope.rundir.layout import ANALYSIS, RunDir

# The pinned columns of every table (docs/formats.md, "Analysis tables"): filled by the module that
# writes each table (its analysis registers them), read by everything that reads one.
COLUMNS: dict[str, list[str]] = {}


def register_table(name: str, columns: list[str]) -> None:
    if name in COLUMNS and COLUMNS[name] != list(columns):
        raise ValueError(f"table {name!r} registered twice with other columns")
    COLUMNS[name] = list(columns)


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
    "method",
    "alpha_kind",
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
    text = [c for c in COLUMNS[name] if c in TEXT_COLUMNS]
    try:
        df = pd.read_csv(io.BytesIO(data), dtype={c: str for c in text})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{rd.path(rel)} is not a readable table ({str(exc)[:120]})") from None
    missing = [c for c in COLUMNS[name] if c not in df.columns]
    if missing:
        raise RunDirError(f"{rd.path(rel)} lacks columns {missing}")
    for c in COLUMNS[name]:
        if c in text:
            ok = not df[c].isna().any()
        elif c in INTEGER_COLUMNS:
            ok = pd.api.types.is_integer_dtype(df[c]) or df.empty
        else:
            ok = pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
            ok = ok or df.empty
        if not ok:
            raise RunDirError(
                f"{rd.path(rel)} is damaged: column {c!r} does not hold "
                f"{'text' if c in text else 'numbers'}"
            )
    return df


def has_table(rd: RunDir, name: str) -> bool:
    return rd.recorded(table_path(name))
