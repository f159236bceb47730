"""Figs. 5–6: distributions of surviving |w| per stage at the paper's sparsities."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from prunescope.report.figures.common import (
    WIDTH,
    FigureFile,
    FigureInputs,
    first_run_note,
    levels_near,
    pct,
    save,
    stage_legend_handles,
    stage_styles,
    targets_missed,
)


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    hist = inp.tables["weight_hist"]
    pruned = hist[hist["level"] > 0]
    candidates = pruned if not pruned.empty else hist
    levels = levels_near(candidates, inp.targets)
    fig, axes = plt.subplots(
        1,
        len(levels),
        figsize=(WIDTH, 2.7),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    styles = stage_styles(inp.stage_order)
    shown = []
    for ax, level in zip(axes[0], levels, strict=True):
        h = hist[hist["level"] == level]
        for stage in inp.stage_order:
            g = h[h["stage"] == stage]
            if g.empty or g["count"].sum() == 0:
                continue
            st = styles[stage]
            edges = np.append(g["bin_low"].to_numpy(), g["bin_high"].to_numpy()[-1])
            ax.stairs(g["count"].to_numpy(), edges, color=st.colour, ls=st.linestyle, lw=1.1)
            if stage not in shown:
                shown.append(stage)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1)
        # plain-number tick labels: math text is off for every figure (names come from runs)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"level {level}: {pct(h['network_sparsity'].iloc[0])} sparse")
        ax.set_xlabel("|w|")
    axes[0][0].set_ylabel("surviving weights per bin")
    present = hist[(hist["level"].isin(levels)) & (hist["count"] > 0)]
    if not present.empty:  # the bins span 7 decades; show the ones that hold weights
        axes[0][0].set_xlim(0.8 * present["bin_low"].min(), 1.25 * present["bin_high"].max())
    fig.legend(
        handles=stage_legend_handles(styles, shown, kind="stairs"),
        loc="outside right upper",
        title="stage",
    )
    near = ", ".join(f"{100 * t:g}%" for t in inp.targets)
    return [
        save(
            fig,
            out,
            "weight_distributions",
            f"Distribution of surviving |w| per stage (paper Figs. 5–6) at the levels nearest to the "
            f"paper's {near} network sparsity (levels {', '.join(map(str, levels))}). Counts per bin "
            "on log-spaced bins shared by every level; the y axis is logarithmic above one weight "
            "(linear below). A curve's counts add up to the stage's surviving weights (the paper "
            "plots densities scaled to the same total); on these log axes its visible area does "
            f"not.{_missed(candidates, inp.targets)}{first_run_note(inp)}",
        )
    ]


def _missed(levels: pd.DataFrame, targets: tuple[float, ...]) -> str:
    """Which of the paper's sparsities has no level within 5 points (so no panel)."""
    missed = targets_missed(levels, targets)
    if not missed:
        return ""
    what = "; ".join(
        f"{100 * t:g}% (the nearest, level {lv}, is {pct(s)} sparse)" for t, lv, s in missed
    )
    verb = "it has" if len(missed) == 1 else "they have"
    return f" No level lies within 5 points of {what}: {verb} no panel."
