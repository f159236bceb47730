"""``prunescope report``: figures, ``summary.json`` and ``index.html`` from the analysis tables."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prunescope.analysis.registry import FindingInputs, Plugins, analyses, report_parts
from prunescope.analysis.tables import COLUMNS, has_table, read_table
from prunescope.config import Config
from prunescope.data.registry import dataset_spec
from prunescope.errors import RunDirError
from prunescope.report import findings as F
from prunescope.report.figures.common import ComparedRun, FigureFile, FigureInputs, RunSeries
from prunescope.report.page import render_page
from prunescope.report.replicates import accuracy_band, replicate_groups, require_replicates
from prunescope.report.runs import run_labels
from prunescope.rundir.atomic import atomic_write_bytes, json_bytes
from prunescope.rundir.files import check_not_symlink
from prunescope.rundir.layout import CONFIG, REPORT, RunDir
from prunescope.rundir.session import WriteSession, open_run_dir
from prunescope.tracking import track_report

log = logging.getLogger("prunescope")


def load_tables(rd: RunDir) -> dict[str, pd.DataFrame]:
    return {name: read_table(rd, name) for name in COLUMNS if has_table(rd, name)}


def stage_order(rd: RunDir, cfg: Config, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Stages in network order, then any other stage a table names (tables of a run from
    someone else need not agree with its manifest; a figure must not fail on that)."""
    order = (rd.manifest.get("layer_order") or {}).get("stages") or described(rd, cfg)["stages"]
    seen = list(dict.fromkeys(order))
    for df in tables.values():
        if "stage" in df:
            seen += [s for s in dict.fromkeys(df["stage"]) if s not in seen]
    return seen


def missing_analyses(tables: dict[str, pd.DataFrame], plugins: Plugins = ()) -> list[str]:
    """The default analyses that feed a figure and have written no row yet, in registry
    order (one table of an analysis may be empty by design: layer groups of a CNN)."""
    return [
        name
        for name, spec in analyses(plugins).items()
        if spec.default
        and {t for f in spec.figures for t in f.needs} & set(spec.tables)
        and not any(has_rows(tables, t) for t in spec.tables)
    ]


def findings(inp: FindingInputs, plugins: Plugins = ()) -> dict:
    """``summary.json``'s findings: every report part's, in registry order."""
    summary: dict = {}
    for part in report_parts(plugins):
        if part.finding is not None:
            summary.update(part.finding(inp))
    return summary


def headline(summary: dict, plugins: Plugins = ()) -> dict[str, float | None]:
    """One number per finding, to compare runs and seeds side by side."""
    return {
        key: h.value(summary) for part in report_parts(plugins) for key, h in part.headlines.items()
    }


def has_rows(tables: dict[str, pd.DataFrame], name: str) -> bool:
    return name in tables and not tables[name].empty


def open_runs(run_dirs: list[Path], rd: RunDir, cfg: Config) -> list[tuple[RunDir, Config]]:
    return [(rd, cfg) if path == run_dirs[0] else open_run_dir(path) for path in run_dirs]


def run_series(
    run_dirs: list[Path],
    opened: list[tuple[RunDir, Config]],
    margin: float,
    replicates: bool = False,
) -> list[RunSeries]:
    """The runs overlaid on the accuracy figure: runs that differ only in the seed as one
    replicate group (mean and 95% band), each labelled by the settings that differ."""
    cfgs = [c for _, c in opened]
    if replicates:
        require_replicates(run_dirs, cfgs)
    groups = replicate_groups(cfgs)
    labels = run_labels([run_dirs[g[0]] for g in groups], [cfgs[g[0]] for g in groups])
    out = []
    for label, group in zip(labels, groups, strict=True):
        accs = [read_table(opened[i][0], "accuracy") for i in group]
        if len(group) == 1:
            out.append(RunSeries(label, accs[0], F.critical_sparsity(accs[0], margin)))
            continue
        band = accuracy_band(accs, [str(run_dirs[i]) for i in group])
        mean = band[COLUMNS["accuracy"]]
        seeds = ", ".join(str(cfgs[i].seed) for i in group)
        if label == Path(run_dirs[group[0]]).resolve().name:  # a folder's name, not the group's
            label = ""
        out.append(
            RunSeries(
                f"{label} (mean of seeds {seeds})" if label else f"mean of seeds {seeds}",
                mean,
                F.critical_sparsity(mean, margin),
                band=band,
                replicates=len(group),
            )
        )
    return out


def described(rd: RunDir, cfg: Config) -> dict:
    """The manifest's record of the model (stages, layer kinds, BatchNorm); a run made
    before it was recorded builds its model (a user model's code then needs trust)."""
    record = rd.manifest.get("layer_order") or {}
    if record.get("layer_types") is not None and record.get("batchnorm") is not None:
        return record
    from prunescope.api import model_for
    from prunescope.models.describe import describe

    return describe(model_for(cfg))


