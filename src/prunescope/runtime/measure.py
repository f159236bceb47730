"""Timing the inference formats of one level: per layer, then end to end.

Every format runs on the same test images after a warm-up, and the repetitions of the
formats are interleaved (each round runs every format once, in a rotated order), so that
machine noise hits all of them alike. A format whose output differs from the dense
network's is reported with its difference and *not* timed. Energy is read where the
machine exposes a counter (RAPL on a CPU, NVML on the run's GPU), over at least half a
second of back-to-back calls of each format, and left empty otherwise: never an
estimate. Peak memory is the weights plus the largest total of live allocations during
one forward pass (torch's profiler on a CPU, the allocator's peak on a GPU); it is not
measured for ONNX Runtime, whose allocations torch does not see.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunescope.runtime.formats import (
    FORMATS,
    FormatInputs,
    FormatUnavailable,
    channels_last,
    choose_hybrid,
    dense_format,
    weight_bytes,
)
from prunescope.runtime.sparse_layers import (
    bsr_fits,
    has_sparse_version,
    sparse_matrix_shape,
    sparse_version,
)

log = logging.getLogger("prunescope")

Runner = Callable[[torch.Tensor], torch.Tensor]
# A format is right when its outputs match the dense network's to float32 rounding of a
# different summation order: 1e-4 of the largest output.
TOLERANCE = 1e-4


@dataclass
class Settings:
    batch_sizes: tuple[int, ...] = (1, 64)
    threads: int = 1
    repetitions: int = 20
    warmup: int = 3
    formats: tuple[str, ...] = ("dense", "sparse", "exported", "hybrid")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    runners: dict[str, Runner], x: torch.Tensor, repetitions: int, warmup: int, energy=None
) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """Seconds per call of each runner (rounds in a rotated order), and joules per call
    (``energy``: a counter in joules; each runner measured on its own, see
    :func:`energy_per_call`)."""
    names = list(runners)
    with torch.inference_mode():
        for _ in range(warmup):
            for name in names:
                runners[name](x)
        _sync(x.device)
        seconds: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repetitions):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.perf_counter()
                runners[name](x)
                _sync(x.device)
                seconds[name].append(time.perf_counter() - t0)
        joules: dict[str, float | None] = {n: None for n in names}
        if energy is not None:
            for name in names:
                run = runners[name]
                joules[name] = energy_per_call(lambda run=run: _call_synced(run, x), energy)
    return seconds, joules


def _call_synced(run: Runner, x: torch.Tensor) -> None:
    run(x)
    _sync(x.device)


# NVML's energy counter moves in steps, about every 100 ms (issue #22; torch's
# power_draw docs give NVML sample periods of 1/6 s to 1 s by GPU), RAPL's about every
# 1 ms, while one call takes a few ms: read around one call it gives 0 or a whole step.
# Energy is read over back-to-back calls instead, from one step of the counter to the
# first step at least ENERGY_WINDOW_S later, so the error is about one batch of calls
# (POLL_S) at each end, whatever the step.
ENERGY_WINDOW_S = 0.5
POLL_S = 0.002  # calls between two reads of the counter last about this long


def energy_per_call(
    call: Callable[[], object],
    read: Callable[[], float],
    window_s: float = ENERGY_WINDOW_S,
    clock: Callable[[], float] | None = None,
) -> float | None:
    """Joules per call of ``call`` (which waits for its device): the counter ``read`` from
    one of its updates to the first update ``window_s`` or more later, over the calls run
    in between. None where the counter does not move (or wraps around) meanwhile."""
    clock = clock or time.perf_counter
    t = clock()
    call()
    batch = max(1, math.ceil(POLL_S / max(clock() - t, 1e-9)))

    def run() -> int:
        for _ in range(batch):
            call()
        return batch

    give_up = clock() + 4 * window_s + 2.0  # a counter that never moves: no energy
    e0 = before = read()
    while e0 == before:  # start at an update
        run()
        e0 = read()
        if clock() > give_up:
            return None
    t0, calls = clock(), 0
    while clock() - t0 < window_s:  # the bulk, without reads between the calls
        calls += run()
    last = e = read()
    while e == last:  # end at an update
        calls += run()
        e = read()
        if clock() > give_up:
            return None
    return (e - e0) / calls if e > e0 else None


def rapl_reader() -> Callable[[], float] | None:
    """Joules so far from the CPU package's RAPL counter, where the kernel exposes it."""
    path = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
    try:
        int(path.read_text())
    except (OSError, ValueError):
        return None
    return lambda: int(path.read_text()) / 1e6


def nvml_handle(pynvml, device: torch.device):
    """NVML's handle of the GPU that torch calls ``device``, by its UUID (else its PCI bus
    id). Not by torch's index: NVML numbers every GPU of the machine in PCI order, torch
    only the visible ones (``CUDA_VISIBLE_DEVICES``), fastest first by default. None when
    neither identifies it: no energy rather than another GPU's."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    uuid = str(getattr(props, "uuid", "") or "")
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(
                uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            )
        except Exception:
            pass
    ids = [getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device")]
    if None not in ids:
        domain, bus, dev = ids
        try:
            return pynvml.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus:02x}:{dev:02x}.0")
        except Exception:
            pass
    return None


def nvml_reader(device: torch.device) -> Callable[[], float] | None:
    """Joules so far from the NVML energy counter of ``device``'s GPU (Volta or later)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = nvml_handle(pynvml, device)
        if handle is None:
            return None
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:
        return None
    return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3


