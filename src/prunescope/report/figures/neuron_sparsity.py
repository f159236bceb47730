"""Figs. 8–10: box plots of neuron (fan-in) sparsity for every layer at several levels."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    FigureFile,
    FigureInputs,
    coloured_boxes,
    nearest_levels,
    pct,
    save,
    stage_colours,
)


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    ns = inp.tables["neuron_sparsity"]
    ns = ns[~ns["layer"].isin(inp.exclude)]
    levels = nearest_levels(ns, inp.targets)
    layers = list(dict.fromkeys(ns["layer"]))
    stage_of = dict(zip(ns["layer"], ns["stage"], strict=False))
    colours = stage_colours(inp.stage_order)
    fig, axes = plt.subplots(
        len(levels), 1, figsize=(12.0, 2.2 * len(levels) + 1.0), sharex=True, squeeze=False
    )
    for ax, level in zip(axes[:, 0], levels, strict=True):
        d = ns[ns["level"] == level]
        data = [100 * d[d["layer"] == layer]["sparsity"].to_numpy() for layer in layers]
        coloured_boxes(ax, data, [colours[stage_of[layer]] for layer in layers])
        ax.axhline(100 * d["network_sparsity"].iloc[0], color="red", lw=0.8, ls="--")
        ax.set_ylim(-3, 103)
        ax.set_ylabel("neuron sparsity (%)")
        ax.set_title(
            f"level {level}: network sparsity {pct(d['network_sparsity'].iloc[0])} (dashed)",
            loc="left",
        )
    axes[-1, 0].set_xticks(range(1, len(layers) + 1))
    axes[-1, 0].set_xticklabels(layers, rotation=90, fontsize=6)
    fig.tight_layout()
    return [
        save(
            fig,
            out,
            "neuron_sparsity",
            "Fan-in sparsity of every neuron, per layer (boxes coloured by stage) at levels "
            f"{', '.join(map(str, levels))} (paper Figs. 8–10).",
        )
    ]
