"""Linear mode connectivity: the loss along the path from each level's reference, and the
barrier against network sparsity (the paper's "similar basin" hypothesis, tested)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    WIDTH,
    FigureFile,
    FigureInputs,
    mark_critical,
    save,
    sparsity_axis,
)
from prunescope.report.findings import connectivity_finding

REFERENCES = {"previous": "to the previous level", "baseline": "to the dense network"}


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    conn = inp.tables["connectivity"]
    found = inp.summary.get("connectivity") or connectivity_finding(
        conn, barriers=inp.tables.get("connectivity_barriers")
    )
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 2.8), layout="constrained")
    levels = sorted(conn["level"].unique())
    cmap = plt.get_cmap("viridis")
    for ax, reference in zip(axes[:2], REFERENCES, strict=True):
        d = conn[conn["reference"] == reference]
        for i, level in enumerate(levels):
            g = d[d["level"] == level].sort_values("alpha")
            colour = cmap(0.85 * i / max(len(levels) - 1, 1))
            ax.plot(g["alpha"], g["test_loss"], color=colour, lw=1.0, label=f"level {level}")
        ax.set_xlabel("α (0: the reference, 1: the level)")
        ax.set_title(f"test loss {REFERENCES[reference]}")
    axes[0].set_ylabel("test loss")
    ax = axes[2]
    for reference, ls, marker in (("previous", "-", "o"), ("baseline", "--", "s")):
        rows = [p for p in found["per_level"] if p["reference"] == reference]
        ax.plot(
            [p["network_sparsity"] for p in rows],
            [p["loss_barrier_linear"] for p in rows],
            ls=ls,
            marker=marker,
            ms=3.5,
            color="black",
            label=REFERENCES[reference],
        )
    sparsity_axis(ax, float(conn["network_sparsity"].max()), label=False)
    ax.set_xlabel("network sparsity (%)")
    mark_critical(ax, inp.critical)
    ax.set_title("loss above the line")
    ax.legend(loc="upper left")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="level")
    return [
        save(
            fig,
            out,
            "connectivity",
            "Linear mode connectivity (Frankle et al. 2020): test loss on the straight line between "
            "each level and the previous level, and the dense network"
            + (
                ", with BatchNorm statistics re-estimated at every point on a fixed training subset"
                if inp.batchnorm
                else ""
            )
            + "; right: the barrier, the largest loss on the path above the straight line "
            "between its ends (0 for a path that does not bulge), against network sparsity.",
        )
    ]
