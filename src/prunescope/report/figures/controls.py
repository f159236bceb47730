"""The lottery controls beside IMP: each control's accuracy gap per level, and the stage
sparsity that IMP chooses against the uniform random control's."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    WIDTH,
    FigureFile,
    FigureInputs,
    first_run_note,
    mark_critical,
    save,
    sparsity_axis,
    stage_styles,
)
from prunescope.report.findings import pruned_stage_sparsity

STYLES = {"random_reinit": ("-", "o"), "random_mask": ("--", "s"), "random_global": (":", "^")}


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    if not inp.controls:
        return []
    found = inp.summary["controls"]  # the finding, as the page states it
    layers = inp.tables.get("sparsity_layers")
    stages = layers is not None and not layers.empty  # a run analysed without sparsity: gaps only
    fig, axes = plt.subplots(1, 2 if stages else 1, figsize=(WIDTH, 3.0), layout="constrained")
    gap_ax = axes[0] if stages else axes
    _gaps(gap_ax, inp, found)
    note = (
        _stage_panel(axes[1], fig, inp)
        if stages
        else (
            " The stage sparsity panel needs the sparsity tables: prunescope analyze RUN --only "
            "sparsity."
        )
    )
    return [
        save(
            fig,
            out,
            "controls",
            "Left: test accuracy of each control branch minus IMP's at the same level (same data "
            "order, schedule and sparsity; random_mask keeps IMP's per-layer sparsities, so its "
            f"stage sparsity equals IMP's by construction).{note}{first_run_note(inp)}",
        )
    ]


def _gaps(ax, inp: FigureInputs, found: dict) -> None:
    top = float(inp.tables["accuracy"]["network_sparsity"].max())
    for kind, c in found.items():
        ls, marker = STYLES.get(kind, ("-", "o"))
        ax.plot(
            [g["network_sparsity"] for g in c["per_level"]],
            [100 * g["gap"] for g in c["per_level"]],
            ls=ls,
            marker=marker,
            ms=3.5,
            color="black",
            label=kind,
        )
    ax.axhline(0, color="grey", lw=0.8)
    sparsity_axis(ax, top, label=False)
    ax.set_xlabel("network sparsity (%)")
    mark_critical(ax, inp.critical)
    ax.set_ylabel("control − IMP test accuracy (points)")
    ax.legend(loc="lower left")


def _stage_panel(ax, fig, inp: FigureInputs) -> str:
    """IMP's stage sparsity (solid) beside random_global's (dotted); returns the caption's
    part for it."""
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
        ax.plot(
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
            ax.plot(
                100 * c["network_sparsity"], 100 * c["sparsity"], color=s.colour, ls=":", lw=1.0
            )
    ax.plot([0, 100], [0, 100], color="grey", ls="--", lw=0.8)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("network sparsity (%)")
    ax.set_ylabel("stage sparsity (%)")
    handles, labels = ax.get_legend_handles_labels()
    if ctrl is not None:  # the dotted lines, named once for every stage
        handles.append(plt.Line2D([], [], color="grey", ls=":", lw=1.0))
        labels.append("random_global (dotted)")
    fig.legend(handles, labels, loc="outside right upper", title="stage")
    if ctrl is not None:
        return (
            " Right: stage sparsity of IMP (solid) and of the random_global control (dotted), "
            "which prunes every stage at about the network's sparsity."
        )
    return " Right: IMP's stage sparsity (branch random_global to compare with uniform pruning)."
