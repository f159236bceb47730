"""Figs. 13–14: activation similarity to the baseline and to the previous level.

Two views per metric: the paper's (one line per stage, the mean over its
layers, against network sparsity) and a level × layer heat map whose colour
scale spans the values present.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from prunescope.report.figures.common import (
    SPARSITY_AXIS_LABEL,
    WIDTH,
    FigureFile,
    FigureInputs,
    mark_critical,
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


def _lines(inp: FigureInputs, sim: pd.DataFrame, metric: str, out: Path) -> FigureFile:
    styles = stage_styles(inp.stage_order)
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.0), sharey=True, layout="constrained")
    top = float(sim["network_sparsity"].max())
    for ax, reference in zip(axes, REFERENCES, strict=True):
        d = sim[(sim["metric"] == metric) & (sim["reference"] == reference)]
        g = d.groupby(["level", "network_sparsity", "stage"], as_index=False)["value"].mean()
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
    axes[0].set_ylabel(f"{LABELS[metric]} (mean over the stage's layers)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="stage")
    return save(
        fig,
        out,
        f"similarity_{metric}_stages",
        f"Activation similarity ({LABELS[metric]}) per stage against network sparsity, to the "
        f"dense network and to the previous level (the paper's Figs. 13–14). {where(inp)}",
    )


def _heat_map(inp: FigureInputs, sim: pd.DataFrame, metric: str, out: Path) -> FigureFile:
    layers = list(dict.fromkeys(sim["layer"]))
    levels = sorted(sim["level"].unique())
    sparsity = sim.groupby("level")["network_sparsity"].first()
    stage_of = dict(zip(sim["layer"], sim["stage"], strict=False))
    d = sim[sim["metric"] == metric]
    values = d["value"].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.01, hi + 0.01
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
            vmin=lo,
            vmax=hi,
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
    fig.colorbar(im, ax=axes, shrink=0.9, label=f"{LABELS[metric]} (scale: the range present)")
    return save(
        fig,
        out,
        f"similarity_{metric}",
        f"Activation similarity ({LABELS[metric]}) of every prunable layer to the dense network "
        f"and to the previous level, level by layer; white lines and the top labels mark stages; "
        f"the colour scale spans the values present ({lo:.2f} to {hi:.2f}). {where(inp)}",
    )


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
