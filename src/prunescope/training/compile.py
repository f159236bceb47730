"""``torch.compile`` for the training step: when to use it, its cache, and falling back.

The compiled graphs are cached in the user's cache folder (``TORCHINDUCTOR_CACHE_DIR``
when set, else ``~/.cache/prunescope/inductor``), never in a run directory: a
resumed run reuses what an earlier process compiled, and compiled code from a
run directory someone else handed over is never loaded. Where compiling fails
(no C compiler, an unsupported op), training goes on eagerly after one line.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("prunescope")


def compile_wanted(setting: bool | str, device: torch.device, total_steps: int) -> bool:
    """``true``/``false`` as given; ``auto``: on CUDA, not on a CPU.

    Measured on this project's 2-core AVX-512 BF16 CPU (``bench/train_speed.py``, ResNet-20,
    1 thread): compiling took 88-104 s and gave no steady-state gain (1.44x vs 1.40x the
    plain loop in fp32, 2.26x vs 2.27x in bf16), so on a CPU "auto" stays eager whatever the
    run's length (``total_steps``, kept for devices where it would matter)."""
    if setting != "auto":
        return bool(setting)
    return device.type == "cuda"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or Path(base) / "prunescope" / "inductor")


def compile_model(model: nn.Module) -> nn.Module:
    """The compiled module (it shares its parameters with ``model``)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir()))
    return torch.compile(model)


class GuardedForward:
    """Calls the compiled module, and on the first call's failure falls back to the eager one
    for good, with one line; the first call's time (which includes compiling) is logged."""

    def __init__(self, eager: nn.Module, compiled: nn.Module | None):
        self.eager = eager
        self.compiled = compiled
        self.first = compiled is not None

    @property
    def active(self) -> bool:
        return self.compiled is not None

    def run(self, step: Callable[[nn.Module], object]) -> object:
        """``step(module)`` with the compiled module (or the eager one after a failure)."""
        if self.compiled is None:
            return step(self.eager)
        if not self.first:
            return step(self.compiled)
        start = time.perf_counter()
        try:
            out = step(self.compiled)
        except Exception as exc:  # a compile failure surfaces at the first call
            log.warning(
                "torch.compile failed (%s: %s); training eagerly instead",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            self.compiled = None
            self.first = False
            return step(self.eager)
        self.first = False
        log.info(
            "torch.compile: first step took %.1fs (compiling included)", time.perf_counter() - start
        )
        return out
