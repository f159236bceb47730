"""``--executor slurm``: one job array through submitit. Each task runs one sweep run and is
checkpointable: on a time-out or preemption submitit requeues it, and the run resumes from
its last checkpoint (the run directory makes that safe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunescope.errors import UserInputError
from prunescope.sweep import jobs
from prunescope.sweep.spec import check_slurm_table

# Short names a sweep file may use in [slurm], as submitit spells them; any other key is
# passed to submitit as it is (e.g. slurm_qos, slurm_constraint, nodes).
SLURM_NAMES = {
    "partition": "slurm_partition",
    "account": "slurm_account",
    "time": "timeout_min",  # minutes
    "gpus": "gpus_per_node",
    "cpus": "cpus_per_task",
    "mem_gb": "mem_gb",
    "qos": "slurm_qos",
}


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise UserInputError(
            "--executor slurm needs submitit: pip install 'prunescope[slurm]'"
        ) from None
    return submitit


class SweepTask:
    """One run of the sweep as a submitit task (picklable; requeued with the same run)."""

    def __init__(self, cmd: list[str], log: str):
        self.cmd = cmd
        self.log = log

    def __call__(self) -> int:
        code = jobs.run_to_end(self.cmd, Path(self.log))
        if code != 0:
            raise RuntimeError(f"prunescope run exited {code}; see {self.log}")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on a time-out or preemption: run the same task again."""
        import submitit

        return submitit.helpers.DelayedSubmission(SweepTask(self.cmd, self.log))


def executor_parameters(table: dict[str, Any], slots: int) -> dict[str, Any]:
    check_slurm_table(table, "[slurm]")  # load_sweep did; this is the way into the script
    params = {SLURM_NAMES.get(k, k): v for k, v in table.items()}
    params.setdefault("slurm_array_parallelism", slots)
    return params


def submit(
    tasks: list[SweepTask],
    folder: Path,
    table: dict[str, Any],
    slots: int,
    cluster: str | None = None,
) -> list:
    """The submitted jobs (one array). ``cluster``: None lets submitit find SLURM; "local"
    runs the same code path on this machine (the tests do)."""
    submitit = import_submitit()
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    try:
        executor.update_parameters(**executor_parameters(table, slots))
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"[slurm]: {exc}") from None
    with executor.batch():  # one job array; a task with a checkpoint() method is requeued
        submitted = [executor.submit(task) for task in tasks]
    return submitted
