"""The report: every figure from a real (small) run, the page, summary.json."""

from __future__ import annotations

import json
import re
import warnings

import pandas as pd
from PIL import Image

from prunescope.cli import main
from prunescope.report.build import make_report
from prunescope.report.findings import critical_sparsity

FIGURES = [
    "accuracy",
    "weight_distributions",
    "stage_sparsity",
    "neuron_sparsity",
    "fully_pruned_neurons",
    "zeroing",
    "similarity_cosine",
    "similarity_cosine_stages",
    "similarity_cosine_per_neuron",
    "similarity_cosine_per_neuron_stages",
    "similarity_cka",
    "similarity_cka_stages",
    "connectivity",
    "export",
]


def test_every_figure_renders_without_warnings(analysed_run, tmp_path):
    out = tmp_path / "report"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_report([analysed_run], out)
    ours = [
        w
        for w in caught
        if any(k in (w.filename or "") for k in ("matplotlib", "pandas", "prunescope"))
    ]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    sizes = {}
    for name in FIGURES:
        png, pdf = out / "figures" / f"{name}.png", out / "figures" / f"{name}.pdf"
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            sizes[name] = im.size
            # not blank: a real plot has many distinct colours
            assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20, name
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000, name
        # TrueType fonts only: venues' PDF checks refuse Type 3 (matplotlib's default)
        assert b"/Type3" not in pdf.read_bytes(), name
    # a page to share: the run directory by name, never the machine's path to it
    page = (out / "index.html").read_text()
    assert f"<code>{analysed_run.name}</code>" in page and str(analysed_run) not in page
    # sized for a paper: at most a two-column page's 7.2 in (1440 px at 200 dpi) wide
    assert sizes["accuracy"] == (1440, 760)
    assert all(w <= 1440 for w, _ in sizes.values()), sizes


def test_every_text_in_every_figure_is_at_least_7pt(analysed_run, tmp_path):
    from prunescope.report.figures.common import MIN_TEXT_PT

    files = _draw_all(analysed_run, tmp_path / "sizes")
    assert {f.name for f in files} == set(FIGURES)
    small = {f.name: f.min_text_pt for f in files if f.min_text_pt < MIN_TEXT_PT}
    assert not small, small


def _draw_all(run_dir, out):
    from prunescope.report import build
    from prunescope.rundir.session import open_run_dir

    rd, cfg = open_run_dir(run_dir)
    return build.draw_figures(build.report_inputs([run_dir], rd, cfg).figures, out)


def test_page_and_summary(analysed_run):
    out = analysed_run / "report"
    html = (out / "index.html").read_text()
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert (out / src).exists(), src
    assert len(re.findall(r"<img ", html)) == len(FIGURES)
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    summary = json.loads((out / "summary.json").read_text())
    acc = pd.read_csv(analysed_run / "analysis/accuracy.csv")
    want = critical_sparsity(acc, 0.02)
    assert summary["findings"]["critical_sparsity"] == want
    f = summary["findings"]
    for key in (
        "later_stages_pruned_more",
        "fully_pruned_neurons",
        "zeroing_spread",
        "similarity_to_baseline",
    ):
        assert key in f
    dead = pd.read_csv(analysed_run / "analysis/dead_neurons.csv")
    dead = dead[dead["layer"] != "fc"]
    last = dead[dead["level"] == dead["level"].max()]
    assert f["fully_pruned_neurons"]["last_level_fully_pruned"] == int(last["fully_pruned"].sum())
    # the findings section states the measured numbers
    z = f["zeroing_spread"]
    assert f"standard deviation goes from {100 * z['first_std']:.2f} to" in html
    assert "Critical sparsity" in html
    assert {fig["name"] for fig in summary["figures"]} == set(FIGURES)
    # report files are recorded in the manifest like every other run file
    manifest = json.loads((analysed_run / "manifest.json").read_text())
    assert (
        "report/index.html" in manifest["files"]
        and "report/figures/accuracy.png" in manifest["files"]
    )


def test_several_runs_overlay(analysed_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["report", str(analysed_run), str(analysed_run), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "Runs compared" in html
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    # every figure that can draw both runs does; the overlays of findings join the page
    summary = json.loads((out / "summary.json").read_text())
    names = {f["name"] for f in summary["figures"]}
    assert {"zeroing_spread", "connectivity_barrier"} <= names
    overlays = [f for f in summary["figures"] if "Runs overlaid" in f["caption"]]
    assert {f["name"] for f in overlays} >= {"stage_sparsity", "similarity_cka_stages"}
    assert "Settings that differ between the runs" in html and "the same experiment" in html
    mean_row = re.search(r"<b>mean ± sd</b></td>(.*?)</tr>", html).group(1)
    assert "<td></td>" not in mean_row and " ± " in mean_row


def test_report_needs_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()
    assert main(["analyze", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "nothing").exists()
