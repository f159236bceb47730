"""What a finished ``run`` prints last: the accuracy from dense to the last level and each
finding's headline number, so the terminal answers "what did this run find?" before the
report is opened. The numbers come from ``summary.json`` and ``accuracy.csv``, the same
sources as the report's per-run table."""

from __future__ import annotations

import pandas as pd

from prunescope.analysis.registry import Plugins
from prunescope.report.build import headline
from prunescope.report.page import headline_cell, headlines


def accuracy_line(accuracy: pd.DataFrame) -> str:
    """Dense accuracy, the last level's, and the best pruned level's."""
    acc = accuracy.sort_values("level")
    dense, last = acc.iloc[0], acc.iloc[-1]
    line = (
        f"test accuracy {dense['test_accuracy']:.2%} dense (level {int(dense['level'])}), "
        f"{last['test_accuracy']:.2%} at {last['network_sparsity']:.1%} sparsity "
        f"(level {int(last['level'])})"
    )
    pruned = acc[acc["level"] > 0]
    if len(pruned) > 1:
        best = pruned.loc[pruned["test_accuracy"].idxmax()]
        line += (
            f"; best pruned level {int(best['level'])}: {best['test_accuracy']:.2%} "
            f"at {best['network_sparsity']:.1%}"
        )
    return line


def critical_line(crit: dict) -> str:
    """Where accuracy first fell more than the margin below dense, or that it never did."""
    margin = f"{crit['margin'] * 100:g} points"
    if crit.get("level") is None:
        return (
            f"critical sparsity: not reached (no pruned level fell more than {margin} below dense)"
        )
    return (
        f"critical sparsity: {crit['network_sparsity']:.1%} (level {crit['level']}, the first "
        f"more than {margin} below dense)"
    )


def summary_lines(summary: dict, accuracy: pd.DataFrame, plugins: Plugins = ()) -> list[str]:
    """The accuracy and critical-sparsity lines, then one line per other headline number
    the run has (a finding whose analysis did not run has none and is left out)."""
    values = headline(summary["findings"], plugins)
    labels = headlines(plugins)
    rows = [
        (labels[k][0], headline_cell(v, labels[k][1]))
        for k, v in values.items()
        if v is not None and k != "critical_sparsity"
    ]
    width = max((len(label) for label, _ in rows), default=0)
    return [
        accuracy_line(accuracy),
        critical_line(summary["findings"]["critical_sparsity"]),
        *(f"{label:<{width}}  {value}" for label, value in rows),
    ]
