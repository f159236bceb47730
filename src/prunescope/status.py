"""``prunescope status``: what a run has done, what is left, and which files are damaged.

Every line agrees with every other: a level whose files are damaged is listed as
trained but damaged, and the last line says what is complete, what is damaged
and what the next command is.
"""

from __future__ import annotations

from pathlib import Path

from prunescope.analysis.tables import COLUMNS, has_table
from prunescope.config import Config
from prunescope.errors import RunDirError
from prunescope.imp import Schedule, schedule_of
from prunescope.rundir.layout import REWIND, RunDir, level_name, level_of_file
from prunescope.rundir.level_files import read_metrics
from prunescope.rundir.lock import lock_holder
from prunescope.rundir.session import levels_summary, open_run_dir
from prunescope.wording import format_seconds, level_list, plural


def damaged_files(rd: RunDir) -> list[tuple[str, str]]:
    out = []
    for rel in sorted(rd.manifest.get("files", {})):
        problem = rd.check(rel)
        if problem:
            out.append((rel, problem))
    return out


def _header(rd: RunDir, cfg: Config, sched: Schedule) -> list[str]:
    return [
        f"run {rd.root}: {cfg.model.name} on {cfg.data.name}, {plural(cfg.imp.levels, 'level')} of "
        f"{cfg.imp.rate:g} ({cfg.imp.scope}), rewind to {cfg.imp.rewind} (epoch {sched.rewind_epoch}), "
        f"{plural(sched.level_epochs, 'epoch')} per level",
        f"created {rd.manifest.get('created')} by prunescope {rd.manifest['environment'].get('prunescope')}",
        "",
        "level  sparsity  accuracy      loss      time  status",
    ]


def in_progress(rd: RunDir, sched: Schedule) -> str | None:
    """ "pretraining: 3 of 5 epochs done" / "level 2: 4 of 10 epochs done", from the checkpoint."""
    ck = rd.manifest.get("checkpoint") or {}
    if not ck:
        return None
    if ck.get("phase") == "pretrain":
        return f"pretraining: {ck.get('epoch')} of {plural(sched.rewind_epoch, 'epoch')} done"
    done = int(ck.get("epoch", 0)) - sched.rewind_epoch
    return f"{done} of {plural(sched.level_epochs, 'epoch')} done"


def _level_line(
    rd: RunDir, level: int, sched: Schedule, bad: set[int], training: int | None = None
) -> str:
    rec = rd.manifest.get("levels", {}).get(level_name(level), {})
    blank = f"{level_name(level):>5}  {'':>8}  {'':>8}  {'':>8}  {'':>8}"
    if rec.get("status") != "complete":
        if level == training:
            return f"{blank}  training now (see below)"
        ck = rd.manifest.get("checkpoint") or {}
        if ck.get("phase") == "level" and ck.get("level") == level:
            return f"{blank}  in progress ({in_progress(rd, sched)})"
        return f"{blank}  pending"
    try:
        loss = f"{read_metrics(rd, level)['test_loss']:8.4f}"
    except RunDirError:  # damaged: listed below, status itself must not fail
        loss = f"{'?':>8}"
    state = "trained, DAMAGED (see below)" if level in bad else "complete"
    return (
        f"{level_name(level):>5}  {100 * rec['network_sparsity']:7.2f}%  {rec['test_accuracy']:8.4f}"
        f"  {loss}  {format_seconds(rec.get('seconds', 0)):>8}  {state}"
    )


def _damage_lines(rd: RunDir, damaged: list[tuple[str, str]], bad: list[int]) -> list[str]:
    if not damaged:
        return ["damaged files: none (every file matches its sha256)"]
    lines = [f"DAMAGED FILES ({len(damaged)}):"]
    lines += [f"  {rel}: {problem}" for rel, problem in damaged]
    if any(rel == REWIND for rel, _ in damaged):
        lines.append(f"  redo with: prunescope run --run-dir {rd.root} --redo-from 0")
    elif bad:
        lines.append(f"  redo with: prunescope run --run-dir {rd.root} --redo-from {bad[0]}")
    elif any(rel.startswith("analysis/") for rel, _ in damaged):
        lines.append(f"  recompute with: prunescope analyze {rd.root} --force")
    return lines


