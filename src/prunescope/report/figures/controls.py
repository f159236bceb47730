"""The lottery controls beside IMP: each control's accuracy gap per level, and the stage
sparsity that IMP chooses against the uniform random control's."""

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
    stage_styles,
)
from prunescope.report.findings import controls_finding, pruned_stage_sparsity

STYLES = {"random_reinit": ("-", "o"), "random_mask": ("--", "s"), "random_global": (":", "^")}


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    if not inp.controls:
        return []
    found = inp.summary.get("controls") or controls_finding(
        inp.tables["accuracy"], inp.controls, inp.stage_order, inp.exclude
    )
    fig, (gap_ax, st_ax) = plt.subplots(1, 2, figsize=(WIDTH, 3.0), layout="constrained")
    top = float(inp.tables["accuracy"]["network_sparsity"].max())
    for kind, c in found.items():
        ls, marker = STYLES.get(kind, ("-", "o"))
        gap_ax.plot(
            [g["network_sparsity"] for g in c["per_level"]],
            [100 * g["gap"] for g in c["per_level"]],
            ls=ls,
            marker=marker,
            ms=3.5,
            color="black",
            label=kind,
        )
    gap_ax.axhline(0, color="grey", lw=0.8)
    sparsity_axis(gap_ax, top, label=False)
    gap_ax.set_xlabel("network sparsity (%)")
    mark_critical(gap_ax, inp.critical)
    gap_ax.set_ylabel("control − IMP test accuracy (points)")
    gap_ax.legend(loc="lower left")
    styles = stage_styles(inp.stage_order)
    imp = pruned_stage_sparsity(inp.tables["sparsity_layers"], inp.stage_order, inp.exclude)
    uniform = inp.controls.get("random_global", {}).get("sparsity_layers")
    ctrl = (
        pruned_stage_sparsity(uniform, inp.stage_order, inp.exclude)
        if uniform is not None
        else None
    )
    for stage in inp.stage_order:
        s = styles[stage]
        g = imp[imp["stage"] == stage]
        if g.empty:
            continue
        st_ax.plot(
            100 * g["network_sparsity"],
            100 * g["sparsity"],
            color=s.colour,
            ls="-",
            lw=1.2,
            marker=s.marker,
            ms=3,
            label=f"{stage} (IMP)",
        )
        if ctrl is not None:
            c = ctrl[ctrl["stage"] == stage]
            st_ax.plot(
                100 * c["network_sparsity"], 100 * c["sparsity"], color=s.colour, ls=":", lw=1.0
            )
    st_ax.plot([0, 100], [0, 100], color="grey", ls="--", lw=0.8)
    st_ax.set_xlim(0, 100)
    st_ax.set_ylim(0, 100)
    st_ax.set_xlabel("network sparsity (%)")
    st_ax.set_ylabel("stage sparsity (%)")
    fig.legend(*st_ax.get_legend_handles_labels(), loc="outside right upper", title="stage")
    note = (
        " Right: stage sparsity of IMP (solid) and of the random_global control (dotted), which "
        "prunes every stage at about the network's sparsity."
        if ctrl is not None
        else " Right: IMP's stage sparsity (branch random_global to compare with uniform pruning)."
    )
    return [
        save(
            fig,
            out,
            "controls",
            "Left: test accuracy of each control branch minus IMP's at the same level (same data "
            "order, schedule and sparsity; random_mask keeps IMP's per-layer sparsities, so its "
            f"stage sparsity equals IMP's by construction).{note}",
        )
    ]
