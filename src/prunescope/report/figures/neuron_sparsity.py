"""Figs. 8–10: box plots of neuron (fan-in) sparsity for every layer at several levels,
and the count of fully pruned neurons against network sparsity."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from prunescope.report.figures.common import (
    OVERLAY_NOTE,
    WIDTH,
    FigureFile,
    FigureInputs,
    compared_with,
    first_run_note,
    levels_near,
    mark_critical,
    overlaid,
    pct,
    run_line,
    run_styles,
    runs_legend,
    save,
    sparsity_axis,
    stage_legend_handles,
    stage_styles,
    styled_boxes,
)

MAX_PANELS = 5


def shown_levels(
    ns: pd.DataFrame, dead: pd.DataFrame | None, targets: tuple[float, ...]
) -> list[int]:
    """The pruned levels nearest to the paper's sparsities, the first level where a neuron is
    fully pruned, and the last level: where neuron sparsity has something to show."""
    pruned = ns[ns["level"] > 0]
    if pruned.empty:
        return sorted(ns["level"].unique().tolist())[:1]
    levels = levels_near(pruned, targets)
    extra = []
    if dead is not None and not dead.empty:
        with_dead = sorted(dead[dead["fully_pruned"] > 0]["level"].unique().tolist())
        extra += with_dead[:1]
    extra.append(int(pruned["level"].max()))
    for lv in extra:
        if lv not in levels:
            levels.append(lv)
    levels = sorted(set(levels))
    while len(levels) > MAX_PANELS:  # keep the first-dead and the last level
        keep = set(extra)
        drop = next((lv for lv in levels if lv not in keep), levels[0])
        levels.remove(drop)
    return levels


def _prunable(df: pd.DataFrame, exclude: list[str]) -> pd.DataFrame:
    return df[~df["layer"].isin(exclude)]


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    ns = _prunable(inp.tables["neuron_sparsity"], inp.exclude)
    dead = inp.tables.get("dead_neurons")
    dead = _prunable(dead, inp.exclude) if dead is not None else None
    levels = shown_levels(ns, dead, inp.targets)
    layers = list(dict.fromkeys(ns["layer"]))
    stage_of = dict(zip(ns["layer"], ns["stage"], strict=False))
    stages = [s for s in inp.stage_order if s in set(stage_of.values())]
    styles = stage_styles(inp.stage_order)
    fig, axes = plt.subplots(
        len(levels),
        1,
        figsize=(WIDTH, 1.55 * len(levels) + 1.6),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, level in zip(axes[:, 0], levels, strict=True):
        d = ns[ns["level"] == level]
        data = [100 * d[d["layer"] == layer]["sparsity"].to_numpy() for layer in layers]
        styled_boxes(ax, data, [styles[stage_of[layer]] for layer in layers])
        ax.axhline(100 * d["network_sparsity"].iloc[0], color="#b2182b", lw=0.8, ls="--")
        ax.set_ylim(-3, 112)
        ax.set_ylabel("neuron sparsity (%)")
        full = d[d["sparsity"] >= 1.0].groupby("layer").size()
        for i, layer in enumerate(layers, start=1):
            if full.get(layer, 0):
                ax.annotate(str(full[layer]), (i, 104), ha="center", fontsize=7, color="#b2182b")
        ax.set_title(
            f"level {level}: network sparsity {pct(d['network_sparsity'].iloc[0])} (dashed); "
            f"fully pruned neurons: {int(full.sum())} (counts in red above their layer)",
            loc="left",
        )
    axes[-1, 0].set_xticks(range(1, len(layers) + 1))
    axes[-1, 0].set_xticklabels(layers, rotation=90, fontsize=7)
    fig.legend(
        handles=stage_legend_handles(styles, stages, kind="patch"),
        loc="outside upper center",
        ncols=min(len(stages), 8),
        title="stage",
    )
    files = [
        save(
            fig,
            out,
            "neuron_sparsity",
            "Fan-in sparsity of every neuron, per layer (boxes by stage) at levels "
            f"{', '.join(map(str, levels))} (paper Figs. 8–10): the levels nearest to the paper's "
            "sparsities, the first level with a fully pruned neuron (if any) and the last level."
            + first_run_note(inp),
        )
    ]
    if overlaid(inp) and len(compared_with(inp, "dead_neurons")) > 1:
        files.append(_dead_overlay(inp, out))
    elif dead is not None and not dead.empty:
        files.append(_dead_figure(inp, dead, styles, stages, out))
    return files


def _dead_overlay(inp: FigureInputs, out: Path) -> FigureFile:
    """Every run's fully pruned neurons, all its pruned layers together, one line per run."""
    runs = compared_with(inp, "dead_neurons")
    styles = run_styles(len(runs))
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    top, peak = 0.0, 0.0
    for run, style in zip(runs, styles, strict=True):
        dead = _prunable(run.tables["dead_neurons"], run.exclude)
        g = dead.groupby(["level", "network_sparsity"], as_index=False)[
            ["neurons", "fully_pruned"]
        ].sum()
        share = 100 * g["fully_pruned"] / g["neurons"]
        run_line(ax, g["network_sparsity"], share, style)
        top = max(top, float(g["network_sparsity"].max()))
        peak = max(peak, float(share.max()))
    sparsity_axis(ax, top)
    ax.set_ylabel("fully pruned neurons (% of the pruned layers')")
    _dead_ylim(ax, peak)
    ends = [f"{r.label}: {_last_fully_pruned(r.summary)}" for r in runs]
    runs_legend(fig, [r.label for r in runs], styles)
    return save(
        fig,
        out,
        "fully_pruned_neurons",
        "Neurons whose incoming weights are all pruned, every pruned layer together, against "
        f"network sparsity (counted at each level; the paper found none); at the last level: "
        f"{'; '.join(ends)}.{OVERLAY_NOTE}",
    )


