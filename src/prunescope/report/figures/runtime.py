"""What pruning buys at run time: each format's latency against dense per level, and per
layer the sparse/dense ratio against the layer's sparsity (the crossover), with the
hardware named on the figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from prunescope.report.figures.common import (
    WIDTH,
    FigureFile,
    FigureInputs,
    first_run_note,
    plain_log,
    save,
    sparsity_axis,
)
from prunescope.runtime.formats import FORMATS

STYLE = {name: f.style for name, f in FORMATS.items() if name != "dense"}
TYPES = {"3x3 conv": "o", "1x1 conv": "s", "linear": "^", "grouped conv": "D", "other": "x"}


def timed_on(inp: FigureInputs) -> str:
    """Where the timings ran, from the table (the run may have trained elsewhere)."""
    rt = inp.tables["runtime"]
    threads = sorted({int(t) for t in rt["threads"]})
    count = "/".join(map(str, threads))
    return f"{', '.join(sorted(set(rt['device'])))} ({count} thread{'s' if threads != [1] else ''})"


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    layers = pd.concat(
        [
            t
            for t in (inp.tables.get("runtime_layers"), inp.tables.get("runtime_layers_synthetic"))
            if t is not None
        ],
        ignore_index=True,
    )
    # the finding's ratios at the run's levels and the synthetic sparsities together (the
    # page's sentences state the run's levels only; the figure shows both, labelled)
    ratios = pd.DataFrame(inp.summary["runtime"]["ratios_shown"])
    batches = sorted(ratios["batch_size"].unique())
    fig, axes = plt.subplots(1, len(batches) + 1, figsize=(WIDTH, 3.0), layout="constrained")
    top = float(ratios["network_sparsity"].max())
    for ax, b in zip(axes, batches, strict=False):
        d = ratios[(ratios["batch_size"] == b) & (ratios["format"] != "dense") & ratios["right"]]
        for fmt, (ls, marker) in STYLE.items():
            g = d[d["format"] == fmt].sort_values("network_sparsity")
            if not g.empty:
                ax.plot(
                    g["network_sparsity"],
                    g["ratio"],
                    ls=ls,
                    marker=marker,
                    ms=3.5,
                    color="black",
                    label=fmt,
                )
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_yscale("log")
        plain_log(ax)
        sparsity_axis(ax, top, label=False)
        ax.set_xlabel("network sparsity (%)")
        ax.set_title(f"batch {b}: latency / dense")
    ax = axes[-1]
    if not layers.empty:
        wide = (
            layers[layers["format"].isin(["dense", "sparse"])]
            .pivot_table(
                index=["layer", "sparsity", "batch_size", "level", "network_sparsity"],
                columns="format",
                values="latency_ms",
            )
            .reset_index()
        )
        b = max(batches)
        wide = wide[wide["batch_size"] == b]
        for kind, marker in TYPES.items():
            g = wide[wide["layer"].map(lambda lay: inp.layer_types.get(lay, "other")) == kind]
            if not g.empty:
                ax.scatter(
                    100 * g["sparsity"],
                    g["sparse"] / g["dense"],
                    marker=marker,
                    s=9,
                    label=kind,
                    color="black",
                    alpha=0.6,
                )
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_yscale("log")
        plain_log(ax)
        ax.set_xlim(0, 100)
        ax.set_xlabel("layer sparsity (%)")
        ax.set_title(f"per layer (batch {b}): sparse / dense")
    axes[0].set_ylabel("latency ratio (log scale; below 1 is faster)")
    # formats and layer kinds in one legend below the panels: inside any panel it covered
    # the sparse line (which starts high at the left) or a layer's points
    handles = axes[0].get_legend_handles_labels()[0] + axes[-1].get_legend_handles_labels()[0]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6))
    fig.suptitle(f"measured on {inp.hardware}, {timed_on(inp)}", fontsize=8)
    synthetic = (
        " Points past the run's last level come from synthetic masks (the last level pruned further by global magnitude, not trained)."
        if inp.tables.get("runtime_synthetic") is not None
        and not inp.tables["runtime_synthetic"].empty
        else ""
    )
    return [
        save(
            fig,
            out,
            "runtime",
            "Inference latency of each format divided by the dense network's (medians of "
            "interleaved repetitions, outputs checked against dense; a format that disagreed "
            f"is left out), and per pruned layer the CSR sparse layer's latency over the dense "
            f"one against the layer's own sparsity.{synthetic}" + first_run_note(inp),
        )
    ]