def _verdict(rd: RunDir, cfg: Config, remaining: list[int], bad: list[int]) -> str:
    """The last line: what is complete, what is damaged, and what to run next."""
    done = levels_summary(rd, cfg.imp.levels)
    if bad:
        return (
            f"{done}, but {plural(len(bad), 'level')} ({level_list(bad)}) damaged: "
            f"redo from level {bad[0]} before going on"
        )
    if remaining:
        return (
            f"{done}; next: 'prunescope run --run-dir {rd.root}' continues at level {remaining[0]}"
        )
    return f"all levels complete ({done})"


def branch_lines(rd: RunDir) -> list[str]:
    """One line per control branch: what it has done (or why it cannot be read)."""
    from prunescope.branch import branch_dirs

    out = []
    for path in branch_dirs(rd.root):
        try:
            branch_rd, branch_cfg = open_run_dir(path)
            out.append(f"branch {path.name}: {levels_summary(branch_rd, branch_cfg.imp.levels)}")
        except RunDirError as exc:
            out.append(f"branch {path.name}: cannot be read ({str(exc)[:120]})")
    return out


def what_is_kept(run_dir: str | Path) -> str | None:
    """After an interrupted ``run``: what a resume starts from and what was lost, from the
    manifest (read as it is, not verified: this runs on the way out); None when no run
    directory exists or nothing was trained in it."""
    try:
        rd, cfg = open_run_dir(run_dir)
    except (RunDirError, OSError):
        return None
    sched = schedule_of(cfg)
    done = [lv for lv in range(cfg.imp.levels + 1) if rd.level_complete(lv)]
    ck = rd.manifest.get("checkpoint") or {}
    if not done and not ck and not rd.recorded(REWIND):
        return None
    parts = [levels_summary(rd, cfg.imp.levels)]
    if ck.get("phase") == "pretrain":
        parts.append(
            f"pretraining resumes after epoch {ck.get('epoch')}; the epochs after it are lost"
        )
    elif ck.get("phase") == "level":
        at = int(ck.get("epoch", 0)) - sched.rewind_epoch
        parts.append(
            f"level {ck.get('level')} resumes from its checkpoint after epoch {at} of "
            f"{sched.level_epochs}; the epochs after it are lost"
        )
    elif len(done) <= cfg.imp.levels:
        parts.append(f"level {len(done)} had no checkpoint yet: it starts over")
    return "; ".join(parts)


def status_text(run_dir: str | Path) -> str:
    rd, cfg = open_run_dir(run_dir)
    sched = schedule_of(cfg)
    damaged = damaged_files(rd)
    bad = sorted(
        {
            lv
            for rel, _ in damaged
            if (lv := level_of_file(rel)) is not None and rd.level_complete(lv)
        }
    )
    holder = lock_holder(rd.root)
    remaining = [lv for lv in range(cfg.imp.levels + 1) if not rd.level_complete(lv)]
    training = remaining[0] if holder and remaining else None
    lines = _header(rd, cfg, sched)
    lines += [
        _level_line(rd, level, sched, set(bad), training) for level in range(cfg.imp.levels + 1)
    ]
    levels = rd.manifest.get("levels", {})
    extra = [
        int(k) for k in levels if int(k) > cfg.imp.levels and levels[k].get("status") == "complete"
    ]
    if extra:
        lines.append(f"(also complete beyond imp.levels: {level_list(extra)})")
    ck = rd.manifest.get("checkpoint") or {}
    if ck.get("phase") == "pretrain":
        lines.append(f"in progress: {in_progress(rd, sched)}")
    lines.append("")
    tables = [name for name in COLUMNS if has_table(rd, name)]
    lines.append(f"analysis tables: {', '.join(tables) if tables else 'none'}")
    report = rd.root / "report" / "index.html"
    lines.append(f"report: {report if report.exists() else 'not made'}")
    lines += branch_lines(rd)
    lines += _damage_lines(rd, damaged, bad)
    if holder:
        pid, doing = holder
        lines.append(
            f"in use by prunescope process {pid}{f' ({doing})' if doing else ''}: another run or "
            f"analyze on it waits for the lock; let it finish, or stop it with kill -INT {pid} "
            f"(completed levels and its last checkpoint are kept)"
        )
    else:
        lines.append(_verdict(rd, cfg, remaining, bad))
    return "\n".join(lines)
