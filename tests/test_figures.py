"""Figures as good as the paper's (issue #11), checked on the figure objects themselves,
drawn from tables built by hand."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from prunescope.config import build_config
from prunescope.report.figures import accuracy, similarity, weights, zeroing
from prunescope.report.figures.common import (
    FigureFile,
    FigureInputs,
    RunSeries,
    levels_near,
    stage_styles,
)
from prunescope.report.figures.neuron_sparsity import shown_levels
from prunescope.report.findings import connectivity_finding, runtime_finding
from prunescope.report.runs import run_labels

STAGES = ["stem", "stage1", "stage2", "stage3"]


@pytest.fixture
def captured(monkeypatch):
    """Figures a module draws, kept open instead of written: (figure, name, caption)."""
    out = []

    def keep(fig, folder, name, caption):
        out.append((fig, name, caption))
        return FigureFile(name, caption, Path(folder) / f"{name}.png", Path("x.pdf"), (0, 0), 9.0)

    def arm(*modules):
        for m in modules:
            monkeypatch.setattr(m, "save", keep)
        return out

    return arm


def inputs(tables, critical=None, runs=(), summary=None):
    crit = critical or {"level": None, "margin": 0.02}
    return FigureInputs(tables, STAGES, [], crit, list(runs), summary=summary or {})


def test_stage_styles_tell_every_stage_apart_without_colour():
    for n in range(1, 13):
        styles = list(stage_styles([f"s{i}" for i in range(n)]).values())
        pairs = {(str(s.linestyle), s.marker) for s in styles}
        assert len(pairs) == n  # line style and marker alone tell them apart (grayscale)
        lum = [np.dot(mcolors.to_rgb(s.colour), [0.2126, 0.7152, 0.0722]) for s in styles]
        assert all(b > a for a, b in itertools.pairwise(lum))  # viridis: monotone


def test_neuron_sparsity_shows_where_neurons_start_to_die():
    sparsity = [1 - 0.6**k for k in range(9)]  # the quickstart: 0, 40, 64, 78.4 ... 98.3%
    ns = pd.DataFrame({"level": range(9), "network_sparsity": sparsity})
    dead = pd.DataFrame({"level": range(9), "fully_pruned": [0, 0, 0, 0, 0, 1, 3, 9, 60]})
    levels = shown_levels(ns, dead, (0.20, 0.59, 0.79, 0.89))
    # 64% ~ 59%, 78.4% ~ 79%, 87% ~ 89% (within 5 points; nothing is near 20%), the first
    # level with a dead neuron (5) and the last (8); never the dense level 0
    assert levels == [2, 3, 4, 5, 8]


def test_the_paper_levels_where_they_exist():
    lv = pd.DataFrame({"level": range(1, 6), "network_sparsity": [0.2, 0.36, 0.488, 0.59, 0.672]})
    assert levels_near(lv, (0.20, 0.59, 0.79, 0.89)) == [1, 4]
    # nothing within 5 points: the nearest instead, so a figure is never empty
    assert levels_near(lv[lv["level"] == 3], (0.20, 0.59)) == [3]


def _zeroing_table():
    rng = np.random.default_rng(0)
    rows = []
    for level in range(4):
        for stage, scale in zip(STAGES, (0.3, 0.1, 0.02, 0.002), strict=True):
            for i, d in enumerate(rng.normal(0, scale, 20)):
                rows.append((level, 0.2 * level, stage, f"{stage}.conv", i, 0.9, 0.9 + d, d, 1, 1))
    cols = ["level", "network_sparsity", "stage", "layer", "neuron"]
    cols += ["base_accuracy", "accuracy", "delta_accuracy", "base_loss", "loss"]
    return pd.DataFrame(rows, columns=cols)


def test_zeroing_panels_have_their_own_y_range_and_mark_the_critical_sparsity(captured):
    from prunescope.report.findings import bn_constant_finding

    figs = captured(zeroing)
    crit = {"level": 2, "network_sparsity": 0.4, "margin": 0.02}
    bn = pd.DataFrame(
        {
            "level": 3,
            "network_sparsity": 0.6,
            "stage": ["stem", "stem", "stage1"],
            "layer": ["a", "a", "b"],
            "neuron": [0, 1, 0],
            "constant": [-0.4, 0.6, 0.1],
        }
    )
    summary = {"bn_constant": bn_constant_finding(bn, STAGES)}  # as the report's findings
    tables = {"zeroing": _zeroing_table(), "bn_constants": bn}
    zeroing.draw(inputs(tables, crit, summary=summary), Path("."))
    fig, _name, caption = figs[0]
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(fig.axes) == 4  # four stages: 2 x 2, no empty cell
    spans = [ax.get_ylim()[1] - ax.get_ylim()[0] for ax in axes]
    assert spans[0] > 20 * spans[-1]  # stem's ±30 points and stage3's ±0.2 each fill a panel
    # the critical sparsity: a line in every panel, named once in the figure's legend (a
    # label inside a panel sat on its boxes)
    assert all("critical sparsity" in [ln.get_label() for ln in ax.get_lines()] for ax in axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["critical sparsity"]
    # the finding's number, at the level the finding quotes (not a median over every level)
    assert axes[0].get_title() == "stem\nmedian |BN constant| 0.50 (level 3)"
    assert "β − γμ/√(σ²+ε)" in caption and "at level 3" in caption
    assert "the paper's definition" in fig.get_suptitle()


def test_zeroing_figures_say_which_variant_they_show(captured):
    figs = captured(zeroing)
    z = _zeroing_table()
    bn = pd.DataFrame(
        {"level": 3, "network_sparsity": 0.6, "stage": "stem", "layer": "a", "neuron": [0]}
    ).assign(constant=0.5)
    zeroing.draw(inputs({"zeroing": z, "zeroing_output": z, "bn_constants": bn}), Path("."))
    (weights_fig, _, weights_caption), (output_fig, name, caption) = figs
    assert name == "zeroing_output"
    assert "after its BatchNorm" in output_fig.get_suptitle() and "after its BatchNorm" in caption
    assert "Compare zeroing.png" in caption and "Compare zeroing_output.png" in weights_caption
    # no finding in the summary: no number in the titles (figures never recompute findings)
    assert "BN constant" not in weights_fig.axes[0].get_title()


def test_similarity_has_the_papers_view_and_heat_maps_on_a_fixed_scale(captured):
    figs = captured(similarity)
    rows = []
    for level in (1, 2, 3):
        for stage, base in zip(STAGES, (0.95, 0.9, 0.85, 0.8), strict=True):
            for ref, ref_level in (("baseline", 0), ("previous", level - 1)):
                v = base - 0.05 * level
                rows.append((level, 0.2 * level, ref, ref_level, stage, f"{stage}.c", "cka", v))
    sim = pd.DataFrame(
        rows,
        columns=[
            "level",
            "network_sparsity",
            "reference",
            "reference_level",
            "stage",
            "layer",
            "metric",
            "value",
        ],
    )
    similarity.draw(inputs({"similarity": sim}), Path("."))
    names = [n for _, n, _ in figs]
    assert names == ["similarity_cka_stages", "similarity_cka"]
    lines_fig = figs[0][0]
    assert len(lines_fig.axes[0].get_lines()) == 4  # one line per stage
    heat = figs[1][0]
    image = heat.axes[0].get_images()[0]
    # 0..1 whatever the values (0.65 to 0.90 here): one colour, one similarity, in every report
    assert image.get_clim() == (0.0, 1.0)
    assert "fixed from 0 to 1 (present: 0.65 to 0.90)" in figs[1][2]
    top_labels = [t.get_text() for t in heat.axes[0].child_axes[0].get_xticklabels()]
    assert top_labels == STAGES
    assert "before its BatchNorm" in figs[1][2]


def test_accuracy_legend_never_covers_the_data(captured):
    figs = captured(accuracy)
    acc = pd.DataFrame(
        {"level": [0, 1], "network_sparsity": [0, 0.2], "test_accuracy": [0.9, 0.9], "test_loss": 1}
    )
    runs = [RunSeries(f"imp.pretrain_epochs={k}", acc, {"level": None}) for k in (1, 5)]
    accuracy.draw(inputs({"accuracy": acc}, runs=runs), Path("."))
    fig = figs[0][0]
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1
    assert "weights remaining" in figs[0][2]


def test_weight_caption_does_not_claim_areas(captured):
    figs = captured(weights)
    rows = []
    for level, ns in ((1, 0.2), (2, 0.59)):
        for stage in STAGES:
            for lo in np.geomspace(1e-3, 1, 5)[:-1]:
                rows.append((level, ns, stage, lo, lo * 10**0.75, 3))
    hist = pd.DataFrame(
        rows, columns=["level", "network_sparsity", "stage", "bin_low", "bin_high", "count"]
    )
    weights.draw(inputs({"weight_hist": hist}), Path("."))
    caption = figs[0][2]
    assert "its visible area does not" in caption and "levels 1, 2" in caption


def test_runs_are_labelled_by_the_keys_that_differ():
    a = build_config(preset="cpu-resnet20-cifar10", overrides=["imp.pretrain_epochs=1"])
    b = build_config(
        preset="cpu-resnet20-cifar10", overrides=["imp.pretrain_epochs=5", "data.root=/else"]
    )
    labels = run_labels([Path("r1"), Path("r2")], [a, b])
    assert labels == ["imp.pretrain_epochs=1", "imp.pretrain_epochs=5"]  # data.root never labels
    assert run_labels([Path("x/r1"), Path("y/r2")], [a, a]) == ["r1", "r2"]


def test_controls_figure_without_sparsity_tables_draws_the_gaps(tmp_path):
    """A run with branches but no sparsity table (run --no-analyze, then branch, then report)
    used to end in KeyError: 'sparsity_layers'."""
    from prunescope.report.figures import controls
    from prunescope.report.figures.common import FigureInputs

    acc = pd.DataFrame(
        {
            "level": [0, 1, 2],
            "network_sparsity": [0.0, 0.2, 0.36],
            "test_accuracy": [0.6, 0.62, 0.63],
            "test_loss": [1.2, 1.1, 1.05],
        }
    )
    from prunescope.report.findings import controls_finding

    branch = {"accuracy": acc.assign(test_accuracy=[0.6, 0.58, 0.55])}
    found = controls_finding(acc, {"random_mask": branch}, ["stem", "fc"], ["fc"])
    inp = FigureInputs(
        {"accuracy": acc},
        ["stem", "fc"],
        ["fc"],
        {"level": None},
        controls={"random_mask": branch},
        summary={"controls": found},
    )
    files = controls.draw(inp, tmp_path)
    assert [f.name for f in files] == ["controls"]
    assert "needs the sparsity tables" in files[0].caption


# --- issue #25: figures that state their numbers right -------------------------------------

QUICKSTART = [1 - 0.6**k for k in range(9)]  # 0, 40, 64 ... 98.3% sparsity


def _accuracy(sparsity=QUICKSTART):
    return pd.DataFrame(
        {
            "level": range(len(sparsity)),
            "network_sparsity": sparsity,
            "test_accuracy": np.linspace(0.95, 0.7, len(sparsity)),
            "test_loss": 0.3,
        }
    )


def _tick_centres(fig, axis) -> dict[str, float]:
    """Each visible tick label's text -> its centre's x in display pixels, as drawn."""
    renderer = fig.canvas.get_renderer()
    out = {}
    for label in axis.get_ticklabels():
        if label.get_visible() and label.get_text():
            box = label.get_window_extent(renderer)
            out[label.get_text()] = (box.x0 + box.x1) / 2
    return out


@pytest.mark.parametrize("sparsity", [QUICKSTART, [1 - 0.8**k for k in range(9)]])
def test_accuracy_top_axis_reads_the_weights_remaining_above_each_sparsity(captured, sparsity):
    """The top axis was laid out linearly over the bottom's log-remaining scale: its "50"
    sat 470 px right of 50% sparsity and the 98.3%-sparse point under "10"."""
    figs = captured(accuracy)
    acc = _accuracy(sparsity)
    accuracy.draw(inputs({"accuracy": acc}, runs=[RunSeries("r", acc, {"level": None})]), Path("."))
    fig = figs[0][0]
    fig.canvas.draw()
    ax = fig.axes[0]
    (top,) = ax.child_axes
    bottom_ticks, top_ticks = _tick_centres(fig, ax.xaxis), _tick_centres(fig, top.xaxis)
    assert len(bottom_ticks) >= 3 and len(top_ticks) == len(bottom_ticks)
    for text, x in bottom_ticks.items():
        remaining = f"{100 - float(text):g}"
        assert top_ticks[remaining] == pytest.approx(x, abs=1.0), (text, remaining)
    # and between the ticks: the last point's pixel reads 100 − its sparsity on the top axis
    x = ax.transData.transform((sparsity[-1], 0))[0]
    reads = top.transData.inverted().transform((x, 0))[0]
    assert reads == pytest.approx(100 * (1 - sparsity[-1]), rel=1e-6)


def test_pdfs_embed_no_type3_font(tmp_path):
    """Type 3 fonts (matplotlib's default) are refused by many venues' PDF checks."""
    import matplotlib

    acc = _accuracy()
    with matplotlib.rc_context({"pdf.fonttype": 3}):  # even where a caller set it back
        (made,) = accuracy.draw(
            inputs({"accuracy": acc}, runs=[RunSeries("r", acc, {"level": None})]), tmp_path
        )
    pdf = made.pdf.read_bytes()
    assert b"/Type3" not in pdf
    assert b"/FontFile2" in pdf  # the TrueType font, embedded


def _segments_px(ax, line, per_segment=20) -> np.ndarray:
    """A drawn line's path, sampled densely, in display pixels."""
    xy = line.get_transform().transform(line.get_xydata())
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) < 2:
        return xy
    t = np.linspace(0, 1, per_segment)[:, None]
    return np.concatenate([a + t * (b - a) for a, b in itertools.pairwise(xy)])