def energy_reader(device: torch.device) -> Callable[[], float] | None:
    return nvml_reader(device) if device.type == "cuda" else rapl_reader()


@torch.no_grad()
def peak_memory(model: nn.Module, run: Runner, x: torch.Tensor) -> int | None:
    """Weights plus the peak of live allocations during one call."""
    if x.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        run(x)
        return weight_bytes(model) + torch.cuda.max_memory_allocated(x.device) - base
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # the profiler's start/stop lines on stderr
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run(x)
    live = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return weight_bytes(model) + peak


def layer_inputs(model: nn.Module, layers: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        modules[name].register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, args[0].detach())
        )
        for name in layers
    ]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def time_layers(
    model: nn.Module, layers: list[str], x: torch.Tensor, s: Settings
) -> dict[str, dict[str, float]]:
    """Median ms per call of each layer as dense, CSR and (where the shape divides) BSR."""
    modules = dict(model.named_modules())
    inputs = layer_inputs(model, layers, x)
    out = {}
    for layer in layers:
        m = modules[layer]
        dense = copy.deepcopy(m).eval()
        inp = inputs[layer]
        if isinstance(m, nn.Conv2d):
            dense = dense.to(memory_format=torch.channels_last)
            inp = inp.contiguous(memory_format=torch.channels_last)
        runners = {"dense": dense, "sparse": sparse_version(m, "csr")}
        if bsr_fits(sparse_matrix_shape(m)):
            runners["sparse_bsr"] = sparse_version(m, "bsr")
        seconds, _ = time_interleaved(runners, inp, s.repetitions, s.warmup)
        out[layer] = {name: 1e3 * statistics.median(t) for name, t in seconds.items()}
    return out


def check(run: Runner, x: torch.Tensor, reference: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((run(x).float().to(reference.device) - reference).abs().max())


def measure_batch(
    model: nn.Module,
    exported: nn.Module | None,
    layers: list[str],
    stage_of: dict[str, str],
    x: torch.Tensor,
    s: Settings,
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """One level at one batch size: (format rows, per-layer latencies). Layers without a
    sparse version stay dense in the sparse and hybrid formats (said once)."""
    device = x.device
    model = copy.deepcopy(model).eval().float()
    modules = dict(model.named_modules())
    dense_only = [layer for layer in layers if not has_sparse_version(modules[layer])]
    if dense_only:
        say_once(
            f"runtime: {len(dense_only)} layer(s) have no sparse version and stay dense in the "
            f"sparse formats ({', '.join(dense_only[:3])}: {type(modules[dense_only[0]]).__name__})"
        )
        layers = [layer for layer in layers if layer not in dense_only]
    dense = dense_format(model)
    xd = (
        x.contiguous(memory_format=torch.channels_last)
        if channels_last(model) and x.dim() == 4
        else x
    )
    with torch.inference_mode():
        reference = dense(xd).float()
    layer_ms = time_layers(model, layers, x, s)
    choice = choose_hybrid(layer_ms, stage_of)
    inputs = FormatInputs(model, exported, layers, choice, x, xd, s.threads)
    built = {"dense": (dense, dense, xd)}  # the reference every format is checked against
    for name in s.formats:
        fmt = FORMATS[name]
        if name == "dense" or device.type not in fmt.devices:
            continue
        try:
            made = fmt.build(inputs)
        except FormatUnavailable as exc:
            say_once(f"runtime: {name} left out: {str(exc)[:200]}")
            continue
        if made is not None:
            built[name] = made
    diffs = {name: check(run, inp, reference) for name, (_, run, inp) in built.items()}
    scale = float(reference.abs().max()) or 1.0
    right = {n for n, d in diffs.items() if d <= TOLERANCE * scale}
    energy = energy_reader(device)
    runners = {n: (lambda _x, r=built[n][1], i=built[n][2]: r(i)) for n in built if n in right}
    seconds, joules = time_interleaved(runners, x, s.repetitions, s.warmup, energy)
    rows = []
    for name, (module, run, inp) in built.items():
        t = seconds.get(name)
        rows.append(
            {
                "format": name,
                "latency_ms": 1e3 * statistics.median(t) if t else math.nan,
                "latency_ms_p90": 1e3 * _p90(t) if t else math.nan,
                "repetitions": len(t) if t else 0,
                "weight_bytes": weight_bytes(module) if module is not None else _onnx_bytes(model),
                "peak_memory_bytes": peak_memory(module, run, inp) if module is not None else None,
                "energy_j": joules.get(name),
                "max_abs_diff": diffs[name],
                "choice": choice if name == "hybrid" else None,
            }
        )
    return rows, layer_ms


_SAID: set[str] = set()


def say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        log.warning("%s", message)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def _onnx_bytes(model: nn.Module) -> int:
    """ONNX Runtime holds the dense network's weights."""
    return weight_bytes(model)
