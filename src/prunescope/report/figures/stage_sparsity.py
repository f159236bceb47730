"""Fig. 7: each stage's sparsity against network sparsity, with the unit diagonal."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

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
    fig, ax = plt.subplots(figsize=(5.0, HEIGHT), layout="constrained")
    styles = stage_styles(inp.stage_order)
    for stage in inp.stage_order:
        g = st[st["stage"] == stage]
        if not g.empty:
            s = styles[stage]
            ax.plot(
                100 * g["network_sparsity"],
                100 * g["sparsity"],
                marker=s.marker,
                ms=3.5,
                color=s.colour,
                ls=s.linestyle,
                lw=1.1,
                label=stage,
            )
    ax.plot([0, 100], [0, 100], color="grey", ls="--", lw=0.8, label="stage = network")
    crit = inp.critical
    if crit.get("level") is not None:
        mark_critical(ax, crit, 100 * crit["network_sparsity"], low=True)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("network sparsity (%)")
    ax.set_ylabel("stage sparsity (%)")
    fig.legend(loc="outside right upper", title="stage")
    excluded = f" Excluded from pruning: {', '.join(inp.exclude)}." if inp.exclude else ""
    return [
        save(
            fig,
            out,
            "stage_sparsity",
            "Sparsity of each stage (its pruned layers) against network sparsity (paper Fig. 7); "
            f"above the diagonal a stage is pruned more than the network as a whole.{excluded}",
        )
    ]
