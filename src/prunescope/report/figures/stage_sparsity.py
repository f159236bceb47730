"""Fig. 7: each stage's sparsity against network sparsity, with the unit diagonal."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import HEIGHT, FigureFile, FigureInputs, save, stage_colours
from prunescope.report.findings import pruned_stage_sparsity


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    st = pruned_stage_sparsity(inp.tables["sparsity_layers"], inp.stage_order, inp.exclude)
    fig, ax = plt.subplots(figsize=(6.0, HEIGHT))
    colours = stage_colours(inp.stage_order)
    for stage in inp.stage_order:
        g = st[st["stage"] == stage]
        if not g.empty:
            ax.plot(
                100 * g["network_sparsity"],
                100 * g["sparsity"],
                marker="o",
                ms=3,
                color=colours[stage],
                label=stage,
            )
    ax.plot([0, 100], [0, 100], color="grey", ls="--", lw=0.8, label="stage = network")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("network sparsity (%)")
    ax.set_ylabel("stage sparsity (%)")
    ax.set_title("Stage sparsity (pruned layers only)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    excluded = f" Excluded from pruning: {', '.join(inp.exclude)}." if inp.exclude else ""
    return [
        save(
            fig,
            out,
            "stage_sparsity",
            "Sparsity of each stage against network sparsity (paper Fig. 7); above the diagonal a stage "
            f"is pruned more than the network as a whole.{excluded}",
        )
    ]
