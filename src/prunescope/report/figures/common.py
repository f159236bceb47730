"""Shared figure plumbing: one style, PNG + PDF output, level selection, the sparsity axis.

Figures are sized for a paper: 7.2 in wide (a two-column page's text width) or
less, every text at least 7 pt at that size (:func:`save` measures the
smallest and records it; a test checks every figure), PNG at 200 dpi beside a
vector PDF. Stages are told apart by colour *and* by line style or marker or
hatch, so that they stay distinguishable in grayscale and for colour-blind
readers: the colours come from viridis, whose lightness rises monotonically.
In a report on several runs, each run keeps one colour, line style and marker
(:func:`run_styles`) on every figure that overlays them.
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
from matplotlib.lines import Line2D
from matplotlib.text import Text

from prunescope.rundir.atomic import atomic_write_bytes

WIDTH, HEIGHT, DPI = 7.2, 3.4, 200
MIN_TEXT_PT = 7.0
# Where the paper's Figs. 5-6 look: 20, 59, 79 and 89% network sparsity.
PAPER_SPARSITIES = (0.20, 0.59, 0.79, 0.89)
# TrueType (Type 42) fonts in PDF and PostScript: matplotlib's default Type 3 fonts are
# rejected by many venues' submission checks (IEEE PDF eXpress, ACM's TAPS).
FONT_TYPES = {"pdf.fonttype": 42, "ps.fonttype": 42}

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
        **FONT_TYPES,
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


@dataclass(frozen=True)
class ComparedRun:
    """One run of a report on several: its tables and its own findings."""

    label: str  # the settings that differ (report.runs.run_labels)
    tables: dict[str, pd.DataFrame]
    summary: dict
    stage_order: list[str]
    exclude: list[str]


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
    compared: list[ComparedRun] = field(default_factory=list)  # every run, the first included


def overlaid(inp: FigureInputs) -> bool:
    """A report on several runs: a figure that can draw every run draws them all."""
    return len(inp.compared) > 1


def first_run_note(inp: FigureInputs) -> str:
    """A caption's note on a figure that draws one run of several: which one."""
    if not overlaid(inp):
        return ""
    return f" Shown: the first run ({inp.compared[0].label}) only."


def compared_with(inp: FigureInputs, table: str) -> list[ComparedRun]:
    """The runs (in report order) whose ``table`` has rows."""
    return [r for r in inp.compared if table in r.tables and not r.tables[table].empty]


@dataclass(frozen=True)
class RunStyle:
    colour: str
    linestyle: object
    marker: str


RUN_LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]


def run_styles(n: int) -> list[RunStyle]:
    """One style per run, the same run alike on every figure: a colour of matplotlib's
    cycle (as the accuracy figure's) with its own line style and marker, so runs stay
    apart in grayscale too."""
    return [
        RunStyle(f"C{i % 10}", RUN_LINESTYLES[i % len(RUN_LINESTYLES)], MARKERS[i % len(MARKERS)])
        for i in range(n)
    ]


OVERLAY_NOTE = (
    " Runs overlaid: each run one colour, line style and marker, labelled by the settings "
    "that differ between the runs."
)


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
        with plt.rc_context(FONT_TYPES):  # whatever rcParams a caller changed since import
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
    """Legend entries drawn as the figure draws its stages: "line" (line and marker),
    "stairs" (line only: a histogram's steps carry no marker) or "patch" (filled, hatched)."""
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
            marker=styles[s].marker if kind == "line" else "",
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


def targets_missed(
    levels: pd.DataFrame, targets: tuple[float, ...], tolerance: float = 0.05
) -> list[tuple[float, int, float]]:
    """The targets :func:`levels_near` finds no level for: (target, the nearest level, its
    sparsity), for a caption to say which of the paper's sparsities a figure lacks."""
    lv = levels[["level", "network_sparsity"]].drop_duplicates().sort_values("level")
    out = []
    for t in targets:
        diff = (lv["network_sparsity"] - t).abs().to_numpy()
        idx = int(diff.argmin())
        if diff[idx] > tolerance + 1e-9:
            out.append((t, int(lv["level"].iloc[idx]), float(lv["network_sparsity"].iloc[idx])))
    return out


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
        remaining_axis_on_top(ax, ticks)


