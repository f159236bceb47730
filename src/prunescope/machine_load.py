"""Is this machine busy? Timings taken under load mean little (measured on this project's
2-core VM: a ResNet-20 CIFAR-10 epoch took 26.1 s with a test suite running beside it and
13.3 s without), so ``run``,
``analyze``, ``runtime`` and ``branch`` say so once, when the command has passed its checks
(a refused command stays one line), and the run-time analysis records the load it
measured under (``runtime_conditions.csv``), which its finding states."""

from __future__ import annotations

import logging
import os

from prunescope.training.precision import available_cores

log = logging.getLogger("prunescope")


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy() -> str | None:
    """A line when more runnable work than cores is waiting (load above the cores this
    process may use), else None."""
    load, cores = load_average(), available_cores()
    if load is None or load <= cores:
        return None
    return (
        f"this machine is busy (load {load:.1f} on {cores} core{'s' if cores > 1 else ''}): "
        f"training and analyses run slower, and run-time measurements are taken under load"
    )


def say_if_busy() -> None:
    if line := busy():
        log.warning(line)
