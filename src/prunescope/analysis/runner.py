"""``prunescope analyze``: run the analyses over a run directory, incrementally.

Each analysis writes its tables under ``analysis/`` one level at a time, records
the settings it used in the manifest, and on the next call only computes the
levels it has not done (all of them again when its settings changed or with
``force``).
"""

from __future__ import annotations

import difflib
import logging
import os
import time

import pandas as pd
import torch

from prunescope import distributed
from prunescope.analysis.accuracy import write_accuracy
from prunescope.analysis.context import AnalysisContext
from prunescope.analysis.registry import AnalysisSpec, Plugins, analyses, analysis_names
from prunescope.analysis.tables import has_table, read_table, table_path, write_table
from prunescope.config import Config
from prunescope.errors import AnalysisFailed, PrunescopeError, Unsupported, UserInputError
from prunescope.rundir.layout import RunDir
from prunescope.rundir.session import why_missing
from prunescope.wording import format_seconds, plural

log = logging.getLogger("prunescope")


def forward_settings(ctx: AnalysisContext) -> dict:
    """What changes the numbers of an analysis that runs the network: its precision. Records
    made before bf16 analyses existed were all fp32 and carry no key, so fp32 adds none."""
    return {} if ctx.precision == "fp32" else {"precision": ctx.precision}


def settings_of(spec: AnalysisSpec, ctx: AnalysisContext) -> dict:
    settings = spec.depends_on(ctx.cfg)
    if spec.runs_network:
        settings.update(forward_settings(ctx))
    return settings


def parse_only(text: str | None, plugins: Plugins = ()) -> list[str]:
    """``--only a,b``; without it, every analysis that runs by default (a run's plugins'
    included)."""
    if not text:
        return analysis_names(default_only=True, plugins=plugins)
    known = analyses(plugins)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserInputError(
            f"--only: unknown analysis {', '.join(unknown)}{hint}; choose from {', '.join(known)}"
        )
    return names