def hardware(rd: RunDir) -> str:
    """The machine the run's last session ran on, as its manifest records it (the device and
    threads a figure's numbers ran on come from its own table)."""
    sessions = rd.manifest.get("sessions") or [{}]
    env = sessions[-1]
    parts = [str(env.get(k)) for k in ("cpu", "platform") if env.get(k)]
    return ", ".join(parts) or "this machine"


def control_tables(rd: RunDir) -> dict[str, dict[str, pd.DataFrame]]:
    """The tables of the run's control branches (those with at least one level)."""
    from prunescope.branch import branch_dirs

    out = {}
    for path in branch_dirs(rd.root):
        branch_rd, _ = open_run_dir(path)
        tables = load_tables(branch_rd)
        if has_rows(tables, "accuracy"):
            out[path.name] = tables
    return out


def control_series(branches: dict[str, dict[str, pd.DataFrame]], margin: float) -> list[RunSeries]:
    return [
        RunSeries(
            f"control: {kind}",
            t["accuracy"],
            F.critical_sparsity(t["accuracy"], margin),
            control=True,
        )
        for kind, t in branches.items()
    ]


def compared_runs(
    run_dirs: list[Path],
    opened: list[tuple[RunDir, Config]],
    first: tuple[dict[str, pd.DataFrame], dict, list[str]],
    margin: float,
) -> list[ComparedRun]:
    """Every run of the report with its own findings (computed as the first run's are, on its
    own tables, up to its own critical sparsity at the first run's margin); the first run's
    tables and findings are the report's."""
    labels = run_labels(run_dirs, [c for _, c in opened])
    out = []
    for i, (label, (other_rd, other_cfg)) in enumerate(zip(labels, opened, strict=True)):
        exclude = list(other_cfg.imp.exclude or [])
        if i == 0:
            tables, summary, order = first
        else:
            tables = load_tables(other_rd)
            order = stage_order(other_rd, other_cfg, tables)
            crit = F.critical_sparsity(tables["accuracy"], margin)
            inp = FindingInputs(tables, order, exclude, crit)
            summary = findings(inp, other_cfg.analysis.plugins)
        out.append(ComparedRun(label, tables, summary, order, exclude))
    return out


def run_summaries(
    compared: list[ComparedRun], opened: list[tuple[RunDir, Config]], plugins: Plugins = ()
) -> list[dict]:
    """Every run's headline numbers (the table that gives each finding per run and seed)."""
    return [
        {
            "label": r.label,
            "seed": cfg.seed,
            "headline": headline(r.summary, plugins),
            "missing_analyses": [
                name
                for name in missing_analyses(r.tables, cfg.analysis.plugins)
                if name not in (rd.manifest.get("skipped_analyses") or {})
            ],
        }
        for r, (rd, cfg) in zip(compared, opened, strict=True)
    ]


def draw_figures(inputs: FigureInputs, out: Path, plugins: Plugins = ()) -> list[FigureFile]:
    """Every report part's figures whose tables have rows, in registry order."""
    figures: list[FigureFile] = []
    for part in report_parts(plugins):
        for figure in part.figures:
            if any(has_rows(inputs.tables, n) for n in figure.needs):
                figures += figure.draw(inputs, out / "figures")
    return figures


@dataclass
class ReportInputs:
    """What the page, summary.json and every figure are made from."""

    tables: dict[str, pd.DataFrame]
    summary: dict
    runs: list[RunSeries]
    per_run: list[dict]
    figures: FigureInputs
    configs: list[tuple[str, Config]]  # every run's config, by its label


def report_inputs(
    run_dirs: list[Path], rd: RunDir, cfg: Config, replicates: bool = False
) -> ReportInputs:
    tables = load_tables(rd)
    if not has_rows(tables, "accuracy"):
        raise RunDirError(f"{rd.root} has no completed level to report on")
    order = stage_order(rd, cfg, tables)
    margin = cfg.report.critical_margin
    exclude = list(cfg.imp.exclude or [])
    model = described(rd, cfg)
    types = model["layer_types"]
    branches = control_tables(rd)
    crit = F.critical_sparsity(tables["accuracy"], margin)
    inp = FindingInputs(tables, order, exclude, crit, types, branches)
    summary = findings(inp, cfg.analysis.plugins)
    summary["batchnorm"] = model["batchnorm"]
    opened = open_runs(run_dirs, rd, cfg)
    runs = run_series(run_dirs, opened, margin, replicates) + control_series(branches, margin)
    compared = compared_runs(run_dirs, opened, (tables, summary, order), margin)
    per_run = run_summaries(compared, opened, cfg.analysis.plugins) if len(run_dirs) > 1 else []
    figures = FigureInputs(
        tables,
        order,
        exclude,
        summary["critical_sparsity"],
        runs,
        targets=tuple(cfg.report.hist_sparsities),
        zeroing_mode=cfg.analysis.zeroing.mode,
        controls=branches,
        run_tables=[(r.label, r.tables) for r in compared],
        layer_types=types,
        hardware=hardware(rd),
        metric=dataset_spec(cfg.data.name).metric,
        batchnorm=summary["batchnorm"],
        summary=summary,
        compared=compared,
    )
    configs = [(r.label, c) for r, (_, c) in zip(compared, opened, strict=True)]
    return ReportInputs(tables, summary, runs, per_run, figures, configs)


