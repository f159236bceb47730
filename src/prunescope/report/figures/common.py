"""Shared figure plumbing: one style, PNG + PDF output, level selection, the sparsity axis.

Figures are sized for a paper: 7.2 in wide (a two-column page's text width) or
less, every text at least 7 pt at that size (:func:`save` measures the
smallest and records it; a test checks every figure), PNG at 200 dpi beside a
vector PDF. Stages are told apart by colour *and* by line style or marker or
hatch, so that they stay distinguishable in grayscale and for colour-blind
readers: the colours come from viridis, whose lightness rises monotonically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.text import Text

from prunescope.rundir.atomic import atomic_write_bytes

WIDTH, HEIGHT, DPI = 7.2, 3.4, 200
MIN_TEXT_PT = 7.0
# Where the paper's Figs. 5-6 look: 20, 59, 79 and 89% network sparsity.
PAPER_SPARSITIES = (0.20, 0.59, 0.79, 0.89)

plt.rcParams.update(
    {
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "font.size": 8,
        "axes.titlesize": 8,
        "axes.labelsize": 8,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "legend.fontsize": 7,
        "legend.title_fontsize": 7,
        "figure.titlesize": 9,
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
class RunSeries:
    """One run (or one group of replicates, or a control branch) on an overlaid figure."""

    label: str
    accuracy: pd.DataFrame  # the pinned accuracy table (the mean over replicates)
    critical: dict
    band: pd.DataFrame | None = None  # replicates: level, low, high (95% interval)
    replicates: int = 1
    control: bool = False  # a control branch of the first run


@dataclass
class FigureInputs:
    """Everything a figure may read: tables only (never checkpoints)."""

    tables: dict[str, pd.DataFrame]
    stage_order: list[str]
    exclude: list[str]
    critical: dict
    runs: list[RunSeries] = field(default_factory=list)
    targets: tuple[float, ...] = PAPER_SPARSITIES
    zeroing_mode: str = "weights"
    controls: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)  # kind -> tables
    run_tables: list[tuple[str, dict[str, pd.DataFrame]]] = field(default_factory=list)
    layer_types: dict[str, str] = field(default_factory=dict)  # layer -> "3x3 conv", "linear"...
    hardware: str = "this machine"
    metric: str = "top-1 accuracy"  # what "accuracy" means for the dataset
    batchnorm: bool = True  # the model has BatchNorm (captions say what it changes)
    summary: dict = field(default_factory=dict)  # the findings: figures read, never recompute


@dataclass
class FigureFile:
    name: str
    caption: str
    png: Path
    pdf: Path
    size: tuple[int, int]
    min_text_pt: float


def smallest_text(fig: plt.Figure) -> float:
    """The smallest font size (pt) of any visible, non-empty text in the figure."""
    sizes = [
        t.get_fontsize()
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None
    ]
    return float(min(sizes)) if sizes else float("inf")


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
    smallest = smallest_text(fig)
    plt.close(fig)
    return FigureFile(name, caption, png, pdf, (round(w * DPI), round(h * DPI)), smallest)


@dataclass(frozen=True)
class StageStyle:
    colour: tuple
    linestyle: object
    marker: str
    hatch: str


LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)), (0, (8, 3))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
HATCHES = ["", "////", "....", "xxxx", "\\\\\\\\", "++++", "----", "oooo"]


def stage_styles(stages: list[str]) -> dict[str, StageStyle]:
    """A colour (viridis, dark to light), a line style, a marker and a hatch per stage: no two
    stages share a (line style, marker) pair, so none depends on colour alone."""
    cmap = plt.get_cmap("viridis")
    n = max(len(stages) - 1, 1)
    return {
        s: StageStyle(
            cmap(0.85 * i / n),
            LINESTYLES[i % len(LINESTYLES)],
            MARKERS[i % len(MARKERS)],
            HATCHES[i % len(HATCHES)],
        )
        for i, s in enumerate(stages)
    }


def styled_boxes(ax: plt.Axes, data: list, styles: list[StageStyle], widths: float = 0.6) -> None:
    """The project's box plot: one box per array, filled with its stage's colour and hatch."""
    box = ax.boxplot(
        data,
        patch_artist=True,
        widths=widths,
        flierprops={"markersize": 1.5, "alpha": 0.5},
        medianprops={"color": "black", "linewidth": 1.0},
        whiskerprops={"linewidth": 0.8},
        capprops={"linewidth": 0.8},
    )
    for patch, style in zip(box["boxes"], styles, strict=True):
        patch.set_facecolor(style.colour)
        patch.set_alpha(0.85)
        patch.set_hatch(style.hatch)
        patch.set_edgecolor("black")
        patch.set_linewidth(0.6)


def stage_legend_handles(styles: dict[str, StageStyle], stages: list[str], kind: str = "line"):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if kind == "patch":
        return [
            Patch(facecolor=styles[s].colour, hatch=styles[s].hatch, edgecolor="black", label=s)
            for s in stages
        ]
    return [
        Line2D(
            [],
            [],
            color=styles[s].colour,
            ls=styles[s].linestyle,
            marker=styles[s].marker,
            ms=4,
            label=s,
        )
        for s in stages
    ]


def levels_near(
    levels: pd.DataFrame, targets: tuple[float, ...], tolerance: float = 0.05
) -> list[int]:
    """Levels within ``tolerance`` of each target sparsity (the nearest one per target);
    when no level is near any target, the levels nearest to them instead."""
    lv = levels[["level", "network_sparsity"]].drop_duplicates().sort_values("level")
    out: list[int] = []
    nearest: list[int] = []
    for t in targets:
        diff = (lv["network_sparsity"] - t).abs().to_numpy()
        idx = int(diff.argmin())  # ties: the lower level
        level = int(lv["level"].iloc[idx])
        nearest.append(level)
        if diff[idx] <= tolerance + 1e-9 and level not in out:
            out.append(level)
    return sorted(out) if out else sorted(set(nearest))


def _to_axis(s):
    return -np.log10(np.clip(1.0 - np.asarray(s, dtype=float), 1e-6, None))


def _from_axis(v):
    return 1.0 - 10.0 ** (-np.asarray(v, dtype=float))


SPARSITY_TICKS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998]
SPARSITY_AXIS_LABEL = "network sparsity (%): log scale of the weights remaining"


def sparsity_axis(
    ax: plt.Axes, top: float, remaining_axis: bool = False, label: bool = True
) -> None:
    """x = network sparsity on a scale that spreads the high end: equal steps are equal
    factors of the weights remaining (−log10 of 1 − sparsity), as IMP's levels are."""
    ax.set_xscale("function", functions=(_to_axis, _from_axis))
    ticks = [t for t in SPARSITY_TICKS if t <= max(top, 0.5) + 1e-9]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{100 * t:g}" for t in ticks])
    ax.set_xlim(0.0, min(max(top, 0.5) * 1.0 + (1 - max(top, 0.5)) * 0.3, 0.999))
    ax.set_xlabel(SPARSITY_AXIS_LABEL if label else "")
    if remaining_axis:
        sec = ax.secondary_xaxis("top")
        sec.set_xticks(ticks)
        sec.set_xticklabels([f"{100 * (1 - t):g}" for t in ticks])
        sec.set_xlabel("weights remaining (%)")


def plain_log(ax: plt.Axes, axis: str = "y") -> None:
    """A log axis with plain-number tick labels (math text is off for every figure)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def mark_critical(ax: plt.Axes, critical: dict, x: float | None = None, low: bool = False) -> None:
    """A dashed vertical line at the critical sparsity (or at ``x``), labelled at the top of
    the axes (or at the bottom with ``low``, where the data leave room there)."""
    if critical.get("level") is None:
        return
    where = critical["network_sparsity"] if x is None else x
    ax.axvline(where, color="#b2182b", ls="--", lw=0.9, zorder=0)
    ax.annotate(
        "critical",
        (where, 0.0 if low else 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-2, 2 if low else -2),
        textcoords="offset points",
        va="bottom" if low else "top",
        ha="right",
        fontsize=7,
        color="#b2182b",
    )


def pct(s: float) -> str:
    return f"{100 * s:.1f}%"
