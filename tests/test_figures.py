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


def inputs(tables, critical=None, runs=()):
    return FigureInputs(tables, STAGES, [], critical or {"level": None, "margin": 0.02}, list(runs))


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
    zeroing.draw(inputs({"zeroing": _zeroing_table(), "bn_constants": bn}, crit), Path("."))
    fig, _name, caption = figs[0]
    axes = [ax for ax in fig.axes if ax.get_visible()]
    spans = [ax.get_ylim()[1] - ax.get_ylim()[0] for ax in axes]
    assert spans[0] > 20 * spans[-1]  # stem's ±30 points and stage3's ±0.2 each fill a panel
    assert all("critical" in [t.get_text() for t in ax.texts] for ax in axes)
    assert axes[0].get_title() == "stem\nmedian |BN constant| 0.50"
    assert "β − γμ/√(σ²+ε)" in caption


def test_similarity_has_the_papers_view_and_heat_maps_scaled_to_the_data(captured):
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
    assert image.get_clim() == pytest.approx((0.65, 0.90))  # the range present, not 0..1
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
    branch = {"accuracy": acc.assign(test_accuracy=[0.6, 0.58, 0.55])}
    inp = FigureInputs(
        {"accuracy": acc}, ["stem", "fc"], ["fc"], {"level": None}, controls={"random_mask": branch}
    )
    files = controls.draw(inp, tmp_path)
    assert [f.name for f in files] == ["controls"]
    assert "needs the sparsity tables" in files[0].caption
