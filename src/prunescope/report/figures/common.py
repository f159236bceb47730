"""Shared figure plumbing: one style, PNG + PDF output, level selection, the sparsity axis."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from prunescope.rundir.atomic import atomic_write_bytes

WIDTH, HEIGHT, DPI = 8.0, 4.5, 150  # every PNG is 1200 × 675 px unless a figure says otherwise

plt.rcParams.update(
    {
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        # Labels carry stage, layer and run names from run directories that may come from
        # someone else: plain text, never math text ("$...$" would be parsed, and can crash).
        "text.parse_math": False,
        "text.usetex": False,
    }
)


@dataclass
class FigureInputs:
    """Everything a figure may read: tables only (never checkpoints)."""

    tables: dict[str, pd.DataFrame]
    stage_order: list[str]
    exclude: list[str]
    critical: dict
    runs: list[tuple[str, pd.DataFrame, dict]] = field(
        default_factory=list
    )  # (label, accuracy, critical)
    targets: tuple[float, ...] = (0.20, 0.59, 0.79, 0.89)


@dataclass
class FigureFile:
    name: str
    caption: str
    png: Path
    pdf: Path
    size: tuple[int, int]


def save(fig: plt.Figure, folder: Path, name: str, caption: str) -> FigureFile:
    """Write the figure as PNG and PDF, each atomically."""
    png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
    for path, fmt, meta in (
        (png, "png", {"Software": None}),
        # no creation date: the same tables give the same PDF bytes
        (pdf, "pdf", {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}),
    ):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta)
        atomic_write_bytes(path, buf.getvalue())
    w, h = fig.get_size_inches()
    plt.close(fig)
    return FigureFile(name, caption, png, pdf, (round(w * DPI), round(h * DPI)))


def stage_colours(stages: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("viridis")
    n = max(len(stages) - 1, 1)
    return {s: cmap(0.05 + 0.85 * i / n) for i, s in enumerate(stages)}


def coloured_boxes(ax: plt.Axes, data: list, colours: list) -> None:
    """The project's box plot: one box per array, filled with its colour, small fliers."""
    box = ax.boxplot(
        data,
        patch_artist=True,
        widths=0.6,
        flierprops={"markersize": 1.5, "alpha": 0.5},
        medianprops={"color": "black"},
    )
    for patch, colour in zip(box["boxes"], colours, strict=True):
        patch.set_facecolor(colour)
        patch.set_alpha(0.8)


def nearest_levels(levels: pd.DataFrame, targets: tuple[float, ...]) -> list[int]:
    """For each target network sparsity, the level closest to it (ties: the lower level), deduplicated."""
    lv = levels[["level", "network_sparsity"]].drop_duplicates().sort_values("level")
    out = []
    for t in targets:
        idx = (lv["network_sparsity"] - t).abs().to_numpy().argmin()
        level = int(lv["level"].iloc[idx])
        if level not in out:
            out.append(level)
    return sorted(out)


def _to_axis(s):
    return -np.log10(np.clip(1.0 - np.asarray(s, dtype=float), 1e-6, None))


def _from_axis(v):
    return 1.0 - 10.0 ** (-np.asarray(v, dtype=float))


SPARSITY_TICKS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998]


def sparsity_axis(ax: plt.Axes, top: float) -> None:
    """x = network sparsity on a scale that spreads the high end (−log10 of the remaining fraction)."""
    ax.set_xscale("function", functions=(_to_axis, _from_axis))
    ticks = [t for t in SPARSITY_TICKS if t <= max(top, 0.5) + 1e-9]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{100 * t:g}" for t in ticks])
    ax.set_xlim(0.0, min(max(top, 0.5) * 1.0 + (1 - max(top, 0.5)) * 0.3, 0.999))
    ax.set_xlabel("network sparsity (%)")


def pct(s: float) -> str:
    return f"{100 * s:.1f}%"
