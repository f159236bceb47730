"""Figs. 11–12: the change in accuracy from zeroing single neurons, per stage across levels.

Each stage gets its own y range (a shared one flattens the later stages into
lines). When zeroing after BatchNorm was computed too, it gets a figure of its
own beside the paper's definition.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from prunescope.report.figures.common import (
    WIDTH,
    FigureFile,
    FigureInputs,
    save,
    stage_styles,
    styled_boxes,
)

TITLES = {
    "zeroing": "incoming weights and bias zeroed (the paper's definition)",
    "zeroing_output": "output zeroed after its BatchNorm",
}


def bn_constant_by_stage(bn: pd.DataFrame | None) -> dict[str, float]:
    """Median |BatchNorm constant| a zeroed neuron emits, per stage, over every level."""
    if bn is None or bn.empty:
        return {}
    return bn.assign(abs=bn["constant"].abs()).groupby("stage")["abs"].median().to_dict()


def _panel(ax: plt.Axes, d: pd.DataFrame, levels: list[int], style, crit_level) -> None:
    data = [100 * d[d["level"] == lv]["delta_accuracy"].to_numpy() for lv in levels]
    styled_boxes(ax, data, [style] * len(data))
    ax.axhline(0, color="grey", lw=0.8)
    if crit_level in levels:
        x = levels.index(crit_level) + 1
        ax.axvline(x - 0.5, color="#b2182b", ls="--", lw=0.9)
        ax.annotate(
            "critical",
            (x - 0.45, 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=7,
            color="#b2182b",
        )


def _figure(inp: FigureInputs, table: str, out: Path) -> FigureFile:
    z = inp.tables[table]
    stages = [s for s in inp.stage_order if s in set(z["stage"])]
    levels = sorted(z["level"].unique())
    sparsity = z.groupby("level")["network_sparsity"].first()
    styles = stage_styles(inp.stage_order)
    constants = bn_constant_by_stage(inp.tables.get("bn_constants"))
    cols = min(3, len(stages))
    rows = -(-len(stages) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(WIDTH, 2.2 * rows + 0.5), squeeze=False, layout="constrained"
    )
    for ax, stage in zip(axes.flat, stages, strict=False):
        _panel(ax, z[z["stage"] == stage], levels, styles[stage], inp.critical.get("level"))
        note = f"\nmedian |BN constant| {constants[stage]:.2f}" if stage in constants else ""
        ax.set_title(f"{stage}{note}" if table == "zeroing" else stage)
        ax.set_xticks(range(1, len(levels) + 1))
        step = max(1, -(-len(levels) // 10))  # at most ~10 labels a panel
        ax.set_xticklabels(
            [f"{100 * sparsity[lv]:.0f}" if i % step == 0 else "" for i, lv in enumerate(levels)]
        )
        ax.set_xlabel("network sparsity (%)")
    for ax in axes[:, 0]:
        ax.set_ylabel("Δ accuracy (points)")
    for ax in list(axes.flat)[len(stages) :]:
        ax.set_visible(False)
    caption = (
        f"Change in test {inp.metric} when one neuron is zeroed ({TITLES[table]}), for every neuron "
        "of each stage, across levels (paper Figs. 11–12); each stage has its own y range."
    )
    if table == "zeroing" and constants:
        caption += (
            " Zeroing a neuron's weights and bias does not silence it when a BatchNorm follows: "
            "the BatchNorm then emits the constant β − γμ/√(σ²+ε) at every pixel; the panel "
            "titles give its median size per stage."
        )
    return save(fig, out, table, caption)


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    return [
        _figure(inp, table, out)
        for table in ("zeroing", "zeroing_output")
        if table in inp.tables and not inp.tables[table].empty
    ]
