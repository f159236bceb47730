"""``report/index.html``: one self-contained page (inline CSS, no script, no network).

Every value that comes from a run (names, config text, labels) is escaped; the
findings' sentences come from :mod:`prunescope.report.sentences`.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from prunescope.analysis.registry import Plugins, SentenceInputs, report_parts
from prunescope.config import Config
from prunescope.data.registry import dataset_spec
from prunescope.models.inventory import dense_by_type
from prunescope.report.figures.common import FigureFile, RunSeries
from prunescope.report.sentences import pct
from prunescope.rundir.layout import RunDir, level_name
from prunescope.wording import plural

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


def runs_table(runs: list[RunSeries]) -> str:
    if len(runs) < 2:
        return ""
    rows = "\n".join(
        f"<tr><td>{html.escape(r.label)}</td><td>{int(r.accuracy['level'].max())}</td>"
        f"<td>{pct(float(r.accuracy.sort_values('level')['test_accuracy'].iloc[0]), 2)}</td>"
        f"<td>{pct(r.critical['network_sparsity']) if r.critical.get('level') is not None else 'not reached'}</td></tr>"
        for r in runs
    )
    return (
        "<h2>Runs compared</h2><p>Labelled by the settings that differ between them.</p>"
        "<table><tr><th>run</th><th>levels</th><th>dense accuracy</th>"
        f"<th>critical sparsity</th></tr>{rows}</table>"
    )


def _cell(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    return pct(value, 0) if kind == "pct" else str(int(value)) if kind == "int" else f"{value:.2f}"


def headlines(plugins: Plugins = ()) -> dict[str, tuple[str, str]]:
    """key -> (column label, kind) of every report part's headline numbers."""
    return {k: (h.label, h.kind) for p in report_parts(plugins) for k, h in p.headlines.items()}


def per_run_table(per_run: list[dict], plugins: Plugins = ()) -> str:
    """Each finding's headline number per run (and seed), with mean ± sd over the runs."""
    if len(per_run) < 2:
        return ""
    columns = headlines(plugins)
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in columns.values())
    rows = []
    for r in per_run:
        cells = "".join(
            f"<td>{_cell(r['headline'].get(k), kind)}</td>" for k, (_, kind) in columns.items()
        )
        rows.append(f"<tr><td>{html.escape(r['label'])} (seed {r['seed']})</td>{cells}</tr>")
    spread = []
    for k, (_, kind) in columns.items():
        values = [r["headline"].get(k) for r in per_run if r["headline"].get(k) is not None]
        if len(values) < 2:
            spread.append("<td></td>")
            continue
        mean, sd = statistics.fmean(values), statistics.stdev(values)
        spread.append(
            f"<td>{_cell(mean, kind)} ± {_cell(sd, kind if kind != 'int' else 'num')}</td>"
        )
    rows.append(f"<tr><td><b>mean ± sd</b></td>{''.join(spread)}</tr>")
    return (
        "<h2>Findings per run</h2><p>Each run's own findings (computed as above on its tables); "
        "for replicates, the spread over seeds.</p>"
        f"<table><tr><th>run</th>{head}</tr>{''.join(rows)}</table>"
    )


def figures_html(
    figures: list[FigureFile],
    out: Path,
    missing: list[str],
    run_dir: Path,
    skipped: dict[str, str] | None = None,
) -> str:
    figs = "\n".join(
        f'<figure id="{html.escape(f.name)}"><img src="{html.escape(os.path.relpath(f.png, out))}" '
        f'alt="{html.escape(f.caption)}" width="{f.size[0]}" height="{f.size[1]}">'
        f"<figcaption>{html.escape(f.caption)} "
        f'(<a href="{html.escape(os.path.relpath(f.pdf, out))}">PDF</a>)</figcaption></figure>'
        for f in figures
    )
    if missing:
        command = f"prunescope analyze {run_dir} --only {','.join(missing)}"
        figs = (
            f"<p>Not computed yet: {html.escape(', '.join(missing))}. Their figures and findings "
            f"appear after <code>{html.escape(command)}</code>.</p>\n" + figs
        )
    if skipped:
        why = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        figs = f"<p>Not computed for this run: {html.escape(why)}.</p>\n" + figs
    return figs


def dense_html(record: dict | None) -> str:
    """What IMP prunes and what it leaves dense, with shares of all parameters."""
    if not record:
        return ""
    total = record["total_parameters"]
    parts = [
        f"{name} ({e['why']}, {e['parameters']:,}, {e['share']:.1%})"
        for name, e in record["excluded_layers"].items()
    ] + dense_by_type(record["dense_modules"])
    if record["biases"]["parameters"]:
        b = record["biases"]
        parts.append(f"biases of the pruned layers ({b['parameters']:,}, {b['share']:.1%})")
    dense = "; ".join(parts) or "nothing"
    return (
        f"<p>Network sparsity is measured over the prunable weights: "
        f"{record['prunable_weights']:,} of {total:,} parameters ({record['prunable_share']:.1%}). "
        f"Left dense: {html.escape(dense)}.</p>"
    )


def render_page(
    rd: RunDir,
    cfg: Config,
    config_text: str,
    tables: dict[str, pd.DataFrame],
    summary: dict[str, Any],
    runs: list[RunSeries],
    figures: list[FigureFile],
    out: Path,
    missing: list[str] | None = None,
    per_run: list[dict] | None = None,
) -> str:
    from prunescope import __version__

    crit = summary["critical_sparsity"]
    spec = dataset_spec(cfg.data.name)
    data = f"{cfg.data.name} (synthetic data)" if spec.synthetic else cfg.data.name
    title = f"prunescope: {cfg.model.name} on {data}"
    pruned = sorted(int(lv) for lv in tables["accuracy"]["level"] if lv > 0)
    sentences = SentenceInputs(summary, pruned, summary.get("batchnorm", True))
    findings = "\n".join(
        f"<li><b>{html.escape(head)}</b> {html.escape(text)}</li>"
        for part in report_parts(cfg.analysis.plugins)
        if part.sentences is not None
        for head, text in part.sentences(sentences)
    )
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{plural(cfg.imp.levels, "level")} of {cfg.imp.rate:g} ({html.escape(cfg.imp.scope)} {html.escape(cfg.imp.method)}), rewind to
{html.escape(cfg.imp.rewind)}, {plural(cfg.imp.train_epochs, "epoch")} per level &middot; run directory
<code>{html.escape(str(rd.root))}</code> &middot; prunescope {__version__} &middot; {now}</p>
{dense_html((rd.manifest.get("layer_order") or {}).get("dense"))}
<h2>Findings</h2>
<p>Measured on this run's tables (<code>summary.json</code> holds the numbers). The paper's findings, for
comparison: later stages are pruned more; no neuron is fully pruned; the spread of single-neuron importance
does not narrow; representations stay similar to the dense network.</p>
<ol class="findings">
{findings}
</ol>
<h2>Levels</h2>
<table><tr><th>level</th><th>network sparsity</th><th>test {html.escape(spec.metric)}</th><th>test loss</th><th>train time</th></tr>
{level_rows(rd, tables, crit.get("level"))}
</table>
{runs_table(runs)}
{per_run_table(per_run or [], cfg.analysis.plugins)}
<h2>Figures</h2>
{figures_html(figures, out, missing or [], rd.root, rd.manifest.get("skipped_analyses"))}
<h2>Config</h2>
<pre>{html.escape(config_text)}</pre>
</body></html>
"""
