"""Linear mode connectivity: the loss along the path from each level's reference, and the
barrier against network sparsity (the paper's "similar basin" hypothesis, tested)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import (
    OVERLAY_NOTE,
    WIDTH,
    FigureFile,
    FigureInputs,
    first_run_note,
    mark_critical,
    overlaid,
    run_line,
    run_styles,
    runs_legend,
    save,
    sparsity_axis,
)

REFERENCES = {"previous": "to the previous level", "baseline": "to the dense network"}


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    conn = inp.tables["connectivity"]
    found = inp.summary["connectivity"]  # the finding, as the page states it
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
    # both legends outside the panels: inside, the barrier legend covered the dense line
    fig.legend(loc="outside lower right", handles=ax.get_legend_handles_labels()[0])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="level")
    files = [
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
            "between its ends (0 for a path that does not bulge), against network sparsity."
            + first_run_note(inp),
        )
    ]
    barriers = _barrier_overlay(inp, out) if overlaid(inp) else None
    return files + ([barriers] if barriers is not None else [])


def _barrier_overlay(inp: FigureInputs, out: Path) -> FigureFile | None:
    """Each run's barrier per level (its finding), to each reference, a line per run."""
    runs = [r for r in inp.compared if (r.summary.get("connectivity") or {}).get("per_level")]
    if len(runs) < 2:
        return None
    styles = run_styles(len(runs))
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.0), sharey=True, layout="constrained")
    top = max(p["network_sparsity"] for r in runs for p in r.summary["connectivity"]["per_level"])
    for ax, reference in zip(axes, REFERENCES, strict=True):
        for run, style in zip(runs, styles, strict=True):
            rows = [
                p for p in run.summary["connectivity"]["per_level"] if p["reference"] == reference
            ]
            x = [p["network_sparsity"] for p in rows]
            run_line(ax, x, [p["loss_barrier_linear"] for p in rows], style)
        sparsity_axis(ax, top, label=False)
        ax.set_xlabel("network sparsity (%)")
        ax.set_title(f"barrier {REFERENCES[reference]}")
    axes[0].set_ylabel("loss above the line")
    runs_legend(fig, [r.label for r in runs], styles)
    return save(
        fig,
        out,
        "connectivity_barrier",
        "Linear mode connectivity: the barrier (the largest test loss on the straight path "
        "above the line between its ends) per level, to the previous level and to the dense "
        f"network; each run's own finding.{OVERLAY_NOTE}",
    )
