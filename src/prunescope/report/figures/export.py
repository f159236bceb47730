"""What the structured export buys: the pruned layers' parameters and FLOPs after the export,
as a share of the dense ones, against network sparsity; one line per run (method)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    OVERLAY_NOTE,
    WIDTH,
    FigureFile,
    FigureInputs,
    run_line,
    run_styles,
    runs_legend,
    save,
    sparsity_axis,
)


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
    styles = run_styles(len(runs))  # each run as on every other overlay
    for (_, e), style in zip(runs, styles, strict=True):
        g = e.groupby(["level", "network_sparsity"], as_index=False)[
            ["params_before", "params_after", "flops_before", "flops_after"]
        ].sum()
        for ax, what in zip(axes, ("params", "flops"), strict=True):
            run_line(
                ax, g["network_sparsity"], 100 * g[f"{what}_after"] / g[f"{what}_before"], style
            )
    for ax, title in zip(axes, ("parameters", "FLOPs (one image)"), strict=True):
        sparsity_axis(ax, top, label=False)
        ax.set_xlabel("network sparsity (%)")
        ax.set_title(f"{title} after the export")
    axes[0].set_ylabel("% of the dense pruned layers'")
    runs_legend(fig, [label for label, _ in runs], styles)
    return [
        save(
            fig,
            out,
            "export",
            "The structured export (every removable empty neuron physically gone, constants "
            "folded exactly): parameters (weights, biases and the following BatchNorm) and FLOPs "
            "(multiply-adds × 2) of the pruned layers that remain, as a share of the dense "
            "network's. Unstructured sparsity alone leaves them at 100%."
            + (OVERLAY_NOTE if len(runs) > 1 else ""),
        )
    ]
