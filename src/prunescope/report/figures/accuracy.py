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
    run_styles,
    save,
    sparsity_axis,
)

CONTROL_LINESTYLE = (0, (1, 1))  # densely dotted: none of the runs' own line styles


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT + 0.4), layout="constrained")
    top = max(float(r.accuracy["network_sparsity"].max()) for r in inp.runs)
    # each run styled as on every overlay (colour, line style, marker); controls apart
    styles = iter(run_styles(len(inp.runs)))
    for run in inp.runs:
        acc = run.accuracy.sort_values("level")
        style = next(styles)
        (line,) = ax.plot(
            acc["network_sparsity"],
            100 * acc["test_accuracy"],
            color=style.colour,
            marker="x" if run.control else style.marker,
            ms=3,
            lw=1.0 if run.control else 1.3,
            ls=CONTROL_LINESTYLE if run.control else style.linestyle,
            label=run.label,
        )
        if run.band is not None:
            b = run.band.sort_values("level")
            ax.fill_between(
                b["network_sparsity"],
                100 * b["low"],
                100 * b["high"],
                color=line.get_color(),
                alpha=0.2,
                lw=0,
            )
        if run.critical.get("level") is not None:
            ax.plot(
                [run.critical["network_sparsity"]],
                [100 * run.critical["test_accuracy"]],
                marker="X",
                ms=8,
                color=line.get_color(),
                zorder=5,
                ls="none",
            )
    sparsity_axis(ax, top, remaining_axis=True)
    ax.set_ylabel(f"test {inp.metric} (%)")
    margin = inp.critical.get("margin", 0.0)
    # below the axes, never over the data, however many runs
    fig.legend(loc="outside lower center", ncols=min(3, len(inp.runs)))
    crit = inp.critical
    where = (
        f"critical sparsity {pct(crit['network_sparsity'])} (level {crit['level']}, marked ×: the "
        f"first level more than {100 * margin:g} points below the dense network)"
        if crit.get("level") is not None
        else f"no level fell more than {100 * margin:g} points below the dense network"
    )
    return [
        save(
            fig,
            out,
            "accuracy",
            f"Test {inp.metric} against network sparsity (paper Fig. 4). The x axis is "
            "logarithmic in the weights remaining (top axis), so every pruning level of a fixed rate is one "
            f"equal step; {where}.{_extras(inp)}",
        )
    ]


def _extras(inp: FigureInputs) -> str:
    out = ""
    if any(r.band is not None for r in inp.runs):
        out += " Replicates (runs that differ only in the seed) are drawn as their mean with a "
        out += "shaded 95% confidence band (Student's t over the seeds)."
    if any(r.control for r in inp.runs):
        out += " Dotted (×): control branches of the first run, trained with its data order and "
        out += "schedule at its sparsities."
    return out
