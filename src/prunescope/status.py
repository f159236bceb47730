"""``prunescope status``: what a run has done, what is left, and which files are damaged."""

from __future__ import annotations

from pathlib import Path

from prunescope.analysis.tables import COLUMNS, has_table
from prunescope.errors import RunDirError
from prunescope.imp import format_seconds, schedule_of
from prunescope.rundir.layout import RunDir, level_name, level_of_file
from prunescope.rundir.level_files import read_metrics
from prunescope.rundir.session import open_run_dir


def damaged_files(rd: RunDir) -> list[tuple[str, str]]:
    out = []
    for rel in sorted(rd.manifest.get("files", {})):
        problem = rd.check(rel)
        if problem:
            out.append((rel, problem))
    return out


def status_text(run_dir: str | Path) -> str:
    rd, cfg = open_run_dir(run_dir)
    sched = schedule_of(cfg)
    lines = [
        f"run {rd.root}: {cfg.model.name} on {cfg.data.name}, {cfg.imp.levels} levels of "
        f"{cfg.imp.rate:g} ({cfg.imp.scope}), rewind to {cfg.imp.rewind} (epoch {sched.rewind_epoch}), "
        f"{sched.level_epochs} epochs per level",
        f"created {rd.manifest.get('created')} by prunescope {rd.manifest['environment'].get('prunescope')}",
        "",
        "level  sparsity  accuracy      loss      time  status",
    ]
    levels = rd.manifest.get("levels", {})
    done = rd.completed_levels()
    checkpoint = rd.manifest.get("checkpoint") or {}
    for level in range(cfg.imp.levels + 1):
        rec = levels.get(level_name(level), {})
        if rec.get("status") == "complete":
            try:
                loss = f"{read_metrics(rd, level)['test_loss']:8.4f}"
            except RunDirError:  # damaged: listed below, status itself must not fail
                loss = f"{'?':>8}"
            lines.append(
                f"{level_name(level):>5}  {100 * rec['network_sparsity']:7.2f}%  {rec['test_accuracy']:8.4f}"
                f"  {loss}  {format_seconds(rec.get('seconds', 0)):>8}  complete"
            )
        elif checkpoint.get("level") == level:
            lines.append(
                f"{level_name(level):>5}  {'':>8}  {'':>8}  {'':>8}  {'':>8}  in progress "
                f"(checkpoint after epoch {checkpoint.get('epoch')} of {sched.total_epochs})"
            )
        else:
            lines.append(f"{level_name(level):>5}  {'':>8}  {'':>8}  {'':>8}  {'':>8}  pending")
    extra = [
        int(k) for k in levels if int(k) > cfg.imp.levels and levels[k].get("status") == "complete"
    ]
    if extra:
        lines.append(f"(also complete beyond imp.levels: {', '.join(map(str, sorted(extra)))})")
    remaining = [lv for lv in range(cfg.imp.levels + 1) if lv not in done]
    lines.append("")
    tables = [name for name in COLUMNS if has_table(rd, name)]
    lines.append(f"analysis tables: {', '.join(tables) if tables else 'none'}")
    report = rd.root / "report" / "index.html"
    lines.append(f"report: {report if report.exists() else 'not made'}")
    damaged = damaged_files(rd)
    if damaged:
        lines.append(f"DAMAGED FILES ({len(damaged)}):")
        lines += [f"  {rel}: {problem}" for rel, problem in damaged]
        bad_levels = sorted({lv for rel, _ in damaged if (lv := level_of_file(rel)) is not None})
        if bad_levels:
            lines.append(
                f"  redo with: prunescope run --run-dir {rd.root} --redo-from {bad_levels[0]}"
            )
    else:
        lines.append("damaged files: none (every file matches its sha256)")
    if remaining:
        lines.append(
            f"next: 'prunescope run --run-dir {rd.root}' continues at level {remaining[0]}"
        )
    else:
        lines.append("all levels complete")
    return "\n".join(lines)
