"""Fig. 4: test accuracy against network sparsity, several runs overlaid, critical sparsity marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    HEIGHT,
    WIDTH,
    FigureFile,
    FigureInputs,
    pct,
    save,
    sparsity_axis,
)


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    top = max(float(acc["network_sparsity"].max()) for _, acc, _ in inp.runs)
    for label, acc, crit in inp.runs:
        acc = acc.sort_values("level")
        (line,) = ax.plot(
            acc["network_sparsity"], 100 * acc["test_accuracy"], marker="o", ms=3.5, label=label
        )
        if crit.get("level") is not None:
            ax.plot(
                [crit["network_sparsity"]],
                [100 * crit["test_accuracy"]],
                marker="X",
                ms=10,
                color=line.get_color(),
                zorder=5,
            )
            ax.axvline(crit["network_sparsity"], color=line.get_color(), ls="--", lw=0.8)
    sparsity_axis(ax, top)
    ax.set_ylabel("test accuracy (%)")
    margin = inp.critical.get("margin", 0.0)
    ax.set_title(
        f"Accuracy vs sparsity (× = critical sparsity: first level > {100 * margin:g} points below dense)"
    )
    ax.legend(loc="lower left")
    crit = inp.critical
    where = (
        f"critical sparsity {pct(crit['network_sparsity'])} (level {crit['level']})"
        if crit.get("level") is not None
        else "no level fell below the margin"
    )
    return [
        save(
            fig, out, "accuracy", f"Test accuracy against network sparsity (paper Fig. 4); {where}."
        )
    ]
