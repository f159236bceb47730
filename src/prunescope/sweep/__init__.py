"""``prunescope sweep``: a grid of runs, run locally N at a time or on SLURM through
submitit, safe to re-run (complete runs are skipped, the others resume)."""

from __future__ import annotations

import logging
from pathlib import Path

from prunescope.errors import UserInputError
from prunescope.sweep import jobs
from prunescope.sweep.local import LocalRun, run_local
from prunescope.sweep.spec import SweepFile, SweepPoint, expand, load_sweep
from prunescope.sweep.state import (
    RunState,
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


def plan(sweep_file: Path, sweep_dir: Path | None) -> tuple[SweepFile, list[SweepPoint], Path]:
    """The sweep file read and every point validated: nothing has started yet."""
    sweep = load_sweep(sweep_file)
    points = expand(sweep)
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


def run_sweep(
    sweep_file: Path,
    *,
    executor: str = "local",
    slots: int = 1,
    sweep_dir: Path | None = None,
    analyze: bool = True,
    cluster: str | None = None,
    wait: bool = False,
) -> Path:
    if executor not in EXECUTORS:
        raise UserInputError(f"unknown executor {executor!r}: choose {' or '.join(EXECUTORS)}")
    if slots < 1:
        raise UserInputError(f"--jobs must be at least 1, got {slots}")
    sweep, points, root = plan(sweep_file, sweep_dir)
    if executor == "slurm":
        from prunescope.sweep.slurm import import_submitit

        import_submitit()  # say how to install it before anything is written
    rec = record(sweep_file, sweep, points, root)
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
    submitted = submit(tasks, root / "submitit", sweep.slurm, slots, cluster)
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
    rec = read_record(sweep_dir)
    return [run_state(Path(sweep_dir), r["name"], int(r["levels"])) for r in rec["runs"]]


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
    from prunescope.sweep.state import SWEEP_JSON

    if len(paths) != 1 or not (Path(paths[0]) / SWEEP_JSON).is_file():
        return paths, out
    runs = sweep_runs(paths[0])
    if not runs:
        raise UserInputError(f"sweep {paths[0]} has no run with a trained level yet")
    return runs, out if out is not None else Path(paths[0]) / "report"