def _to_remaining(s):
    return 100.0 * (1.0 - np.asarray(s, dtype=float))


def _from_remaining(r):
    return 1.0 - np.asarray(r, dtype=float) / 100.0


def remaining_axis_on_top(ax: plt.Axes, ticks: list[float]) -> None:
    """A top axis in weights remaining (%), each tick over its sparsity's tick.

    A secondary axis lays itself out linearly in the parent's data (it only follows a
    parent's *log* scale), which put "50" at 50% sparsity's linear place, far from where
    the bottom axis draws it. So its own scale is the bottom's, written in percent
    remaining: both map through ``_to_axis``, so the same x pixel reads r = 100 − s. (A
    secondary axis sets its scale again only when the parent's scale changes; ``ax`` has
    its function scale already.)
    """
    sec = ax.secondary_xaxis("top", functions=(_to_remaining, _from_remaining))
    sec.set_xscale(
        "function",
        functions=(
            lambda r: _to_axis(_from_remaining(r)),
            lambda v: _to_remaining(_from_axis(v)),
        ),
    )
    sec.set_xticks(_to_remaining(ticks))
    sec.set_xticklabels([f"{100 * (1 - t):g}" for t in ticks])
    sec.set_xlabel("weights remaining (%)")


def plain_log(ax: plt.Axes, axis: str = "y") -> None:
    """A log axis with plain-number tick labels (math text is off for every figure); call it
    once the data are drawn. Labels at 1, 2 and 5 of each decade where the axis spans a few
    (powers of ten alone left a ratio axis from 0.3 to 6 with one label, "1")."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = np.log10(max(hi, 1e-300) / max(lo, 1e-300))
    subs = range(1, 10) if decades < 1 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


CRITICAL_LABEL = "critical sparsity"
CRITICAL_STYLE = {"color": "#b2182b", "ls": "--", "lw": 0.9}


def mark_critical(ax: plt.Axes, critical: dict, x: float | None = None) -> Line2D | None:
    """A dashed vertical line at the critical sparsity (or at ``x``), named in the figure's
    legend: a "critical" label inside the axes sat on the data or on an inner legend."""
    if critical.get("level") is None:
        return None
    where = critical["network_sparsity"] if x is None else x
    return ax.axvline(where, zorder=0, label=CRITICAL_LABEL, **CRITICAL_STYLE)


def pct(s: float) -> str:
    return f"{100 * s:.1f}%"


def grid_columns(n: int) -> int:
    """Columns for ``n`` panels on a page's width: three at most (narrower panels crowd their
    tick labels), two where that leaves fewer cells empty (four stages: 2 × 2, not 3 + 1)."""
    if n <= 3:
        return max(n, 1)
    return min((3, 2), key=lambda c: (-n % c, -c))


def panel_grid(
    n: int, panel_height: float, extra: float = 0.6, **kwargs
) -> tuple[plt.Figure, list[plt.Axes]]:
    """``n`` panels in rows of :func:`grid_columns`, the cells left over hidden."""
    cols = grid_columns(n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(WIDTH, panel_height * rows + extra),
        squeeze=False,
        layout="constrained",
        **kwargs,
    )
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def run_line(ax: plt.Axes, x, y, style: RunStyle) -> None:
    """One run's line on an overlay (named once, in :func:`runs_legend`)."""
    ax.plot(x, y, color=style.colour, ls=style.linestyle, marker=style.marker, ms=3, lw=1.1)


def runs_legend(fig: plt.Figure, labels: list[str], styles: list[RunStyle]) -> None:
    """The runs, below the panels (never over their data)."""
    handles = [
        Line2D([], [], color=s.colour, ls=s.linestyle, marker=s.marker, ms=3.5, label=lab)
        for lab, s in zip(labels, styles, strict=True)
    ]
    # as many columns as fit the page: a label is a list of settings, and a row wider than
    # the figure is cut off at its edges
    longest = max(len(lab) for lab in labels)
    fit = int(WIDTH // (0.5 + 0.05 * longest))  # inches: the handle, then ~0.05 a character
    ncols = max(1, min(3, len(labels), fit))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, title="run")
