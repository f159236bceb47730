"""Figs. 13–14: activation similarity to the baseline and to the previous level, level × layer heat maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from prunescope.report.figures.common import FigureFile, FigureInputs, save

LABELS = {"cosine": "cosine", "cosine_per_neuron": "mean per-neuron cosine", "cka": "linear CKA"}


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    sim = inp.tables["similarity"]
    files = []
    layers = list(dict.fromkeys(sim["layer"]))
    levels = sorted(sim["level"].unique())
    sparsity = sim.groupby("level")["network_sparsity"].first()
    stage_of = dict(zip(sim["layer"], sim["stage"], strict=False))
    for metric in [m for m in LABELS if m in set(sim["metric"])]:
        fig, axes = plt.subplots(
            1, 2, figsize=(12.0, 0.28 * len(levels) + 3.8), sharey=True, layout="constrained"
        )
        for ax, reference in zip(axes, ("baseline", "previous"), strict=True):
            d = sim[(sim["metric"] == metric) & (sim["reference"] == reference)]
            grid = d.pivot(index="level", columns="layer", values="value").reindex(
                index=levels, columns=layers
            )
            im = ax.imshow(
                grid.to_numpy(dtype=float),
                aspect="auto",
                cmap="viridis",
                vmin=0.0,
                vmax=1.0,
                interpolation="nearest",
            )
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels(layers, rotation=90, fontsize=5)
            ax.set_yticks(range(len(levels)))
            ax.set_yticklabels([f"{lv} ({100 * sparsity[lv]:.1f}%)" for lv in levels], fontsize=6)
            ax.set_title(
                "to the baseline (level 0)" if reference == "baseline" else "to the previous level"
            )
            ax.grid(False)
            bounds = [
                i - 0.5
                for i in range(1, len(layers))
                if stage_of[layers[i]] != stage_of[layers[i - 1]]
            ]
            for b in bounds:
                ax.axvline(b, color="white", lw=0.8)
        axes[0].set_ylabel("level (network sparsity)")
        fig.colorbar(im, ax=axes, shrink=0.9, label=LABELS[metric])
        files.append(
            save(
                fig,
                out,
                f"similarity_{metric}",
                f"Activation similarity ({LABELS[metric]}) of every prunable layer's output to the dense network "
                f"and to the previous level (paper Figs. 13–14); white lines separate stages.",
            )
        )
    return files
