"""``report/index.html``: one self-contained page (inline CSS, no script, no network).

Every sentence of the findings is built from the numbers in ``summary.json``;
which way a sentence goes (more or less, widens or narrows) is decided by the
data, not written in advance.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from prunescope.config import Config
from prunescope.report.figures.common import FigureFile
from prunescope.rundir.layout import RunDir, level_name

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1150px; color: #1d1d1f; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: .9rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e5e5e5; padding: .25rem .7rem; text-align: right; }
th { background: #f6f6f6; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9rem; color: #333; margin-top: .3rem; }
ol.findings li { margin-bottom: .6rem; }
pre { background: #f6f6f6; padding: .8rem; font-size: .8rem; overflow-x: auto; }
.critical { background: #fff3f0; }
"""


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def trend(rho: float | None, up: str, down: str, flat: str) -> str:
    if rho is None:
        return flat
    if rho >= 0.3:
        return up
    if rho <= -0.3:
        return down
    return flat


def finding_sentences(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, text) of every finding, as plain text: the page escapes both."""
    out = []
    crit = summary["critical_sparsity"]
    margin = 100 * crit["margin"]
    if crit.get("level") is not None:
        critical = (
            f"Critical sparsity: {pct(crit['network_sparsity'])}.",
            f"Level {crit['level']} is the first whose "
            f"test accuracy ({pct(crit['test_accuracy'], 2)}) falls more than {margin:g} points below the dense "
            f"network's {pct(crit['baseline_accuracy'], 2)} (a drop of {100 * crit['drop']:.2f} points). "
            "Findings 1, 3 and 4 count the levels before it.",
        )
    else:
        critical = (
            "Critical sparsity: not reached.",
            f"No level's accuracy falls more than {margin:g} points below "
            f"the dense network's {pct(crit['baseline_accuracy'], 2)}.",
        )
    st = summary.get("later_stages_pruned_more")
    if st and st["levels_considered"]:
        last = [
            p for p in st["per_level"] if crit.get("level") is None or p["level"] < crit["level"]
        ][-1]
        stages = ", ".join(f"{s} {pct(v)}" for s, v in last["stage_sparsity"].items())
        out.append(
            (
                "Later stages pruned more?",
                f"At {st['levels_later_stages_pruned_more']} of "
                f"{st['levels_considered']} pruned levels, stage sparsity rises with stage depth "
                f"(Spearman ρ between stage position and sparsity > 0; mean ρ = {num(st['mean_rho'])}); it rises "
                f"strictly from each stage to the next at {st['levels_strictly_increasing']} of them. At level "
                f"{last['level']} ({pct(last['network_sparsity'])} sparse): {stages}.",
            )
        )
    elif st:
        out.append(
            (
                "Later stages pruned more?",
                "No pruned level before the critical sparsity to measure.",
            )
        )
    dn = summary.get("fully_pruned_neurons")
    if dn:
        last = dn["per_level"][-1]
        if dn["total_fully_pruned"] == 0:
            lead = "No neuron of a pruned layer is fully pruned at any level"
        else:
            first = next(p for p in dn["per_level"] if p["fully_pruned"] > 0)
            lead = (
                f"{dn['total_fully_pruned']} fully pruned neuron(s) in total, the first at level "
                f"{first['level']} ({pct(first['network_sparsity'])} sparse: {first['fully_pruned']} of "
                f"{first['neurons']}, in {', '.join(first['layers_with_fully_pruned'])})"
            )
        out.append(
            (
                "Fully pruned neurons:",
                f"{lead}. At the last level ({last['level']}, "
                f"{pct(last['network_sparsity'])} sparse) {last['fully_pruned']} of {last['neurons']} neurons have no "
                f"incoming weight left; the sparsest neuron keeps {pct(1 - (last['max_neuron_sparsity'] or 0))} of its "
                "fan-in.",
            )
        )
    zs = summary.get("zeroing_spread")
    if zs and zs["levels_considered"]:
        way = trend(zs["rho_sparsity_std"], "widens", "narrows", "shows no monotone trend")
        out.append(
            (
                "Spread of zeroing effects:",
                f"The standard deviation of the accuracy change from zeroing one "
                f"neuron goes from {num(100 * zs['first_std'], 2)} points at level {zs['first_level']} to "
                f"{num(100 * zs['last_std'], 2)} at level {zs['last_level']}; against network sparsity it {way} "
                f"(Spearman ρ = {num(zs['rho_sparsity_std'])} over {zs['levels_considered']} levels).",
            )
        )
    sims = summary.get("similarity_to_baseline") or {}
    for metric in ("cosine", "cka"):
        sm = sims.get(metric)
        if not sm or not sm["levels_considered"]:
            continue
        last = sm["last_considered"]
        stages = ", ".join(f"{s} {num(v, 3)}" for s, v in last["stage_mean"].items())
        out.append(
            (
                f"Similarity to the baseline ({metric}):",
                f"Later stages are less similar to the dense network "
                f"than earlier ones at {sm['levels_later_stages_less_similar']} of {sm['levels_considered']} levels "
                f"(mean ρ between stage position and similarity = {num(sm['mean_rho'])}). The mean over layers is "
                f"lowest at level {sm['lowest_level']} ({num(sm['lowest_mean'], 3)}). At level {last['level']} "
                f"({pct(last['network_sparsity'])} sparse) the stage means are: {stages}.",
            )
        )
    return [critical, *out]


def level_rows(rd: RunDir, tables: dict[str, pd.DataFrame], crit_level: int | None) -> str:
    acc = tables["accuracy"].sort_values("level")
    rows = []
    for _, r in acc.iterrows():
        level = int(r["level"])
        seconds = rd.manifest.get("levels", {}).get(level_name(level), {}).get("seconds")
        time = (
            ""
            if seconds is None
            else f"{seconds / 60:.1f} min"
            if seconds >= 60
            else f"{seconds:.0f} s"
        )
        cls = ' class="critical"' if level == crit_level else ""
        rows.append(
            f"<tr{cls}><td>{level:02d}</td><td>{pct(r['network_sparsity'], 2)}</td>"
            f"<td>{pct(r['test_accuracy'], 2)}</td><td>{r['test_loss']:.4f}</td><td>{time}</td></tr>"
        )
    return "\n".join(rows)


def render_page(
    rd: RunDir,
    cfg: Config,
    config_text: str,
    tables: dict[str, pd.DataFrame],
    summary: dict[str, Any],
    runs: list,
    figures: list[FigureFile],
    out: Path,
) -> str:
    from prunescope import __version__

    crit = summary["critical_sparsity"]
    title = f"prunescope: {cfg.model.name} on {cfg.data.name}"
    findings = "\n".join(
        f"<li><b>{html.escape(title)}</b> {html.escape(text)}</li>"
        for title, text in finding_sentences(summary)
    )
    figs = "\n".join(
        f'<figure id="{html.escape(f.name)}"><img src="{html.escape(os.path.relpath(f.png, out))}" '
        f'alt="{html.escape(f.caption)}" width="{f.size[0]}" height="{f.size[1]}">'
        f"<figcaption>{html.escape(f.caption)} "
        f'(<a href="{html.escape(os.path.relpath(f.pdf, out))}">PDF</a>)</figcaption></figure>'
        for f in figures
    )
    other = ""
    if len(runs) > 1:
        rows = "\n".join(
            f"<tr><td>{html.escape(label)}</td><td>{acc['level'].max()}</td>"
            f"<td>{pct(acc['test_accuracy'].iloc[0], 2)}</td>"
            f"<td>{pct(c['network_sparsity']) if c.get('level') is not None else 'not reached'}</td></tr>"
            for label, acc, c in runs
        )
        other = (
            "<h2>Runs compared</h2><table><tr><th>run</th><th>levels</th><th>dense accuracy</th>"
            f"<th>critical sparsity</th></tr>{rows}</table>"
        )
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{cfg.imp.levels} levels of {cfg.imp.rate:g} ({cfg.imp.scope} magnitude), rewind to
{html.escape(cfg.imp.rewind)}, {cfg.imp.train_epochs} epochs per level &middot; run directory
<code>{html.escape(str(rd.root))}</code> &middot; prunescope {__version__} &middot; {now}</p>
<h2>Findings</h2>
<p>Measured on this run's tables (<code>summary.json</code> holds the numbers). The paper's findings, for
comparison: later stages are pruned more; no neuron is fully pruned; the spread of single-neuron importance
does not narrow; representations stay similar to the dense network.</p>
<ol class="findings">
{findings}
</ol>
<h2>Levels</h2>
<table><tr><th>level</th><th>network sparsity</th><th>test accuracy</th><th>test loss</th><th>train time</th></tr>
{level_rows(rd, tables, crit.get("level"))}
</table>
{other}
<h2>Figures</h2>
{figs}
<h2>Config</h2>
<pre>{html.escape(config_text)}</pre>
</body></html>
"""
