"""What the structured export buys: the pruned layers' parameters and FLOPs after the export,
as a share of the dense ones, against network sparsity; one line per run (method)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    WIDTH,
    FigureFile,
    FigureInputs,
    save,
    sparsity_axis,
)

MARKERS = ["o", "s", "^", "D", "v", "P"]


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    runs = [
        (label, t["export"])
        for label, t in inp.run_tables
        if "export" in t and not t["export"].empty
    ]
    if not runs:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.0), sharey=True, layout="constrained")
    top = max(float(e["network_sparsity"].max()) for _, e in runs)
    for i, (label, e) in enumerate(runs):
        g = e.groupby(["level", "network_sparsity"], as_index=False)[
            ["params_before", "params_after", "flops_before", "flops_after"]
        ].sum()
        for ax, what in zip(axes, ("params", "flops"), strict=True):
            ax.plot(
                g["network_sparsity"],
                100 * g[f"{what}_after"] / g[f"{what}_before"],
                marker=MARKERS[i % len(MARKERS)],
                ms=3.5,
                lw=1.1,
                ls=["-", "--", "-.", ":"][i % 4],
                label=label,
            )
    for ax, title in zip(axes, ("parameters", "FLOPs (one image)"), strict=True):
        sparsity_axis(ax, top, label=False)
        ax.set_xlabel("network sparsity (%)")
        ax.set_title(f"{title} after the export")
    axes[0].set_ylabel("% of the dense pruned layers'")
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(3, len(runs))
    )
    return [
        save(
            fig,
            out,
            "export",
            "The structured export (every removable empty neuron physically gone, constants "
            "folded exactly): parameters (weights, biases and the following BatchNorm) and FLOPs "
            "(multiply-adds × 2) of the pruned layers that remain, as a share of the dense "
            "network's. Unstructured sparsity alone leaves them at 100%.",
        )
    ]
