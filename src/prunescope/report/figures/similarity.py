"""Figs. 13–14: activation similarity to the baseline and to the previous level.

Two views per metric: the paper's (one line per stage, the mean over its
layers, against network sparsity) and a level × layer heat map on a fixed 0–1
colour scale (the same colour is the same similarity in every run's report).
In a report on several runs the paper's view has one panel per stage and
reference, with a line per run.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from prunescope.report.figures.common import (
    OVERLAY_NOTE,
    SPARSITY_AXIS_LABEL,
    WIDTH,
    FigureFile,
    FigureInputs,
    compared_with,
    first_run_note,
    mark_critical,
    overlaid,
    run_line,
    run_styles,
    runs_legend,
    save,
    sparsity_axis,
    stage_styles,
)

LABELS = {"cosine": "cosine", "cosine_per_neuron": "mean per-neuron cosine", "cka": "linear CKA"}
REFERENCES = {
    "baseline": "to the dense network (Fig. 13)",
    "previous": "to the previous level (Fig. 14)",
}


def where(inp: FigureInputs) -> str:
    before = ", before its BatchNorm" if inp.batchnorm else ""
    return f"Activations are each prunable module's output (a convolution's or linear layer's{before})."


def stage_means(sim: pd.DataFrame, metric: str, reference: str) -> pd.DataFrame:
    """Per level and stage, the metric's mean over the stage's layers."""
    d = sim[(sim["metric"] == metric) & (sim["reference"] == reference)]
    return d.groupby(["level", "network_sparsity", "stage"], as_index=False)["value"].mean()


def _y_label(metric: str) -> str:
    # two lines: on one, the label outgrows a 3-inch-high figure and is clipped
    return f"{LABELS[metric]}\n(mean over the stage's layers)"


def _caption(metric: str, inp: FigureInputs) -> str:
    return (
        f"Activation similarity ({LABELS[metric]}) per stage (the mean over its layers) against "
        f"network sparsity, to the dense network and to the previous level (the paper's Figs. "
        f"13–14). {where(inp)}"
    )


def _lines(inp: FigureInputs, sim: pd.DataFrame, metric: str, out: Path) -> FigureFile:
    runs = [
        r
        for r in compared_with(inp, "similarity")
        if metric in set(r.tables["similarity"]["metric"])
    ]
    if overlaid(inp) and len(runs) > 1:
        return _lines_overlay(inp, runs, metric, out)
    styles = stage_styles(inp.stage_order)
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.0), sharey=True, layout="constrained")
    top = float(sim["network_sparsity"].max())
    for ax, reference in zip(axes, REFERENCES, strict=True):
        g = stage_means(sim, metric, reference)
        for stage in [s for s in inp.stage_order if s in set(g["stage"])]:
            s = styles[stage]
            e = g[g["stage"] == stage].sort_values("level")
            ax.plot(
                e["network_sparsity"],
                e["value"],
                color=s.colour,
                ls=s.linestyle,
                marker=s.marker,
                ms=3,
                lw=1.1,
                label=stage,
            )
        sparsity_axis(ax, top, label=False)
        mark_critical(ax, inp.critical)
        ax.set_title(REFERENCES[reference])
    fig.supxlabel(SPARSITY_AXIS_LABEL, fontsize=8)
    axes[0].set_ylabel(_y_label(metric))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="stage")
    return save(fig, out, f"similarity_{metric}_stages", _caption(metric, inp))


def _lines_overlay(inp: FigureInputs, runs: list, metric: str, out: Path) -> FigureFile:
    """A panel per reference (rows) and stage (columns), a line per run."""
    stages = list(
        dict.fromkeys(
            s for r in runs for s in r.stage_order if s in set(r.tables["similarity"]["stage"])
        )
    )
    styles = run_styles(len(runs))
    top = max(float(r.tables["similarity"]["network_sparsity"].max()) for r in runs)
    fig, axes = plt.subplots(
        2,
        len(stages),
        figsize=(WIDTH, 4.6),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for row, reference in zip(axes, REFERENCES, strict=True):
        means = [stage_means(r.tables["similarity"], metric, reference) for r in runs]
        for ax, stage in zip(row, stages, strict=True):
            for g, style in zip(means, styles, strict=True):
                e = g[g["stage"] == stage].sort_values("level")
                run_line(ax, e["network_sparsity"], e["value"], style)
            sparsity_axis(ax, top, label=False)
            if reference == "baseline":
                ax.set_title(stage)
            else:  # the legend takes the figure's foot: no figure-wide x label
                ax.set_xlabel("network sparsity (%)")
        row[0].set_ylabel(f"{LABELS[metric]}\n{REFERENCES[reference]}")
    runs_legend(fig, [r.label for r in runs], styles)
    note = (
        " One panel per stage (columns) and reference (rows); x on a log scale of the weights "
        "remaining."
    )
    return save(
        fig, out, f"similarity_{metric}_stages", _caption(metric, inp) + note + OVERLAY_NOTE
    )


def _heat_map(inp: FigureInputs, sim: pd.DataFrame, metric: str, out: Path) -> FigureFile:
    layers = list(dict.fromkeys(sim["layer"]))
    levels = sorted(sim["level"].unique())
    sparsity = sim.groupby("level")["network_sparsity"].first()
    stage_of = dict(zip(sim["layer"], sim["stage"], strict=False))
    d = sim[sim["metric"] == metric]
    values = d["value"].to_numpy(dtype=float)
    below = int((values < 0).sum())  # cosine can be negative: drawn as 0, and said
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(WIDTH, 2 * (0.17 * len(levels) + 1.2) + 0.9),
        sharex=True,
        layout="constrained",
    )
    for ax, reference in zip(axes, REFERENCES, strict=True):
        grid = (
            d[d["reference"] == reference]
            .pivot(index="level", columns="layer", values="value")
            .reindex(index=levels, columns=layers)
        )
        im = ax.imshow(
            grid.to_numpy(dtype=float),
            aspect="auto",
            cmap="viridis",
            vmin=0.0,  # fixed: one colour is one similarity in every run's report
            vmax=1.0,
            interpolation="nearest",
        )
        ax.set_yticks(range(len(levels)))
        ax.set_yticklabels([f"{lv} ({100 * sparsity[lv]:.1f}%)" for lv in levels])
        ax.set_ylabel("level (sparsity)")
        ax.set_title(REFERENCES[reference], loc="left")
        ax.grid(False)
        _stage_bands(ax, layers, stage_of)
    axes[-1].set_xticks(range(len(layers)))
    axes[-1].set_xticklabels(layers, rotation=90)
    fig.colorbar(
        im, ax=axes, shrink=0.9, label=LABELS[metric], extend="min" if below else "neither"
    )
    negative = f" {below} cells below 0 are drawn as 0." if below else ""
    return save(
        fig,
        out,
        f"similarity_{metric}",
        f"Activation similarity ({LABELS[metric]}) of every prunable layer to the dense network "
        f"and to the previous level, level by layer; white lines and the top labels mark stages; "
        f"the colour scale is fixed from 0 to 1 (present: {_range(values)}).{negative} "
        f"{where(inp)}{first_run_note(inp)}",
    )


def _range(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    return f"{finite.min():.2f} to {finite.max():.2f}" if finite.size else "no finite value"


def _stage_bands(ax: plt.Axes, layers: list[str], stage_of: dict[str, str]) -> None:
    """White lines between stages, and the stage names above the columns."""
    starts = [0] + [
        i for i in range(1, len(layers)) if stage_of[layers[i]] != stage_of[layers[i - 1]]
    ]
    for b in starts[1:]:
        ax.axvline(b - 0.5, color="white", lw=1.0)
    ends = [*starts[1:], len(layers)]
    top = ax.secondary_xaxis("top")
    top.set_xticks([(a + b - 1) / 2 for a, b in zip(starts, ends, strict=True)])
    top.set_xticklabels([stage_of[layers[a]] for a in starts])
    top.tick_params(length=0)


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    sim = inp.tables["similarity"]
    files = []
    for metric in [m for m in LABELS if m in set(sim["metric"])]:
        files.append(_lines(inp, sim, metric, out))
        files.append(_heat_map(inp, sim, metric, out))
    return files
