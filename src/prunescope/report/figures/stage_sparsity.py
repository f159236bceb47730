"""Fig. 7: each stage's sparsity against network sparsity, with the unit diagonal; in a
report on several runs, one panel per stage with a line per run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from prunescope.report.figures.common import (
    HEIGHT,
    OVERLAY_NOTE,
    FigureFile,
    FigureInputs,
    compared_with,
    mark_critical,
    overlaid,
    panel_grid,
    run_line,
    run_styles,
    runs_legend,
    save,
    stage_styles,
)
from prunescope.report.findings import pruned_stage_sparsity

Lines = dict[str, pd.DataFrame]  # stage or group -> its rows (network_sparsity, sparsity)


def stage_lines(layers: pd.DataFrame, order: list[str], exclude: list[str]) -> Lines:
    st = pruned_stage_sparsity(layers, order, exclude)
    return {stage: st[st["stage"] == stage] for stage in dict.fromkeys([*order, *st["stage"]])}


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    excluded = f" Excluded from pruning: {', '.join(inp.exclude)}." if inp.exclude else ""
    caption = (
        "Sparsity of each stage (its pruned layers) against network sparsity (paper Fig. 7); "
        f"above the diagonal a stage is pruned more than the network as a whole.{excluded}"
    )
    runs = [
        (r.label, stage_lines(r.tables["sparsity_layers"], r.stage_order, r.exclude))
        for r in compared_with(inp, "sparsity_layers")
    ]
    if not runs:  # figure inputs built by hand, without the runs
        runs = [("", stage_lines(inp.tables["sparsity_layers"], inp.stage_order, inp.exclude))]
    return [sparsity_lines(inp, runs, out, name="stage_sparsity", what="stage", caption=caption)]


def sparsity_lines(
    inp: FigureInputs,
    runs: list[tuple[str, Lines]],
    out: Path,
    *,
    name: str,
    what: str,
    caption: str,
) -> FigureFile:
    """One line per stage or group: its sparsity against network sparsity, the diagonal; for
    several runs, one panel per stage or group and a line per run."""
    if overlaid(inp) and len(runs) > 1:
        return _overlay(runs, out, name=name, what=what, caption=caption + OVERLAY_NOTE)
    lines = runs[0][1]
    fig, ax = plt.subplots(figsize=(5.0, HEIGHT), layout="constrained")
    styles = stage_styles(list(lines))
    for label, g in lines.items():
        if not g.empty:
            s = styles[label]
            ax.plot(
                100 * g["network_sparsity"],
                100 * g["sparsity"],
                marker=s.marker,
                ms=3.5,
                color=s.colour,
                ls=s.linestyle,
                lw=1.1,
                label=label,
            )
    ax.plot([0, 100], [0, 100], color="grey", ls="--", lw=0.8, label=f"{what} = network")
    crit = inp.critical
    if crit.get("level") is not None:
        mark_critical(ax, crit, 100 * crit["network_sparsity"])
    _percent_square(ax, what)
    fig.legend(loc="outside right upper", title=what)
    return save(fig, out, name, caption)


def _percent_square(ax: plt.Axes, what: str) -> None:
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("network sparsity (%)")
    ax.set_ylabel(f"{what} sparsity (%)")


def _overlay(
    runs: list[tuple[str, Lines]], out: Path, *, name: str, what: str, caption: str
) -> FigureFile:
    panels = list(dict.fromkeys(k for _, lines in runs for k, g in lines.items() if not g.empty))
    styles = run_styles(len(runs))
    fig, axes = panel_grid(len(panels), 2.3, sharex=True, sharey=True)
    for ax, panel in zip(axes, panels, strict=True):
        for (_, lines), style in zip(runs, styles, strict=True):
            g = lines.get(panel)
            if g is not None and not g.empty:
                run_line(ax, 100 * g["network_sparsity"], 100 * g["sparsity"], style)
        ax.plot([0, 100], [0, 100], color="grey", ls="--", lw=0.8)
        ax.set_title(panel)
        _percent_square(ax, what)
        ax.label_outer()  # shared axes: their labels once, on the outer panels
    runs_legend(fig, [label for label, _ in runs], styles)
    return save(fig, out, name, caption + " Dashed grey: the diagonal.")
