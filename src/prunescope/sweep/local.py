"""``--executor local``: N runs at a time as subprocesses of this one, each on its own GPU
(``CUDA_VISIBLE_DEVICES``) or, without GPUs, its own share of the CPU threads."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from prunescope.sweep import jobs

log = logging.getLogger("prunescope")


@dataclass
class LocalRun:
    name: str
    cmd: list[str]
    log: Path


def slot_settings(slots: int) -> list[tuple[dict[str, str], list[str]]]:
    """Per slot: environment and extra ``--set`` items (a GPU each, else CPU threads)."""
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # no working torch here: the runs will say so themselves
        gpus = 0
    if gpus:
        return [({"CUDA_VISIBLE_DEVICES": str(i % gpus)}, []) for i in range(slots)]
    threads = max(1, (os.cpu_count() or 1) // slots)
    return [({}, [f"--set=threads={threads}"]) for _ in range(slots)]


def run_local(runs: list[LocalRun], slots: int, *, poll_s: float = 0.5) -> dict[str, int]:
    """Run every run, ``slots`` at a time; the exit code of each."""
    settings = slot_settings(slots)
    waiting = list(runs)
    active: dict[int, tuple[LocalRun, object]] = {}
    codes: dict[str, int] = {}
    while waiting or active:
        for slot in range(slots):
            if slot not in active and waiting:
                run = waiting.pop(0)
                env, extra = settings[slot]
                if any(a.startswith("threads=") for a in run.cmd):
                    extra = []  # the sweep file chose the threads
                log.info("sweep: starting %s", run.name)
                active[slot] = (run, jobs.start([*run.cmd, *extra], run.log, env))
        for slot, (run, proc) in list(active.items()):
            code = proc.poll()
            if code is not None:
                jobs.finish(run.log, code)
                codes[run.name] = code
                word = "complete" if code == 0 else f"failed (exit {code}, see {run.log})"
                log.info("sweep: %s %s", run.name, word)
                del active[slot]
        time.sleep(poll_s)
    return codes
