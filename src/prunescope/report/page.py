"""``report/index.html``: one self-contained page (inline CSS, no script, no network).

Every value that comes from a run (names, config text, labels) is escaped; the
findings' sentences come from :mod:`prunescope.report.sentences`.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from prunescope.analysis.registry import Plugins, SentenceInputs, report_parts
from prunescope.config import Config
from prunescope.config.load import flatten
from prunescope.data.registry import dataset_spec
from prunescope.models.inventory import dense_by_type
from prunescope.report.figures.common import FigureFile, RunSeries
from prunescope.report.runs import differing_keys
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


def config_diff_table(configs: list[tuple[str, Config]]) -> str:
    """The config keys whose values differ between the runs, one column per run: the settings
    of the experiment first (those the runs' labels are made of), then how each ran or was
    analysed (device, threads, analysis and report settings: never labels, but an analysis
    setting changes that analysis's numbers)."""
    if len(configs) < 2:
        return ""
    flat = [flatten(c.model_dump(mode="json")) for _, c in configs]
    keys = sorted({k for f in flat for k in f if len({repr(g.get(k)) for g in flat}) > 1})
    labelled = set(differing_keys([c for _, c in configs]))
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in configs)

    def rows(group: list[str]) -> str:
        return "".join(
            f"<tr><td><code>{html.escape(k)}</code></td>"
            + "".join(f"<td>{html.escape(_config_value(f.get(k)))}</td>" for f in flat)
            + "</tr>"
            for k in group
        )

    other = [k for k in keys if k not in labelled]
    body = rows([k for k in keys if k in labelled]) or (
        f'<tr><td colspan="{len(configs) + 1}">none: the runs are the same experiment</td></tr>'
    )
    if other:
        body += (
            f'<tr><th colspan="{len(configs) + 1}">how they ran or were analysed</th></tr>'
            + rows(other)
        )
    return (
        "<h2>Settings that differ between the runs</h2>"
        f"<table><tr><th>config key</th>{head}</tr>{body}</table>"
    )


def _config_value(v: object) -> str:
    if v is None:
        return "(not set)"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def headline_cell(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    return pct(value, 0) if kind == "pct" else str(int(value)) if kind == "int" else f"{value:.2f}"


def headlines(plugins: Plugins = ()) -> dict[str, tuple[str, str]]:
    """key -> (column label, kind) of every report part's headline numbers."""
    return {k: (h.label, h.kind) for p in report_parts(plugins) for k, h in p.headlines.items()}


def _spread(values: list[float | None], kind: str) -> str:
    """Mean ± sd over the runs that have the number; fewer than two say so (a blank cell
    read as a missing computation)."""
    have = [v for v in values if v is not None]
    if len(have) < 2:
        return f"n/a ({len(have)} of {len(values)} runs)"
    kind = "num" if kind == "int" else kind  # a mean of counts is no count
    return f"{headline_cell(statistics.fmean(have), kind)} ± {headline_cell(statistics.stdev(have), kind)}"


def per_run_table(per_run: list[dict], plugins: Plugins = ()) -> str:
    """Each finding's headline number per run (and seed), with mean ± sd over the runs."""
    if len(per_run) < 2:
        return ""
    columns = headlines(plugins)
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in columns.values())
    rows = []
    for r in per_run:
        cells = "".join(
            f"<td>{headline_cell(r['headline'].get(k), kind)}</td>"
            for k, (_, kind) in columns.items()
        )
        rows.append(f"<tr><td>{html.escape(r['label'])} (seed {r['seed']})</td>{cells}</tr>")
    spread = "".join(
        f"<td>{_spread([r['headline'].get(k) for r in per_run], kind)}</td>"
        for k, (_, kind) in columns.items()
    )
    rows.append(f"<tr><td><b>mean ± sd</b></td>{spread}</tr>")
    return (
        "<h2>Findings per run</h2><p>Each run's own findings (computed as above on its tables); "
        "for replicates, the spread over seeds.</p>"
        f"<table><tr><th>run</th>{head}</tr>{''.join(rows)}</table>{_not_computed(per_run)}"
    )


def _not_computed(per_run: list[dict]) -> str:
    """The runs whose analyses have no tables yet: why their cells read n/a."""
    missing = [r.get("missing_analyses") or [] for r in per_run]
    if not any(missing):
        return ""
    if all(m == missing[0] for m in missing):
        text = f"Not computed yet in any run (hence n/a above): {', '.join(missing[0])}"
    else:
        text = "Not computed yet (hence n/a above): " + "; ".join(
            f"{r['label']}: {', '.join(m)}" for r, m in zip(per_run, missing, strict=True) if m
        )
    return f"<p>{html.escape(text)}.</p>"


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
    configs: list[tuple[str, Config]] | None = None,
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
    # The run directory by name only: the page lives inside it, and a page that is shared
    # (a paper's supplement, docs/cpu-resnet20-cifar10) should not carry the machine's paths.
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{plural(cfg.imp.levels, "level")} of {cfg.imp.rate:g} ({html.escape(cfg.imp.scope)} {html.escape(cfg.imp.method)}), rewind to
{html.escape(cfg.imp.rewind)}, {plural(cfg.imp.train_epochs, "epoch")} per level &middot; run directory
<code>{html.escape(rd.root.name)}</code> &middot; prunescope {__version__} &middot; {now}</p>
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
{config_diff_table(configs or [])}
{per_run_table(per_run or [], cfg.analysis.plugins)}
<h2>Figures</h2>
{figures_html(figures, out, missing or [], rd.root, rd.manifest.get("skipped_analyses"))}
<h2>Config</h2>
<pre>{html.escape(config_text)}</pre>
</body></html>
"""
