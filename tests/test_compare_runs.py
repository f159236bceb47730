"""A report on several runs (issue #25): every figure that can draw every run overlays them,
each run one style and labelled by what differs; the page lists the settings that differ
and each finding's mean ± sd over the runs. Built from tables made by hand."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from prunescope.analysis.tables import COLUMNS
from prunescope.config import build_config
from prunescope.report import build
from prunescope.report.figures import (
    connectivity,
    neuron_sparsity,
    similarity,
    stage_sparsity,
    zeroing,
)
from prunescope.report.figures.common import ComparedRun, FigureFile, FigureInputs
from prunescope.report.findings import connectivity_finding, zeroing_spread_finding
from prunescope.report.page import config_diff_table, per_run_table
from test_figures import STAGES, _connectivity_tables, _zeroing_table, sides_cut_off

# as long as real labels get: a legend row of two must still fit the page
LABELS = [
    "imp.levels=8, imp.pretrain_epochs=1, imp.train_epochs=10",
    "imp.levels=5, imp.pretrain_epochs=2, imp.train_epochs=4",
]
MODULES = (connectivity, neuron_sparsity, similarity, stage_sparsity, zeroing)


def _run_tables(shift: float) -> dict[str, pd.DataFrame]:
    """One run's tables; ``shift`` moves its numbers so the runs' lines differ."""
    sparsity, dead, sim = [], [], []
    for level in range(5):
        ns = 1 - 0.8**level
        for i, stage in enumerate(STAGES):
            s = min(1.0, ns * (0.6 + 0.2 * i) + shift)
            sparsity.append((level, ns, stage, f"{stage}.c", 1000, round(1000 * s), s))
            dead.append((level, ns, stage, f"{stage}.c", 16, int(level * i * (1 + 10 * shift))))
            for ref in ("baseline", "previous"):
                value = 1 - 0.05 * level * (i + 1) - shift
                sim.append((level, ns, ref, 0, stage, f"{stage}.c", "cka", value))
    conn = _connectivity_tables()
    conn["test_loss"] += shift * conn["alpha"] * (1 - conn["alpha"])
    z = _zeroing_table()
    z["delta_accuracy"] *= 1 + 10 * shift
    neurons = [(*row[:4], n, 9, 0, 0.0) for row in sparsity for n in range(3)]
    return {
        "neuron_sparsity": pd.DataFrame(neurons, columns=COLUMNS["neuron_sparsity"]),
        "sparsity_layers": pd.DataFrame(sparsity, columns=COLUMNS["sparsity_layers"]),
        "dead_neurons": pd.DataFrame(dead, columns=COLUMNS["dead_neurons"]),
        "similarity": pd.DataFrame(sim, columns=COLUMNS["similarity"]),
        "connectivity": conn,
        "zeroing": z,
    }


def _compared() -> FigureInputs:
    runs = []
    for label, shift in zip(LABELS, (0.0, 0.05), strict=True):
        tables = _run_tables(shift)
        summary = {  # each run's own findings, as build.compared_runs computes them
            "zeroing_spread": zeroing_spread_finding(tables["zeroing"]),
            "connectivity": connectivity_finding(tables["connectivity"]),
            "fully_pruned_neurons": {"last_level_fully_pruned": 9},
        }
        runs.append(ComparedRun(label, tables, summary, STAGES, []))
    first = runs[0]
    return FigureInputs(
        first.tables,
        STAGES,
        [],
        {"level": None, "margin": 0.02},
        summary=first.summary,
        compared=runs,
        run_tables=[(r.label, r.tables) for r in runs],
    )


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """Every figure the registry draws for the two runs, kept open: name -> (figure, caption)."""
    out = {}

    def keep(fig, folder, name, caption):
        out[name] = (fig, caption)
        return FigureFile(name, caption, Path(folder) / f"{name}.png", Path("x.pdf"), (0, 0), 9.0)

    for module in MODULES:
        monkeypatch.setattr(module, "save", keep)
    build.draw_figures(_compared(), Path("."))
    yield out
    plt.close("all")


def _run_colours(ax) -> set[str]:
    import matplotlib.colors as mcolors

    return {mcolors.to_hex(ln.get_color()) for ln in ax.get_lines()} & {"#1f77b4", "#ff7f0e"}


@pytest.mark.parametrize(
    "name",
    [
        "stage_sparsity",
        "fully_pruned_neurons",
        "zeroing_spread",
        "similarity_cka_stages",
        "connectivity_barrier",
    ],
)
def test_overlays_draw_both_runs_labelled_by_what_differs(drawn, name):
    fig, caption = drawn[name]
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert panels
    for ax in panels:  # every panel: one line per run, in the runs' colours (C0, C1)
        assert _run_colours(ax) == {"#1f77b4", "#ff7f0e"}, (name, ax.get_title())
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == LABELS
    assert "Runs overlaid" in caption
    assert sides_cut_off(fig) == []  # a legend row of long labels wider than the page


def test_figures_of_one_run_say_which(drawn):
    for name in ("zeroing", "connectivity", "similarity_cka", "neuron_sparsity"):
        assert f"Shown: the first run ({LABELS[0]}) only." in drawn[name][1], name


def test_stage_sparsity_overlay_has_a_panel_per_stage(drawn):
    fig, _ = drawn["stage_sparsity"]
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == STAGES


def test_the_page_lists_the_settings_that_differ():
    a = build_config(preset="quickstart", overrides=["imp.pretrain_epochs=1"])
    b = build_config(preset="quickstart", overrides=["imp.pretrain_epochs=5", "data.root=/else"])
    labels = ["imp.pretrain_epochs=1", "imp.pretrain_epochs=5"]
    table = config_diff_table(list(zip(labels, (a, b), strict=True)))
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r) for r in rows]
    assert cells[0] == ["config key", *labels]
    assert ["<code>imp.pretrain_epochs</code>", "1", "5"] in cells
    # where the data lie is no setting of the experiment: listed apart, after it
    names = [c[0] for c in cells]
    assert names.index("how they ran or were analysed") > names.index(
        "<code>imp.pretrain_epochs</code>"
    )
    assert any(c[0] == "<code>data.root</code>" and c[2] == "/else" for c in cells)
    assert config_diff_table([(labels[0], a)]) == ""


def test_mean_and_sd_row_is_filled():
    per_run = [
        {"label": LABELS[0], "seed": 0, "headline": {"critical_sparsity": 0.9, "stage_rho": 0.8}},
        {"label": LABELS[1], "seed": 0, "headline": {"critical_sparsity": 0.8, "stage_rho": None}},
        {
            "label": "third",
            "seed": 1,
            "headline": {"critical_sparsity": 0.7, "fully_pruned_last": 3},
        },
    ]
    per_run[1]["headline"]["fully_pruned_last"] = 4
    html = per_run_table(per_run)
    mean_row = re.search(r"<tr><td><b>mean ± sd</b></td>(.*?)</tr>", html).group(1)
    cells = re.findall(r"<td>(.*?)</td>", mean_row)
    assert cells[0] == "80% ± 10%"
    assert cells[1] == "n/a (1 of 3 runs)"  # one value has no spread: said, not left blank
    assert cells[3] == "3.50 ± 0.71"  # the mean of counts is not rounded to a count
    assert all(cells), cells


def test_runs_without_analyses_say_so_under_the_table():
    """Runs trained with --no-analyze (a sweep's) have only their critical sparsity: the
    page says which analyses are missing rather than leaving cells blank."""
    per_run = [
        {
            "label": f"seed={s}",
            "seed": s,
            "headline": {"critical_sparsity": None},
            "missing_analyses": ["sparsity", "zeroing"],
        }
        for s in (0, 1)
    ]
    html = per_run_table(per_run)
    assert "Not computed yet in any run (hence n/a above): sparsity, zeroing." in html
    assert "n/a (0 of 2 runs)" in html
