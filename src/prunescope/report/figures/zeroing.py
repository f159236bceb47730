"""Figs. 11–12: the change in accuracy from zeroing single neurons, per stage across levels.

Each stage gets its own y range (a shared one flattens the later stages into
lines). When zeroing after BatchNorm was computed too, it gets a figure of its
own beside the paper's definition. In a report on several runs, the spread of
the changes per level (the finding's numbers) is overlaid, one line per run.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from prunescope.report.figures.common import (
    OVERLAY_NOTE,
    WIDTH,
    FigureFile,
    FigureInputs,
    first_run_note,
    mark_critical,
    overlaid,
    panel_grid,
    run_line,
    run_styles,
    runs_legend,
    save,
    sparsity_axis,
    stage_styles,
    styled_boxes,
)
from prunescope.report.findings import SPREADS

TITLES = {
    "zeroing": "incoming weights and bias zeroed (the paper's definition)",
    "zeroing_output": "output zeroed after its BatchNorm (not the paper's definition)",
}


def bn_constant_note(inp: FigureInputs, stage: str) -> str:
    """The finding's median |BatchNorm constant| of the stage, at the level it quotes."""
    bn = inp.summary.get("bn_constant") or {}
    value = (bn.get("stage_median_abs") or {}).get(stage)
    return "" if value is None else f"\nmedian |BN constant| {value:.2f} (level {bn['level']})"


def _panel(ax: plt.Axes, d: pd.DataFrame, levels: list[int], style, crit_level) -> None:
    data = [100 * d[d["level"] == lv]["delta_accuracy"].to_numpy() for lv in levels]
    styled_boxes(ax, data, [style] * len(data))
    ax.axhline(0, color="grey", lw=0.8)
    if crit_level in levels:  # between the last level before it and the critical level
        mark_critical(ax, {"level": crit_level}, levels.index(crit_level) + 0.5)


def _figure(inp: FigureInputs, table: str, out: Path) -> FigureFile:
    z = inp.tables[table]
    stages = [s for s in inp.stage_order if s in set(z["stage"])]
    levels = sorted(z["level"].unique())
    sparsity = z.groupby("level")["network_sparsity"].first()
    styles = stage_styles(inp.stage_order)
    fig, axes = panel_grid(len(stages), 2.2, extra=0.7)
    for ax, stage in zip(axes, stages, strict=True):
        _panel(ax, z[z["stage"] == stage], levels, styles[stage], inp.critical.get("level"))
        ax.set_title(stage + (bn_constant_note(inp, stage) if table == "zeroing" else ""))
        ax.set_xticks(range(1, len(levels) + 1))
        step = max(1, -(-len(levels) // 10))  # at most ~10 labels a panel
        ax.set_xticklabels(
            [f"{100 * sparsity[lv]:.0f}" if i % step == 0 else "" for i, lv in enumerate(levels)]
        )
        ax.set_xlabel("network sparsity (%)")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("Δ accuracy (points)")
    fig.suptitle(f"Zeroing one neuron: {TITLES[table]}")
    if inp.critical.get("level") in levels:
        fig.legend(handles=axes[0].get_legend_handles_labels()[0], loc="outside lower center")
    caption = (
        f"Change in test {inp.metric} when one neuron is zeroed, for every neuron of each "
        f"stage, across levels (paper Figs. 11–12); each stage has its own y range. Variant: "
        f"{TITLES[table]}.{_compare(inp, table)}"
    )
    if table == "zeroing" and inp.summary.get("bn_constant"):
        caption += (
            " Zeroing a neuron's weights and bias does not silence it when a BatchNorm follows: "
            "the BatchNorm then emits the constant β − γμ/√(σ²+ε) at every pixel; the panel "
            f"titles give its median size per stage at level {inp.summary['bn_constant']['level']}, "
            "the level the findings quote."
        )
    return save(fig, out, table, caption + first_run_note(inp))


def _compare(inp: FigureInputs, table: str) -> str:
    other = {"zeroing": "zeroing_output", "zeroing_output": "zeroing"}[table]
    if other not in inp.tables or inp.tables[other].empty:
        return ""
    return f" Compare {other}.png: {TITLES[other]}."


def _spread_overlay(inp: FigureInputs, out: Path) -> FigureFile | None:
    """Each run's spread of the zeroing changes per level (its finding), a line per run."""
    runs = [r for r in inp.compared if (r.summary.get("zeroing_spread") or {}).get("per_level")]
    if len(runs) < 2:
        return None
    styles = run_styles(len(runs))
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.0), layout="constrained")
    top = max(p["network_sparsity"] for r in runs for p in r.summary["zeroing_spread"]["per_level"])
    for ax, key in zip(axes, ("std", "iqr"), strict=True):
        for run, style in zip(runs, styles, strict=True):
            rows = run.summary["zeroing_spread"]["per_level"]
            run_line(ax, [p["network_sparsity"] for p in rows], [100 * p[key] for p in rows], style)
        sparsity_axis(ax, top, label=False)
        ax.set_xlabel("network sparsity (%)")
        ax.set_title(f"{SPREADS[key]} of Δ accuracy")
    axes[0].set_ylabel("spread of Δ accuracy (points)")
    runs_legend(fig, [r.label for r in runs], styles)
    return save(
        fig,
        out,
        "zeroing_spread",
        f"Spread of the change in test {inp.metric} from zeroing one neuron ({TITLES['zeroing']}), "
        "over every neuron of the pruned layers, per level: each run's own finding (every "
        f"level, the critical sparsity not applied).{OVERLAY_NOTE}",
    )


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    files = [
        _figure(inp, table, out)
        for table in ("zeroing", "zeroing_output")
        if table in inp.tables and not inp.tables[table].empty
    ]
    spread = _spread_overlay(inp, out) if overlaid(inp) else None
    return files + ([spread] if spread is not None else [])