def data_under_legends(fig) -> list[tuple[str, tuple[float, float]]]:
    """(legend entry, pixel) for every plotted point or line sample inside a legend's box."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    boxes = [lg.get_window_extent(renderer) for lg in legends]
    hits = []
    for ax in fig.axes:
        samples = [(ln.get_label(), _segments_px(ax, ln)) for ln in ax.get_lines()]
        samples += [
            (c.get_label(), c.get_offset_transform().transform(c.get_offsets()))
            for c in ax.collections
        ]
        for label, points in samples:
            for box in boxes:
                hits += [(label, tuple(p)) for p in points if box.contains(*p)]
    return hits


def _connectivity_tables():
    rows = []
    for level in range(1, 9):
        ns = 1 - 0.8**level
        for ref, ref_level, bump in (("previous", level - 1, 0.0), ("baseline", 0, 0.03 * level)):
            for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
                loss = 1.3 - 0.05 * level * alpha + bump * 4 * alpha * (1 - alpha)
                rows.append((level, ns, ref, ref_level, alpha, 0.6, loss))
    cols = ["level", "network_sparsity", "reference", "reference_level", "alpha"]
    return pd.DataFrame(rows, columns=[*cols, "test_accuracy", "test_loss"])


def test_connectivity_legends_never_cover_the_data(captured):
    from prunescope.report.figures import connectivity

    figs = captured(connectivity)
    crit = {"level": 7, "network_sparsity": 1 - 0.8**7, "margin": 0.02}
    tables = {"connectivity": _connectivity_tables()}
    found = {"connectivity": connectivity_finding(tables["connectivity"])}
    connectivity.draw(inputs(tables, crit, summary=found), Path("."))
    fig = figs[0][0]
    assert not data_under_legends(fig)
    # the critical sparsity is named in a legend, not by a label inside the panel
    names = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert "critical sparsity" in names and not fig.axes[2].texts


def _runtime_tables():
    rows, layers = [], []
    ratios = {"sparse": 6.0, "exported": 1.1, "hybrid": 1.15, "onnxruntime": 0.35}
    for level in range(8):
        ns = 1 - 0.6**level
        for batch in (1, 64):
            for fmt, r in {"dense": 1.0, **ratios}.items():
                latency = 3.0 * (r if fmt in ("dense", "onnxruntime") else r * (1 - 0.6 * ns))
                rows.append((level, ns, fmt, "cpu", 1, batch, latency))
            for layer, kind_ratio in (("conv1", 8.0), ("layer1.0.conv1", 30.0)):
                for fmt, f in (("dense", 1.0), ("sparse", kind_ratio * (1 - 0.9 * ns))):
                    layers.append((level, ns, "stem", layer, ns, fmt, batch, 0.1 * f))
    cols = ["level", "network_sparsity", "format", "device", "threads", "batch_size"]
    runtime = pd.DataFrame(rows, columns=[*cols, "latency_ms"])
    layer_cols = ["level", "network_sparsity", "stage", "layer", "sparsity", "format"]
    return runtime, pd.DataFrame(layers, columns=[*layer_cols, "batch_size", "latency_ms"])


def test_runtime_legend_off_the_data_and_log_axes_labelled_between_decades(captured):
    from prunescope.report.figures import runtime

    figs = captured(runtime)
    rt, layers = _runtime_tables()
    types = {"conv1": "3x3 conv", "layer1.0.conv1": "3x3 conv"}
    found = {"runtime": {"ratios_shown": runtime_finding(rt, layers, types)["ratios"]}}
    inp = inputs({"runtime": rt, "runtime_layers": layers}, summary=found)
    inp.layer_types = types
    runtime.draw(inp, Path("."))
    fig = figs[0][0]
    assert not data_under_legends(fig)
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        shown = [
            float(t.get_text())
            for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
            if t.get_text() and lo <= v <= hi
        ]
        # a ratio axis over one or two decades read "1" and "10" only
        assert len(shown) >= 3, (ax.get_title(), shown)
        assert any(not np.isclose(np.log10(v), round(np.log10(v))) for v in shown)


def sides_cut_off(fig) -> list[str]:
    """The figure's edges that its drawn content (axes with their tick labels and titles,
    legends, texts) runs past: [] when everything fits."""
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    page, tol = fig.bbox_inches, 0.01
    return [
        side
        for side, past in (
            ("left", drawn.x0 < page.x0 - tol),
            ("right", drawn.x1 > page.x1 + tol),
            ("bottom", drawn.y0 < page.y0 - tol),
            ("top", drawn.y1 > page.y1 + tol),
        )
        if past
    ]


def test_similarity_y_label_fits_the_figure(captured):
    figs = captured(similarity)
    rows = [
        (lv, 0.2 * lv, ref, 0, st, f"{st}.c", "cosine_per_neuron", 0.9)
        for lv in (1, 2)
        for ref in ("baseline", "previous")
        for st in STAGES
    ]
    cols = ["level", "network_sparsity", "reference", "reference_level", "stage", "layer"]
    similarity.draw(
        inputs({"similarity": pd.DataFrame(rows, columns=[*cols, "metric", "value"])}), Path(".")
    )
    assert sides_cut_off(figs[0][0]) == []  # the y label ran past the top and bottom


def test_weight_figure_names_the_missing_sparsity_and_draws_its_legend_as_its_lines(captured):
    figs = captured(weights)
    rows = []
    for level, ns in ((1, 0.2), (4, 0.59), (7, 0.79), (8, 0.832)):
        for stage in STAGES:
            for lo in np.geomspace(1e-3, 1, 5)[:-1]:
                rows.append((level, ns, stage, lo, lo * 10**0.75, 3))
    cols = ["level", "network_sparsity", "stage", "bin_low", "bin_high", "count"]
    weights.draw(inputs({"weight_hist": pd.DataFrame(rows, columns=cols)}), Path("."))
    fig, _, caption = figs[0]
    assert len(fig.axes) == 3  # 89%: no level within 5 points
    assert "No level lies within 5 points of 89% (the nearest, level 8, is 83.2% sparse)" in caption
    handles = fig.legends[0].legend_handles
    assert all(h.get_marker() in ("", "None", None) for h in handles)  # steps carry no marker


@pytest.mark.parametrize(
    ("best", "crossover", "want"),
    [
        (0.90, None, "not steadily: at best 0.90×"),
        (1.08, None, "never: at best 1.08× the dense layer's latency over 12 measurements"),
        (0.5, 0.8, "from 80.0% layer sparsity"),
    ],
)
def test_a_best_ratio_below_one_is_never_called_never(best, crossover, want):
    from prunescope.report.sentences import runtime_sentence

    rt = {
        "ratios": [{"level": 1, "batch_size": 1, "format": "sparse", "ratio": 2.0, "right": True}],
        "layer_types": {
            "3x3 conv": {"1": {"crossover_sparsity": crossover, "best_ratio": best, "points": 12}}
        },
    }
    _, text = runtime_sentence(rt)
    assert f"3x3 conv at batch 1: {want}" in text