def build_report(
    run_dirs: list[Path], out: Path, rd: RunDir, cfg: Config, replicates: bool = False
) -> dict:
    made = report_inputs(run_dirs, rd, cfg, replicates)
    tables, summary, runs, per_run = made.tables, made.summary, made.runs, made.per_run
    plugins = cfg.analysis.plugins
    figures = draw_figures(made.figures, out, plugins)
    skipped = dict(rd.manifest.get("skipped_analyses") or {})
    missing = [name for name in missing_analyses(tables, plugins) if name not in skipped]
    if missing:
        log.info(
            "report: no %s tables yet, their figures are left out; fill them with: "
            "prunescope analyze %s --only %s",
            ", ".join(missing),
            rd.root,
            ",".join(missing),
        )
    summary_doc = {
        "run": rd.root.resolve().name,
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "findings": summary,
        "runs": [
            {"label": r.label, "critical_sparsity": r.critical, "replicates": r.replicates}
            for r in runs
        ],
        "per_run": per_run,
        "missing_analyses": missing,
        "skipped_analyses": skipped,
        "dense": (rd.manifest.get("layer_order") or {}).get("dense"),
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
    html = render_page(
        rd, cfg, config_text, tables, summary, runs, figures, out, missing, per_run, made.configs
    )
    atomic_write_bytes(out / "index.html", html.encode("utf-8"))
    return summary_doc


def install_report(rd: RunDir, scratch: Path) -> None:
    """Files under RUN_DIR/report are run files too: each file drawn in ``scratch`` is
    written as one (announced as pending before it is renamed into place, left alone where
    the same bytes are there), then the files of an older report no longer drawn are
    forgotten. A crash at any point leaves every file matching its record."""
    made = {
        f"{REPORT}/{p.relative_to(scratch).as_posix()}": p
        for p in sorted(scratch.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    }
    for rel, path in made.items():
        rd.write(rel, path.read_bytes())
    for rel in [r for r in rd.manifest["files"] if r.startswith(REPORT + "/") and r not in made]:
        rd.forget(rel)


def report_into_run(
    rd: RunDir, cfg: Config, run_dirs: list[Path], replicates: bool = False
) -> Path:
    """Build ``RUN_DIR/report`` and record its files; the caller holds the run's lock. The
    runs it overlays are kept so that ``analyze`` can rebuild the same report."""
    target = rd.root / REPORT
    for folder in (target, target / "figures"):
        check_not_symlink(folder, "its report")
    with tempfile.TemporaryDirectory(prefix="prunescope-report-") as scratch:
        summary = build_report(run_dirs, Path(scratch), rd, cfg, replicates)
        install_report(rd, Path(scratch))
    rd.manifest["report_runs"] = [str(Path(p).resolve()) for p in run_dirs[1:]]
    rd.save_manifest()
    track_report(rd, cfg, summary["findings"])  # track.tensorboard: the headline numbers
    return target


def rebuild_stale_report(rd: RunDir, cfg: Config) -> Path | None:
    """After ``analyze``: the run's own report, if it has one, made again from the new tables
    (with the runs it overlaid, where they still exist)."""
    if not rd.recorded(f"{REPORT}/index.html"):
        return None
    others = []
    for p in rd.manifest.get("report_runs") or []:
        if (Path(p) / "manifest.json").exists():
            others.append(Path(p))
        else:
            log.warning("report: %s, overlaid before, is gone; left out", p)
    target = report_into_run(rd, cfg, [rd.root, *others])
    log.info("report rebuilt from the new tables: %s", target / "index.html")
    return target


def make_report(
    run_dirs: list[str | Path], out: str | Path | None = None, replicates: bool = False
) -> Path:
    paths = [Path(p) for p in run_dirs]
    primary = paths[0]
    if out is None or Path(out).resolve() == (primary / REPORT).resolve():
        with WriteSession(primary, create=False) as session:
            target = report_into_run(session.rd, session.cfg, paths, replicates)
    else:
        target = Path(out)
        rd, cfg = open_run_dir(primary)
        build_report(paths, target, rd, cfg, replicates)
    index = target / "index.html"
    log.info("report: %s", index)
    return index


def summary_of(path: str | Path) -> dict:
    return json.loads((Path(path) / REPORT / "summary.json").read_text())
