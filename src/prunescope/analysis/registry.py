"""The analysis registry: the one source of truth for what ``analyze`` can compute.

Each analysis module registers itself with its name, its tables (and their pinned
columns), the settings that change its numbers, the levels it runs on, and
whether ``run`` computes it by default. ``--only``'s choices and help, the
incremental bookkeeping in the manifest, the report's "fill it with" hints and
``status`` all come from here: adding an analysis touches its own module (and
its table columns) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from prunescope.analysis.tables import register_table

if TYPE_CHECKING:
    from prunescope.analysis.context import AnalysisContext
    from prunescope.config import Config


def every_level(cfg: Config, levels: list[int]) -> list[int]:
    return levels


def pruned_levels(cfg: Config, levels: list[int]) -> list[int]:
    """Levels compared with an earlier one (the baseline, the previous level): not level 0."""
    return [lv for lv in levels if lv > 0]


@dataclass(frozen=True)
class AnalysisSpec:
    name: str
    description: str
    tables: dict[str, list[str]]  # table name -> its pinned columns
    compute: Callable[[AnalysisContext, list[int]], dict[str, pd.DataFrame]]
    settings: Callable[[Config], dict]  # what changes its numbers (a change recomputes)
    levels: Callable[[Config, list[int]], list[int]] = every_level
    runs_network: bool = False  # forward passes: their precision is one of its settings
    default: bool = True  # computed by `run` and by `analyze` without --only


_REGISTRY: dict[str, AnalysisSpec] = {}


def register_analysis(spec: AnalysisSpec) -> AnalysisSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"analysis {spec.name!r} registered twice")
    for table, columns in spec.tables.items():
        register_table(table, columns)
    _REGISTRY[spec.name] = spec
    return spec


def analyses() -> dict[str, AnalysisSpec]:
    """Every registered analysis, in registration (network-independent first) order."""
    import prunescope.analysis  # noqa: F401  (registration)

    return dict(_REGISTRY)


def analysis_names(default_only: bool = False) -> list[str]:
    return [n for n, s in analyses().items() if s.default or not default_only]


def owner_of(table: str) -> str | None:
    """The analysis that writes ``table``."""
    return next((n for n, s in analyses().items() if table in s.tables), None)


def only_help() -> str:
    """``--only``'s help, from the registry."""
    parts = [
        f"{n}{'' if s.default else ' (not by default)'}: {s.description}"
        for n, s in analyses().items()
    ]
    return "comma-separated analyses; " + "; ".join(parts)
