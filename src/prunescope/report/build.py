"""``prunescope report``: figures, ``summary.json`` and ``index.html`` from the analysis tables."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from prunescope.analysis.tables import COLUMNS, has_table, read_table
from prunescope.config import Config
from prunescope.errors import RunDirError
from prunescope.report import findings as F
from prunescope.report.figures import (
    accuracy,
    neuron_sparsity,
    similarity,
    stage_sparsity,
    weights,
    zeroing,
)
from prunescope.report.figures.common import FigureFile, FigureInputs
from prunescope.report.page import render_page
from prunescope.rundir.atomic import atomic_write_bytes, json_bytes, sha256_file
from prunescope.rundir.files import check_not_symlink
from prunescope.rundir.layout import CONFIG, REPORT, RunDir
from prunescope.rundir.session import WriteSession, open_run_dir

log = logging.getLogger("prunescope")

# figure module -> the tables it needs
FIGURES = [
    (accuracy, ("accuracy",)),
    (weights, ("weight_hist",)),
    (stage_sparsity, ("sparsity_layers",)),
    (neuron_sparsity, ("neuron_sparsity",)),
    (zeroing, ("zeroing",)),
    (similarity, ("similarity",)),
]


def load_tables(rd: RunDir) -> dict[str, pd.DataFrame]:
    return {name: read_table(rd, name) for name in COLUMNS if has_table(rd, name)}


def stage_order(rd: RunDir, cfg: Config, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Stages in network order, then any other stage a table names (tables of a run from
    someone else need not agree with its manifest; a figure must not fail on that)."""
    order = (rd.manifest.get("layer_order") or {}).get("stages")
    if not order:
        from prunescope.api import model_for

        order = list(model_for(cfg).stages)
    seen = list(dict.fromkeys(order))
    for df in tables.values():
        if "stage" in df:
            seen += [s for s in dict.fromkeys(df["stage"]) if s not in seen]
    return seen


def run_label(path: Path, cfg: Config, others: list[Path]) -> str:
    name = path.resolve().name
    same = sum(1 for p in others if p.resolve().name == name) > 1
    return f"{path if same else name} ({cfg.model.name}, {cfg.imp.train_epochs} ep/level)"


def build_report(run_dirs: list[Path], out: Path, rd: RunDir, cfg: Config) -> dict:
    tables = load_tables(rd)
    if "accuracy" not in tables or tables["accuracy"].empty:
        raise RunDirError(f"{rd.root} has no completed level to report on")
    order = stage_order(rd, cfg, tables)
    margin = cfg.report.critical_margin
    summary = F.all_findings(tables, order, list(cfg.imp.exclude or []), margin)
    runs = []
    for path in run_dirs:
        other_rd, other_cfg = (rd, cfg) if path == run_dirs[0] else open_run_dir(path)
        acc = read_table(other_rd, "accuracy")
        runs.append((run_label(path, other_cfg, run_dirs), acc, F.critical_sparsity(acc, margin)))
    inputs = FigureInputs(
        tables,
        order,
        list(cfg.imp.exclude or []),
        summary["critical_sparsity"],
        runs,
        tuple(cfg.report.hist_sparsities),
    )
    figures: list[FigureFile] = []
    for module, needs in FIGURES:
        if all(n in tables and not tables[n].empty for n in needs):
            figures += module.draw(inputs, out / "figures")
        else:
            log.info("report: no %s table yet, figure skipped", "/".join(needs))
    summary_doc = {
        "run": rd.root.resolve().name,
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "findings": summary,
        "runs": [{"label": label, "critical_sparsity": crit} for label, _, crit in runs],
        "figures": [
            {
                "name": f.name,
                "png": str(f.png.relative_to(out)),
                "pdf": str(f.pdf.relative_to(out)),
                "caption": f.caption,
            }
            for f in figures
        ],
    }
    atomic_write_bytes(out / "summary.json", json_bytes(summary_doc))
    config_text = rd.read_text(CONFIG)
    html = render_page(rd, cfg, config_text, tables, summary, runs, figures, out)
    atomic_write_bytes(out / "index.html", html.encode("utf-8"))
    return summary_doc


def record_report(rd: RunDir, out: Path) -> None:
    """Files under RUN_DIR/report are run files too: their sha256 goes in the manifest."""
    files = rd.manifest["files"]
    for rel in [r for r in files if r.startswith(REPORT + "/")]:
        del files[rel]
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            files[str(path.relative_to(rd.root))] = {
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
            }
    rd.save_manifest()


def report_into_run(rd: RunDir, cfg: Config, run_dirs: list[Path]) -> Path:
    """Build ``RUN_DIR/report`` and record its files; the caller holds the run's lock."""
    target = rd.root / REPORT
    for folder in (target, target / "figures"):
        check_not_symlink(folder, "its report")
    build_report(run_dirs, target, rd, cfg)
    record_report(rd, target)
    return target


def make_report(run_dirs: list[str | Path], out: str | Path | None = None) -> Path:
    paths = [Path(p) for p in run_dirs]
    primary = paths[0]
    if out is None or Path(out).resolve() == (primary / REPORT).resolve():
        with WriteSession(primary, create=False) as session:
            target = report_into_run(session.rd, session.cfg, paths)
    else:
        target = Path(out)
        rd, cfg = open_run_dir(primary)
        build_report(paths, target, rd, cfg)
    index = target / "index.html"
    log.info("report: %s", index)
    return index


def summary_of(path: str | Path) -> dict:
    return json.loads((Path(path) / REPORT / "summary.json").read_text())