def parse_levels(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UserInputError(f"--levels {text!r}: expected level numbers like 0,3,7") from None


def levels_for(spec: AnalysisSpec, ctx: AnalysisContext, requested: list[int] | None) -> list[int]:
    levels = ctx.levels()
    if requested is not None:
        missing = [lv for lv in requested if lv not in levels]
        if missing:
            raise UserInputError(f"--levels: {why_missing(ctx.rd, ctx.cfg.imp.levels, missing)}")
        levels = requested
    return spec.levels(ctx.cfg, levels)


def run_analysis(ctx: AnalysisContext, name: str, requested: list[int] | None, force: bool) -> None:
    spec = analyses(ctx.cfg.analysis.plugins)[name]
    rd = ctx.rd
    records = rd.manifest.setdefault("analyses", {})
    settings = settings_of(spec, ctx)
    record = records.get(name)
    usable = (
        record is not None
        and record.get("settings") == settings
        and all(has_table(rd, t) for t in spec.tables)
    )
    if usable:
        for t in spec.tables:
            problem = rd.check(table_path(t))
            if problem:
                log.warning(
                    "%s is damaged (%s): recomputing %s for every level",
                    rd.path(table_path(t)),
                    problem,
                    name,
                )
                usable = False
    done = set(record["levels"]) if usable else set()
    tables = {t: read_table(rd, t) for t in spec.tables} if usable else {}
    levels = levels_for(spec, ctx, requested)
    todo = [lv for lv in levels if force or lv not in done]
    if not todo:
        log.info("%s: up to date (%s)", name, plural(len(done), "level"))
        return
    start = time.perf_counter()
    shared = computed_across_ranks(ctx, name, todo)  # under torchrun: every rank's levels
    for level in todo:
        level_start = time.perf_counter()
        new = shared[level] if shared is not None else spec.compute(ctx, [level])
        for t in spec.tables:
            old = tables.get(t)
            parts = [
                df
                for df in (old[old["level"] != level] if old is not None else None, new[t])
                if df is not None and not df.empty
            ]
            tables[t] = pd.concat(parts, ignore_index=True) if parts else new[t]
            write_table(rd, t, tables[t])
        done.add(level)
        records[name] = {"settings": settings, "levels": sorted(done)}
        rd.save_manifest()
        done_count = todo.index(level) + 1
        spent = time.perf_counter() - start
        left = len(todo) - done_count
        guess = spent / done_count * left  # the levels so far, per level
        eta = f"; about {format_seconds(guess)} left" if guess >= 1 else ""
        log.info(
            "%s: level %d done (%s; %d of %d%s)",
            name,
            level,
            format_seconds(time.perf_counter() - level_start),
            done_count,
            len(todo),
            eta,
        )
    log.info(
        "%s: %s analysed in %s",
        name,
        plural(len(todo), "level"),
        format_seconds(time.perf_counter() - start),
    )


def computed_across_ranks(
    ctx: AnalysisContext, name: str, todo: list[int]
) -> dict[int, dict[str, pd.DataFrame]] | None:
    """Under torchrun: the levels to analyse split across ranks (``todo[rank::size]``) and
    every rank's tables gathered on rank 0, which alone writes them. None otherwise."""
    if not distributed.world().distributed:
        return None
    distributed.broadcast_object({"analysis": name, "levels": todo})
    return _gathered(analyses(ctx.cfg.analysis.plugins)[name].compute, ctx, todo)


def _gathered(compute, ctx: AnalysisContext, todo: list[int]):
    w = distributed.world()
    mine = {level: compute(ctx, [level]) for level in todo[w.rank :: w.size]}
    parts = distributed.gather_object(mine)
    return {lv: t for part in parts for lv, t in part.items()} if w.writer else None


def follow_analyses(run_dir, cfg: Config, device: torch.device) -> None:
    """A rank other than 0: analyse the levels rank 0 hands it, read-only (it writes
    nothing: its tables go to rank 0)."""
    from prunescope.rundir.session import open_run_dir

    rd, _ = open_run_dir(run_dir)
    ctx = AnalysisContext(rd, cfg, device)
    while (job := distributed.broadcast_object()) is not None:
        _gathered(analyses(cfg.analysis.plugins)[job["analysis"]].compute, ctx, job["levels"])


def analyze_run(
    rd: RunDir,
    cfg: Config,
    device: torch.device,
    only: list[str] | None = None,
    levels: list[int] | None = None,
    force: bool = False,
) -> None:
    """Every analysis asked for. One that cannot handle the model (:class:`Unsupported`) is
    recorded as skipped with its reason; one that fails otherwise is recorded too, the
    others still run, and :class:`AnalysisFailed` is raised at the end (the caller makes the
    report first: see :func:`raise_failures`)."""
    ctx = AnalysisContext(rd, cfg, device)
    rd.manifest.setdefault("layer_order", {"stages": list(ctx.stages), "layers": ctx.layers})
    write_accuracy(rd)
    skipped = rd.manifest.setdefault("skipped_analyses", {})
    try:
        plugins = cfg.analysis.plugins
        for name in only or analysis_names(default_only=True, plugins=plugins):
            skipped.pop(name, None)
            try:
                run_analysis(ctx, name, levels, force)
            except Unsupported as exc:
                skipped[name] = str(exc)
                log.warning("%s skipped: %s", name, exc)
            except PrunescopeError:
                raise  # the user's input (a bad setting, a damaged file): one line, exit 2
            except Exception as exc:
                if os.environ.get("PRUNESCOPE_DEBUG"):  # --debug: the traceback, not a record
                    raise
                skipped[name] = f"failed ({type(exc).__name__}: {str(exc)[:200]})"
                log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
            rd.save_manifest()
    finally:
        distributed.broadcast_object(None)  # under torchrun: the other ranks are done


def raise_failures(rd: RunDir) -> None:
    """After the report: an analysis that failed (not one skipped for the model) ends the
    command with exit code 1 and the command that shows its traceback."""
    failed = [
        n for n, why in rd.manifest.get("skipped_analyses", {}).items() if why.startswith("failed")
    ]
    if failed:
        raise AnalysisFailed(
            f"{', '.join(failed)} failed ({rd.manifest['skipped_analyses'][failed[0]]}); the other "
            f"analyses and the report are made; see the traceback with: prunescope analyze "
            f"{rd.root} --only {','.join(failed)} --debug"
        )
