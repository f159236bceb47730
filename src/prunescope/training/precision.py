"""Numeric precision and the other per-machine speed settings: bf16 autocast, threads.

``train.precision = "auto"`` means bf16 autocast wherever the device has fast
bf16 arithmetic (detected, not assumed): a CUDA GPU of compute capability 8.0 or later
(Ampere on; older GPUs only emulate bf16), or a CPU
with AMX or AVX-512 BF16 (what it gains is measured by ``bench/train_speed.py``,
see BENCHMARKS.md). Weights, optimizer state, masks and saved files stay fp32
under autocast; only the matrix products run in bf16.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

log = logging.getLogger("prunescope")

PRECISIONS = ("fp32", "bf16", "auto")


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16 on this CPU (torch's own CPU feature detection)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        caps = get()
        return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


def cuda_has_fast_bf16(device: torch.device) -> bool:
    """bf16 tensor cores on the run's GPU: compute capability 8.0 (Ampere) or later.

    Not ``torch.cuda.is_bf16_supported()``: by default (``including_emulation=True``, torch
    2.13's ``torch/cuda/__init__.py``) it says yes wherever a bf16 tensor can be made, so
    on a V100 or T4 (7.x) too, which only emulate bf16 (slower than fp32 there), and it
    asks about ``torch.cuda.current_device()``, not necessarily the run's GPU."""
    if not torch.cuda.is_available():
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    return tuple(torch.cuda.get_device_capability(index)) >= (8, 0)


def has_fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return cuda_has_fast_bf16(device)
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve_precision(setting: str, device: torch.device) -> str:
    """ "fp32" or "bf16" for this device: ``auto`` picks bf16 only where it is fast."""
    if setting == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    return setting


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"`` (CUDA or CPU), otherwise nothing."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Every core this process may use, or fewer where ``OMP_NUM_THREADS`` says so (a
    scheduler's or a parallel test runner's share of the machine)."""
    cores = available_cores()
    try:
        omp = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        omp = 0
    return min(cores, omp) if omp > 0 else cores


def usable_threads(wanted: int) -> int:
    """``wanted``, but at most one thread per core this process may use (with one line
    when that is fewer).

    Why at most the cores: measured with torch 2.13.0+cpu on this project's 2-core VM, 3
    threads crashed fp32 training of a ResNet-8 on CIFAR-10 in 3 of 3 runs (SIGSEGV or
    SIGABRT in backward) and gave bf16 training a different accuracy every repetition; 5
    threads crashed at once (plain torch, random data); 1, 2 and 4 were stable and
    reproducible. More threads than cores only measure contention anyway. The CI suite
    crashed three times this way (a test that asked for cores + 1 threads left them set
    for the tests after it)."""
    cores = available_cores()
    if wanted > cores:
        log.warning(
            "threads = %d: more than the %d cores this process may use; using %d",
            wanted,
            cores,
            cores,
        )
    return min(wanted, cores)


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (the on-device loader runs on them too), never more
    than the cores (see ``usable_threads``); returns the count."""
    n = usable_threads(threads or default_threads())
    torch.set_num_threads(n)
    return n
