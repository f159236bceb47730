"""Fig. 7: each stage's sparsity against network sparsity, with the unit diagonal."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from prunescope.report.figures.common import (
    HEIGHT,
    FigureFile,
    FigureInputs,
    mark_critical,
    save,
    stage_styles,
)
from prunescope.report.findings import pruned_stage_sparsity


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    st = pruned_stage_sparsity(inp.tables["sparsity_layers"], inp.stage_order, inp.exclude)
    lines = {stage: st[st["stage"] == stage] for stage in inp.stage_order}
    excluded = f" Excluded from pruning: {', '.join(inp.exclude)}." if inp.exclude else ""
    caption = (
        "Sparsity of each stage (its pruned layers) against network sparsity (paper Fig. 7); "
        f"above the diagonal a stage is pruned more than the network as a whole.{excluded}"
    )
    return [sparsity_lines(inp, lines, out, name="stage_sparsity", what="stage", caption=caption)]


def sparsity_lines(
    inp: FigureInputs,
    lines: dict[str, pd.DataFrame],
    out: Path,
    *,
    name: str,
    what: str,
    caption: str,
) -> FigureFile:
    """One line per stage or group: its sparsity against network sparsity, the diagonal."""
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
        mark_critical(ax, crit, 100 * crit["network_sparsity"], low=True)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("network sparsity (%)")
    ax.set_ylabel(f"{what} sparsity (%)")
    fig.legend(loc="outside right upper", title=what)
    return save(fig, out, name, caption)
