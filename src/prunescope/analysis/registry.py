"""The analysis registry: the one source of truth for what ``analyze`` computes and what
the report makes of it.

An analysis registers itself once, with everything that belongs to it:

- its name, description, and the tables it writes (with their pinned columns);
- ``compute``: its tables for some levels (:class:`~prunescope.analysis.context.AnalysisContext`);
- ``settings``: the pydantic model of its ``[analysis.<name>]`` config section (the config
  schema, ``prunescope config``, ``--set`` validation and key hints read it from here),
  and ``depends_on``: what in the config changes its numbers (a change recomputes);
- the levels it runs on, whether it runs the network and whether ``run`` computes it;
- its report parts (:class:`ReportPart`): ``finding`` (numbers from tables, into
  ``summary.json``), ``sentences`` (the finding in words), ``headlines`` (its numbers in
  the per-run table) and ``figures`` (drawn from tables and findings, never from
  checkpoints).

``--only``'s choices and help, the preflight of test subsets, the manifest's bookkeeping,
the report's figures, findings, sentences and per-run table and ``status`` all loop over
this registry. Adding an analysis is its own module (or folder) and one import line in
``prunescope/analysis/__init__.py``; a user's analysis is a module named in
``analysis.plugins`` (``docs/extending.md``). Report parts that are not analyses (the
accuracy curve, the lottery controls) register with :func:`register_part`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from prunescope.analysis.tables import register_table

if TYPE_CHECKING:
    from pydantic import BaseModel

    from prunescope.analysis.context import AnalysisContext
    from prunescope.config import Config


def every_level(cfg: Config, levels: list[int]) -> list[int]:
    return levels


def pruned_levels(cfg: Config, levels: list[int]) -> list[int]:
    """Levels compared with an earlier one (the baseline, the previous level): not level 0."""
    return [lv for lv in levels if lv > 0]


Sentence = tuple[str, str]  # (title, text)


@dataclass(frozen=True)
class FindingInputs:
    """What a finding reads: tables only, and what the run says of its model."""

    tables: dict[str, pd.DataFrame]
    stage_order: list[str]
    exclude: list[str]
    critical: dict  # the accuracy part's critical sparsity (level None: not reached)
    layer_types: dict[str, str] = field(default_factory=dict)
    controls: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)

    def has(self, table: str) -> bool:
        return table in self.tables and not self.tables[table].empty


@dataclass(frozen=True)
class SentenceInputs:
    summary: dict[str, Any]
    pruned_levels: list[int]
    batchnorm: bool = True  # the model has BatchNorm (what caveats say)


@dataclass(frozen=True)
class Figure:
    """A figure: ``draw(inputs, folder)`` writes its files; drawn when a table it ``needs``
    has rows."""

    draw: Callable[[Any, Path], list]  # (FigureInputs, folder) -> [FigureFile]
    needs: tuple[str, ...]


@dataclass(frozen=True)
class Headline:
    """One number of a part's finding in the per-run table."""

    label: str
    kind: str  # "pct", "num" or "int"
    value: Callable[[dict[str, Any]], float | None]  # from the whole summary


@dataclass(frozen=True)
class ReportPart:
    """What the report makes of one analysis (or of the accuracy curve, or the controls)."""

    name: str
    finding: Callable[[FindingInputs], dict[str, Any]] | None = None  # summary keys -> values
    sentences: Callable[[SentenceInputs], list[Sentence]] | None = None
    headlines: dict[str, Headline] = field(default_factory=dict)
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class AnalysisSpec(ReportPart):
    description: str = ""
    tables: dict[str, list[str]] = field(default_factory=dict)  # table -> its pinned columns
    column_kinds: dict[str, str] = field(default_factory=dict)  # column -> text/integer/bool
    compute: Callable[[AnalysisContext, list[int]], dict[str, pd.DataFrame]] | None = None
    settings: type[BaseModel] | None = None  # its [analysis.<name>] section
    depends_on: Callable[[Config], dict] = lambda cfg: {}  # a change recomputes its tables
    levels: Callable[[Config, list[int]], list[int]] = every_level
    runs_network: bool = False  # forward passes: their precision is one of its settings
    default: bool = True  # computed by `run` and by `analyze` without --only
    # also computed on a run's control branches by `analyze RUN`; False for costly measures
    # the controls' report never reads (measured: `runtime` on the showcase run with three
    # branches went on to time every branch, about 4x the command's time)
    on_branches: bool = True


_PARTS: dict[str, ReportPart] = {}  # every part, analyses included, in registration order
_OWNER: dict[str, str] = {}  # part -> the module that registered it

Plugins = Iterable[str]  # a config's analysis.plugins


def _register(part: ReportPart) -> None:
    if part.name in _PARTS:
        raise ValueError(f"analysis or report part {part.name!r} registered twice")
    _PARTS[part.name] = part
    _OWNER[part.name] = sys._getframe(2).f_globals.get("__name__", "")


def register_analysis(spec: AnalysisSpec) -> AnalysisSpec:
    if spec.compute is None:
        raise ValueError(f"analysis {spec.name!r} has no compute function")
    _register(spec)
    for table, columns in spec.tables.items():
        register_table(table, columns, spec.column_kinds)
    return spec


def register_part(part: ReportPart) -> ReportPart:
    """A report part that no ``analyze`` computes (the accuracy curve, the controls)."""
    _register(part)
    return part


def _active(name: str, plugins: Plugins) -> bool:
    """Built-in parts always; a plugin's only for a config that names its module (a
    plugin imported for one run never joins another's analyses)."""
    owner = _OWNER.get(name, "")
    return owner.startswith("prunescope.") or any(
        owner == p or owner.startswith(f"{p}.") for p in plugins
    )


def report_parts(plugins: Plugins = ()) -> list[ReportPart]:
    """Every part of the report, in the order the page gives them."""
    import prunescope.analysis  # noqa: F401  (registration)

    plugins = tuple(plugins)
    return [p for n, p in _PARTS.items() if _active(n, plugins)]


def analyses(plugins: Plugins = ()) -> dict[str, AnalysisSpec]:
    """Every analysis, in registration (network-independent first) order: the built-in ones
    and those of ``plugins``."""
    return {p.name: p for p in report_parts(plugins) if isinstance(p, AnalysisSpec)}


def analysis_names(default_only: bool = False, plugins: Plugins = ()) -> list[str]:
    return [n for n, s in analyses(plugins).items() if s.default or not default_only]


def owner_of(table: str, plugins: Plugins = ()) -> str | None:
    """The analysis that writes ``table``."""
    return next((n for n, s in analyses(plugins).items() if table in s.tables), None)


def settings_models(plugins: Plugins = ()) -> dict[str, type[BaseModel]]:
    """``[analysis.<name>]`` sections: each analysis's settings model."""
    return {n: s.settings for n, s in analyses(plugins).items() if s.settings is not None}


def only_help() -> str:
    """``--only``'s help, from the registry (the built-in analyses)."""
    parts = [
        f"{n}{'' if s.default else ' (not by default)'}: {s.description}"
        for n, s in analyses().items()
    ]
    return "comma-separated analyses (and your plugins'); " + "; ".join(parts)