def _dead_figure(inp: FigureInputs, dead: pd.DataFrame, styles, stages, out: Path) -> FigureFile:
    g = dead.groupby(["level", "network_sparsity", "stage"], as_index=False)[
        ["neurons", "fully_pruned"]
    ].sum()
    fig, ax = plt.subplots(figsize=(5.4, 3.2), layout="constrained")
    for stage in stages:
        d = g[g["stage"] == stage].sort_values("level")
        s = styles[stage]
        last = d.iloc[-1]
        ax.plot(
            d["network_sparsity"],
            100 * d["fully_pruned"] / d["neurons"],
            color=s.colour,
            ls=s.linestyle,
            marker=s.marker,
            ms=3.5,
            lw=1.1,
            label=f"{stage} ({int(last['fully_pruned'])} of {int(last['neurons'])} at the end)",
        )
    sparsity_axis(ax, float(g["network_sparsity"].max()))
    mark_critical(ax, inp.critical)
    ax.set_ylabel("fully pruned neurons (% of the stage's)")
    _dead_ylim(ax, float((100 * g["fully_pruned"] / g["neurons"]).max()))
    fig.legend(loc="outside right upper", title="stage")
    return save(
        fig,
        out,
        "fully_pruned_neurons",
        "Neurons whose incoming weights are all pruned, per stage, against network sparsity "
        "(counted at each level; the paper found none).",
    )


def _dead_ylim(ax: plt.Axes, peak: float) -> None:
    """Room for a line at 0 (none dead, the paper's finding) to show as a line."""
    ax.set_ylim(-1 if peak == 0 else -0.05 * peak, max(5.0, 1.1 * peak))


def _last_fully_pruned(summary: dict) -> str:
    """The finding's count at a run's last level."""
    return str((summary.get("fully_pruned_neurons") or {}).get("last_level_fully_pruned", "n/a"))
