"""Figs. 11–12: the change in accuracy from zeroing single neurons, per stage across levels."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    FigureFile,
    FigureInputs,
    coloured_boxes,
    save,
    stage_colours,
)


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    z = inp.tables["zeroing"]
    stages = [s for s in inp.stage_order if s in set(z["stage"])]
    levels = sorted(z["level"].unique())
    sparsity = z.groupby("level")["network_sparsity"].first()
    colours = stage_colours(inp.stage_order)
    cols = min(3, len(stages))
    rows = -(-len(stages) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(12.0, 3.0 * rows + 0.6), squeeze=False, sharey=True
    )
    for ax, stage in zip(axes.flat, stages, strict=False):
        d = z[z["stage"] == stage]
        data = [100 * d[d["level"] == lv]["delta_accuracy"].to_numpy() for lv in levels]
        coloured_boxes(ax, data, [colours[stage]] * len(data))
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(stage)
        ax.set_xticks(range(1, len(levels) + 1))
        ax.set_xticklabels([f"{100 * sparsity[lv]:.0f}" for lv in levels], fontsize=7)
        ax.set_xlabel("network sparsity (%)")
    for ax in axes[:, 0]:
        ax.set_ylabel("Δ accuracy (points)")
    for ax in list(axes.flat)[len(stages) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return [
        save(
            fig,
            out,
            "zeroing",
            "Change in test accuracy when one neuron's incoming weights and bias are zeroed, for every "
            "neuron of each stage, across levels (paper Figs. 11–12).",
        )
    ]
