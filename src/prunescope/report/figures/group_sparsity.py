"""Each declared layer group's sparsity (a transformer's attention projections vs its MLP
layers, across every block) against network sparsity, with the unit diagonal."""

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


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    groups = inp.tables["sparsity_groups"]
    names = list(dict.fromkeys(groups["group"]))
    styles = stage_styles(names)
    fig, ax = plt.subplots(figsize=(5.0, HEIGHT), layout="constrained")
    for name in names:
        g = groups[groups["group"] == name].sort_values("level")
        s = styles[name]
        ax.plot(
            100 * g["network_sparsity"],
            100 * g["sparsity"],
            marker=s.marker,
            ms=3.5,
            color=s.colour,
            ls=s.linestyle,
            lw=1.1,
            label=name,
        )
    ax.plot([0, 100], [0, 100], color="grey", ls="--", lw=0.8, label="group = network")
    crit = inp.critical
    if crit.get("level") is not None:
        mark_critical(ax, crit, 100 * crit["network_sparsity"], low=True)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("network sparsity (%)")
    ax.set_ylabel("group sparsity (%)")
    fig.legend(loc="outside right upper", title="layer group")
    return [
        save(
            fig,
            out,
            "group_sparsity",
            "Sparsity of each layer group (all its layers, across every stage) against network "
            "sparsity; above the diagonal a group is pruned more than the network as a whole.",
        )
    ]
