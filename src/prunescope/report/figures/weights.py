"""Figs. 5–6: distributions of surviving |w| per stage at four levels."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from prunescope.report.figures.common import (
    FigureFile,
    FigureInputs,
    nearest_levels,
    pct,
    save,
    stage_colours,
)


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    hist = inp.tables["weight_hist"]
    levels = nearest_levels(hist, inp.targets)
    fig, axes = plt.subplots(1, len(levels), figsize=(12.0, 3.6), sharey=True, squeeze=False)
    colours = stage_colours(inp.stage_order)
    for ax, level in zip(axes[0], levels, strict=True):
        h = hist[hist["level"] == level]
        for stage in inp.stage_order:
            g = h[h["stage"] == stage]
            if g.empty or g["count"].sum() == 0:
                continue
            edges = np.append(g["bin_low"].to_numpy(), g["bin_high"].to_numpy()[-1])
            ax.stairs(g["count"].to_numpy(), edges, color=colours[stage], label=stage, lw=1.2)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_title(f"level {level}: {pct(h['network_sparsity'].iloc[0])} sparse")
        ax.set_xlabel("|w|")
    axes[0][0].set_ylabel("surviving weights per bin")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return [
        save(
            fig,
            out,
            "weight_distributions",
            f"Distribution of surviving |w| per stage at levels {', '.join(map(str, levels))} (paper Figs. 5–6); "
            "counts on shared log-spaced bins, so a curve's area is the stage's number of weights.",
        )
    ]
