"""``prunescope sweep``: a grid of runs, run locally N at a time or on SLURM through
submitit, safe to re-run (complete runs are skipped, the others resume)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prunescope.errors import UserInputError
from prunescope.rundir.files import own_folder
from prunescope.sweep import jobs
from prunescope.sweep.local import LocalRun, run_local
from prunescope.sweep.spec import MAX_RUNS, SweepFile, SweepPoint, expand, load_sweep
from prunescope.sweep.state import (
    LOGS,
    SWEEP_JSON,
    RunState,
    check_logs_folder,
    is_complete,
    log_path,
    read_record,
    run_state,
    write_record,
)

log = logging.getLogger("prunescope")

EXECUTORS = ("local", "slurm")


def default_dir(sweep_file: Path) -> Path:
    """``sweeps/fig4.toml`` → ``sweeps/fig4``."""
    return Path(sweep_file).with_suffix("")


def plan(
    sweep_file: Path, sweep_dir: Path | None, max_runs: int = MAX_RUNS
) -> tuple[SweepFile, list[SweepPoint], Path]:
    """The sweep file read and every point validated: nothing has started yet."""
    sweep = load_sweep(sweep_file)
    points = expand(sweep, max_runs)
    return sweep, points, Path(sweep_dir) if sweep_dir else default_dir(sweep_file)


def record(sweep_file: Path, sweep: SweepFile, points: list[SweepPoint], root: Path) -> dict:
    try:
        old = read_record(root)
    except UserInputError:
        old = {}
    rec = {
        "format": "prunescope-sweep",
        "format_version": 1,
        "sweep_file": str(Path(sweep_file).resolve()),
        "base": sweep.base.model_dump(mode="json"),
        "grid": sweep.grid,
        "slurm": sweep.slurm,
        "runs": [
            {"name": p.name, "values": p.values, "levels": p.config.imp.levels} for p in points
        ],
        "jobs": old.get("jobs", []),
    }
    write_record(root, rec)
    return rec


def own_run_folders(root: Path, points: list[SweepPoint]) -> None:
    """The folders the runs write into, made here and never through a symbolic link (a
    sweep folder from someone else could link a run or ``logs/`` anywhere)."""
    own_folder(root / LOGS, "a sweep's logs", base=root)
    for p in points:
        own_folder(root / p.name, "a sweep's run", base=root)


def run_sweep(
    sweep_file: Path,
    *,
    executor: str = "local",
    slots: int = 1,
    sweep_dir: Path | None = None,
    analyze: bool = True,
    cluster: str | None = None,
    wait: bool = False,
    max_runs: int = MAX_RUNS,
) -> Path:
    if executor not in EXECUTORS:
        raise UserInputError(f"unknown executor {executor!r}: choose {' or '.join(EXECUTORS)}")
    if slots < 1:
        raise UserInputError(f"--jobs must be at least 1, got {slots}")
    if max_runs < 1:
        raise UserInputError(f"--max-runs must be at least 1, got {max_runs}")
    sweep, points, root = plan(sweep_file, sweep_dir, max_runs)
    if executor == "slurm":
        from prunescope.sweep.slurm import import_submitit

        import_submitit()  # say how to install it before anything is written
    rec = record(sweep_file, sweep, points, root)
    own_run_folders(root, points)  # before is_complete reads them
    todo = [p for p in points if not is_complete(root / p.name, p.config.imp.levels, analyze)]
    log.info(
        "sweep: %d runs in %s, %d complete, %d to run",
        len(points),
        root,
        len(points) - len(todo),
        len(todo),
    )
    if not todo:
        return root
    cmds = {p.name: jobs.run_command(root / p.name, p.cli_args(sweep.base), analyze) for p in todo}
    if executor == "local":
        run_local([LocalRun(n, c, log_path(root, n)) for n, c in cmds.items()], slots)
        return root
    from prunescope.sweep.slurm import SweepTask, submit

    tasks = [SweepTask(c, str(log_path(root, n))) for n, c in cmds.items()]
    folder = own_folder(root / "submitit", "submitit's files", base=root)
    submitted = submit(tasks, folder, sweep.slurm, slots, cluster)
    rec["jobs"].append(
        {
            "executor": cluster or "slurm",
            "job_ids": [j.job_id for j in submitted],
            "runs": list(cmds),
        }
    )
    write_record(root, rec)
    log.info("sweep: submitted %d runs (job %s)", len(tasks), submitted[0].job_id)
    if wait:
        for job in submitted:
            try:
                job.result()
            except Exception as exc:  # the run's own log holds the reason
                log.info("sweep: job %s failed: %s", job.job_id, str(exc).splitlines()[-1:])
    return root


def sweep_status(sweep_dir: Path) -> list[RunState]:
    rec = read_record(sweep_dir)  # validated: every name is one plain path component
    check_logs_folder(sweep_dir)
    return [run_state(Path(sweep_dir), r["name"], r["levels"]) for r in rec["runs"]]


def sweep_runs(sweep_dir: Path) -> list[Path]:
    """The sweep's run directories with at least one trained level, in grid order."""
    return [Path(sweep_dir) / s.name for s in sweep_status(sweep_dir) if s.levels_done > 0]


def status_table(states: list[RunState]) -> str:
    width = max([len(s.name) for s in states] + [3])
    lines = [f"{'run':<{width}}  {'state':<8}  levels  note"]
    for s in states:
        lines.append(
            f"{s.name:<{width}}  {s.state:<8}  {s.levels_done:>2}/{s.levels + 1:<3}  {s.note}".rstrip()
        )
    counts = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    return "\n".join(lines)


def expand_report_args(paths: list[Path], out: Path | None) -> tuple[list[Path], Path | None]:
    """``report SWEEP_DIR``: its runs with a trained level (seeds grouped as replicates by
    the report itself), written to ``SWEEP_DIR/report`` unless ``--out`` says otherwise."""
    # lexists: a sweep.json that is a link or a FIFO is refused as a sweep's, not skipped
    if len(paths) != 1 or not os.path.lexists(Path(paths[0]) / SWEEP_JSON):
        return paths, out
    root = Path(paths[0])
    runs = sweep_runs(root)
    if not runs:
        raise UserInputError(f"sweep {root} has no run with a trained level yet")
    return runs, out if out is not None else own_report_folder(root)


def own_report_folder(root: Path) -> Path:
    """``SWEEP_DIR/report`` and its ``figures/``, never through a link: the report would
    be written wherever one leads (``--out``, named by the user, is the user's own)."""
    report = own_folder(root / "report", "the sweep's report", base=root)
    own_folder(report / "figures", "the sweep's report", base=root)
    return report
