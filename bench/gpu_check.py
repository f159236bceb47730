"""The GPU path checked in one run, correctness first and speed after (issue #22).

    python bench/gpu_check.py --out DIR                       # CUDA: under 6 minutes on an H100
    python bench/gpu_check.py --device cpu --quick --out DIR  # the same code on a CPU, tiny
    python bench/gpu_check.py --only trainer_captured,cli_end_to_end --out DIR  # a rerun
    python bench/gpu_check.py --list                          # the checks and their budgets

Each check prints one line, ``STATUS name: detail``:

    PASS   correct, and fast enough where it has a speed threshold
    FAIL   it ran and the answer is wrong
    ERROR  it raised: the exception and the deepest prunescope frame (file:line)
    SLOW   correct, but below its speed threshold
    SKIP   not applicable here (no CUDA, no NCCL, compiling on a CPU) or no time left

``DIR/gpu_check.json`` is rewritten after every check, so a run cut short keeps what it
did: the machine, the torch/CUDA/cuDNN/NCCL versions, and every check with its status,
detail, seconds and numbers. Every check runs in its own ``try`` (one failure never stops
the others) under a time budget (SIGALRM ends it as an ERROR that says where it was);
``--time-limit`` caps the whole run, and the checks left when it is spent are SKIPs.
The exit code is 1 when a check FAILs or ERRORs, else 0.

``--device cpu --quick`` runs every check's code on a CPU with tiny sizes (a ResNet-8 on
16-pixel images instead of a ResNet20 on 32): what needs CUDA (a captured graph, NCCL,
GPU busy time) is SKIPped or left unjudged there, so that a typo in a check shows here
rather than on a GPU, whose sessions are short and rare.
"""

from __future__ import annotations

import os

# before torch starts the profiler: its start/stop lines would go to stderr on every use
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import argparse
import contextlib
import copy
import faulthandler
import gc
import json
import logging
import math
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import prunescope
from gpu import pruned_model, synthetic_data, what_ran
from prunescope import distributed
from prunescope.analysis.similarity import (
    CrossStats,
    SelfStats,
    as_rows,
    capture,
    materialised_metrics,
    similarity_metrics,
)
from prunescope.analysis.zeroing import exact_float32, zeroing_fast, zeroing_naive
from prunescope.config import build_config
from prunescope.data.loader import AUGMENT_IMAGES
from prunescope.export import export_model
from prunescope.models import build_model
from prunescope.models.vgg import VGG
from prunescope.pruning.masks import Masker, prunable_weight_keys
from prunescope.rundir.layout import cpu_name
from prunescope.runtime.analysis import synthetic_state
from prunescope.runtime.formats import dense_format
from prunescope.runtime.measure import TOLERANCE, Settings, measure_batch
from prunescope.training.device_step import WARMUP_STEPS, DeviceStep
from prunescope.training.precision import resolve_precision
from prunescope.training.trainer import EpochResult, Trainer

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(prunescope.__file__).resolve().parent
STATUSES = ("PASS", "FAIL", "ERROR", "SLOW", "SKIP")
SEED, SPARSITY = 0, 0.8

# -- thresholds (each check's detail and numbers say which one it used) ------------------------
LOADER_TOL = 1e-5  # float rounding of the normalising multiply-add; a wrong crop moves ~1
GRAD_TOL = 1e-3  # gradient error relative to the tensor's largest entry, fp32 without TF32
CAPTURE_TOL = 1e-3  # weights after 2 epochs, captured vs eager, relative to the tensor's largest
EXPORT_TOL = 1e-5  # DESIGN §11: the export's outputs equal the masked level's within 1e-5
SIMILARITY_TOL = 1e-9  # float64 sums streamed on the device vs materialised on the CPU
ZEROING_LOSS_TOL = 1e-5  # mean loss per image, as tests/test_zeroing.py
MAX_SYNCS_PER_EPOCH = 8  # the epoch's statistics are read once; a sync per step is a bug
MAX_CAPTURED_LAUNCHES = 10  # per step of a replayed graph: the replay and the input copies
# images/s of the captured Trainer (bf16, channels_last) at batch 512 (issue #22); other GPUs
# get no judgement unless --target says what to expect
TARGETS = {"H100": 100_000.0, "H200": 100_000.0}
TARGET_BATCH = 512


# -- sizes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    arch: tuple[str, int]  # model, image size
    batch: int  # training batch of the Trainer checks
    grad_batch: int  # gradient parity (the CPU computes it too)
    epoch_steps: int  # trainer_eager / trainer_captured: steps per epoch (2 epochs)
    parity_steps: int  # capture_vs_eager: steps per epoch (2 epochs)
    profile_steps: int
    speed_steps: int  # steps per timed epoch
    speed_epochs: int  # timed epochs after the warm-up
    eval_images: int  # zeroing, similarity
    eval_batch: int
    zeroing_layers: int
    zeroing_neurons: int
    runtime_batch: int
    repetitions: int


FULL = Sizes(("resnet20", 32), 512, 64, 40, 12, 10, 50, 3, 512, 128, 3, 8, 64, 5)
QUICK = Sizes(("resnet8", 16), 16, 8, 4, 3, 2, 3, 1, 32, 16, 2, 3, 4, 3)


@dataclass
class Ctx:
    device: torch.device
    quick: bool
    out: Path
    sizes: Sizes
    target: float | None  # images/s below which the captured Trainer is SLOW
    floor: float | None = None  # the bare captured step's images/s, once measured

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


# -- records, budgets and errors ---------------------------------------------------------------
class Skipped(Exception):
    """Raised by a check that does not apply here; its message says why."""


class OverBudget(BaseException):
    """Raised by SIGALRM when a check outlives its budget. A BaseException: the fallbacks
    under test (GuardedForward, DeviceStep's capture) catch Exception, and must not hide it."""


@dataclass
class Record:
    name: str
    budget_s: float
    status: str = "SKIP"
    detail: str = ""
    seconds: float = 0.0
    numbers: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: dict | None = None

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"


Outcome = tuple[str, str]
Check = Callable[[Ctx, Record], Outcome]


def verdict(problems: list[str], ok: str) -> Outcome:
    return ("FAIL", "; ".join(problems)) if problems else ("PASS", ok)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(_signum, _frame):
        raise OverBudget()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def short_path(filename: str) -> str:
    path = Path(filename).resolve()
    if path.is_relative_to(PACKAGE):
        return f"prunescope/{path.relative_to(PACKAGE)}"
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    return path.name


def deepest_frame(frames: list[traceback.FrameSummary]) -> str:
    """The deepest prunescope frame as ``file:line`` (else this script's, else the last)."""
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(PACKAGE)]
    here = [f for f in frames if Path(f.filename).resolve() == Path(__file__).resolve()]
    frame = (ours or here or frames)[-1]
    return f"{short_path(frame.filename)}:{frame.lineno}"


def error_info(exc: BaseException) -> dict:
    text = str(exc).strip()
    return {
        "type": type(exc).__name__,
        "message": text.splitlines()[0][:400] if text else "",
        "where": deepest_frame(traceback.extract_tb(exc.__traceback__)),
        "traceback": "".join(traceback.format_exception(exc)[-30:]),
    }


class Collect(logging.Handler):
    """prunescope's warnings during a check (a compile or capture that fell back says so)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage()[:300])


def run_check(ctx: Ctx, name: str, check: Check, budget: float) -> Record:
    rec = Record(name, round(budget, 1))
    logger, collect = logging.getLogger("prunescope"), Collect()
    logger.addHandler(collect)
    # SIGALRM waits for a call into C to return; one that hangs (a collective, a driver
    # call) gets every thread's stack printed to stderr instead
    faulthandler.dump_traceback_later(budget + 20, exit=False)
    start = time.perf_counter()
    try:
        with time_limit(budget):
            rec.status, rec.detail = check(ctx, rec)
    except Skipped as exc:
        rec.status, rec.detail = "SKIP", str(exc)
    except OverBudget as exc:
        rec.error = error_info(exc)
        rec.status = "ERROR"
        rec.detail = f"over its budget of {budget:.0f}s (at {rec.error['where']})"
    except Exception as exc:
        rec.error = error_info(exc)
        rec.status = "ERROR"
        rec.detail = f"{rec.error['type']}: {rec.error['message']} (at {rec.error['where']})"
    finally:
        faulthandler.cancel_dump_traceback_later()
        rec.seconds = round(time.perf_counter() - start, 3)
        logger.removeHandler(collect)
        rec.warnings = collect.lines
        tidy(ctx)
    if rec.status == "FAIL" and rec.warnings:  # e.g. why a capture or a compile fell back
        rec.detail += f" [prunescope warned: {rec.warnings[0][:200]}]"
    return rec


def tidy(ctx: Ctx) -> None:
    """Free what a check left (memory, compiled graphs) so the next one starts clean."""
    gc.collect()
    with contextlib.suppress(Exception):  # after a CUDA error the context may be gone
        torch._dynamo.reset()
        if ctx.cuda:
            torch.cuda.synchronize(ctx.device)
            torch.cuda.empty_cache()


# -- counting host syncs -----------------------------------------------------------------------
# ops that make the host wait for the device: reading a value (item, float(), tolist) and ops
# whose output size depends on the values
WAITING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2"}


def caller() -> str:
    """Where an op was called: the deepest prunescope frame, else the deepest non-torch one."""
    frame, fallback = sys._getframe(2), None
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(PACKAGE):
            return f"{short_path(str(path))}:{frame.f_lineno}"
        if fallback is None and "torch" not in path.parts and path.name != "gpu_check.py":
            fallback = f"{short_path(str(path))}:{frame.f_lineno}"
        frame = frame.f_back
    return fallback or "?"


class SyncCounter(TorchDispatchMode):
    """Counts the ops that wait for ``device`` and where they were called. On a CPU nothing
    waits: the count says what would on CUDA. On CUDA, torch's sync debug mode adds the
    waits inside C++ (copies to the host, stream synchronisations)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.where: Counter[str] = Counter()
        self.debug: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if waits(func.overloadpacket.__name__, args, kwargs or {}, self.device):
            self.where[caller()] += 1
        return func(*args, **(kwargs or {}))

    @property
    def count(self) -> int:
        return max(sum(self.where.values()), sum(self.debug.values()))

    def top(self, n: int = 4) -> dict[str, int]:
        """Where most waits were called (from the count that saw more of them)."""
        source = self.debug if sum(self.debug.values()) > sum(self.where.values()) else self.where
        return dict(source.most_common(n))


def waits(name: str, args: tuple, kwargs: dict, device: torch.device) -> bool:
    """Whether this op makes the host wait for ``device``."""
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if first is None:
        return False
    if name in WAITING_OPS:
        return first.device.type == device.type
    if device.type != "cuda":
        return False
    if name == "_to_copy":  # .cpu(), .to("cpu")
        target = kwargs.get("device")
        return first.device.type == "cuda" and target is not None and target.type == "cpu"
    if name == "copy_":  # a host tensor filled from the device
        source = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else None
        return first.device.type == "cpu" and source is not None and source.device.type == "cuda"
    return False


@contextlib.contextmanager
def counting_syncs(device: torch.device) -> Iterator[SyncCounter]:
    counter = SyncCounter(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with counter:
                yield counter
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            counter.debug[f"{short_path(w.filename)}:{w.lineno}"] += 1


# -- a pruned model in training, as Trainer.fit runs it ----------------------------------------
@dataclass
class Training:
    trainer: Trainer
    optimizer: torch.optim.Optimizer
    masker: Masker
    masks: dict[str, torch.Tensor]
    step: DeviceStep | None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None

    def epoch(self, epoch: int) -> EpochResult:
        """One epoch exactly as ``Trainer.fit`` runs it (one device step for the phase)."""
        return self.trainer.train_epoch(
            epoch, self.optimizer, self.scheduler, self.masker, device_step=self.step
        )

    @property
    def graph(self) -> bool:
        return self.step is not None and self.step.graph is not None

    def ran(self) -> dict[str, bool]:
        return what_ran(self.trainer, self.step)


def training(ctx: Ctx, steps: int, *settings: str, epochs: int = 2) -> Training:
    """The real Trainer on a pruned model and synthetic data of ``steps`` batches an epoch."""
    s = ctx.sizes
    cfg = build_config(
        preset="cpu-resnet20-cifar10",
        overrides=[
            f"device={ctx.device.type}",
            f"train.batch_size={s.batch}",
            f"seed={SEED}",
            *settings,
        ],
    )
    data = synthetic_data(s.batch * steps, s.eval_batch, s.arch[1])
    model, masks = pruned_model(SPARSITY, *s.arch)
    trainer = Trainer(model, cfg, data, ctx.device, total_epochs=epochs)
    optimizer = trainer.new_optimizer()
    masker = Masker(trainer.model, masks)
    step = trainer.device_step(optimizer, masker, 0, False) if trainer.captured else None
    scheduler = None if step else trainer.scheduler(optimizer, 0)
    return Training(trainer, optimizer, masker, masks, step, scheduler)


def warmup_epochs(ctx: Ctx, steps: int) -> int:
    """Epochs before a measurement: the device step captures its graph after WARMUP_STEPS
    eager steps, so on CUDA enough epochs to replay it once; on a CPU one (cuDNN-free, no
    graph to capture)."""
    return max(1, math.ceil((WARMUP_STEPS + 1) / steps)) if ctx.cuda else 1


def randomise_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """BatchNorm statistics and affine parameters away from their initial 0/1, so that an
    ablation or an empty neuron changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def eval_batches(ctx: Ctx, n: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    s = ctx.sizes
    data = synthetic_data(s.batch, n or s.eval_images, s.arch[1])
    return list(data.loader(data.test_x, data.test_y, s.eval_batch, ctx.device))


def largest_relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    """The largest |a - b| relative to the largest |b| of its tensor, and which tensor."""
    worst, where = 0.0, ""
    for key, ref in b.items():
        if not ref.is_floating_point():
            continue
        scale = float(ref.abs().max())
        err = float((a[key].to(ref.device) - ref).abs().max()) / scale if scale else 0.0
        if err > worst:
            worst, where = err, key
    return worst, where


def prunable_layers(model: nn.Module) -> list[str]:
    return [k.removesuffix(".weight") for k in prunable_weight_keys(model, ["fc"])]


# -- the checks: correctness -------------------------------------------------------------------
def check_device(ctx: Ctx, rec: Record) -> Outcome:
    """The machine, and what ``train.precision = "auto"`` resolves to on it."""
    info = device_info(ctx.device)
    precision = resolve_precision("auto", ctx.device)
    rec.numbers.update(info, precision_auto=precision)
    if not ctx.cuda:
        return "PASS", f"{info['name']} ({torch.get_num_threads()} threads), auto={precision}"
    detail = (
        f"{info['name']} (sm_{info['capability'].replace('.', '')}, "
        f"{info['memory_gib']:.0f} GiB, {info['count']} GPU), auto={precision}, "
        f"CUDA {torch.version.cuda}, cuDNN {info['cudnn']}, NCCL {info['nccl']}"
    )
    if torch.cuda.get_device_capability(ctx.device) >= (8, 0) and precision != "bf16":
        return "FAIL", f"train.precision=auto gives {precision} on a bf16 GPU: {detail}"
    return "PASS", detail


def check_loader_parity(ctx: Ctx, rec: Record) -> Outcome:
    """The DeviceLoader's training batches on the device equal the CPU's (same seed, epoch):
    the first batch, the first of the second augmented chunk, and the last."""
    s = ctx.sizes
    per_chunk = max(1, AUGMENT_IMAGES // s.batch)
    data = synthetic_data(s.batch * (per_chunk + 2), 8, s.arch[1])

    def loader(device: torch.device):
        return data.loader(
            data.train_x, data.train_y, s.batch, device, train=True, seed=SEED, channels_last=True
        )

    on_device, on_cpu = loader(ctx.device), loader(torch.device("cpu"))
    wanted = {0, per_chunk, len(on_device) - 1}
    worst, labels, layout = 0.0, True, True
    for i, ((xd, yd), (xc, yc)) in enumerate(zip(on_device.epoch(1), on_cpu.epoch(1), strict=True)):
        if i in wanted:
            worst = max(worst, float((xd.cpu() - xc).abs().max()))
            labels &= torch.equal(yd.cpu(), yc)
            layout &= xd.is_contiguous(memory_format=torch.channels_last)
    rec.numbers.update(batches=sorted(wanted), max_abs_diff=worst, tolerance=LOADER_TOL)
    problems = [] if labels else ["labels differ"]
    problems += [] if worst <= LOADER_TOL else [f"images differ by up to {worst:.3g}"]
    problems += [] if layout else ["batches not channels_last"]
    return verdict(problems, f"batches {sorted(wanted)} equal (max |diff| {worst:.2g})")


def one_step_gradients(
    model: nn.Module,
    masks: dict,
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    channels_last: bool,
) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and masked gradients of one training step of a copy of ``model``."""
    model = copy.deepcopy(model).to(device).train()
    x, y = batch[0].to(device), batch[1].to(device)
    if channels_last:  # the layout the Trainer uses
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    Masker(model, masks).mask_grads()
    return float(loss.detach()), {k: p.grad.detach().cpu() for k, p in model.named_parameters()}


def check_gradient_parity(ctx: Ctx, rec: Record) -> Outcome:
    """One step's gradients of a pruned model on the device vs the CPU, fp32 without TF32
    (on a CPU: channels_last vs the contiguous layout)."""
    s = ctx.sizes
    model, masks = pruned_model(SPARSITY, *s.arch)
    data = synthetic_data(s.grad_batch * 2, 8, s.arch[1])
    cpu = torch.device("cpu")
    loader = data.loader(data.train_x, data.train_y, s.grad_batch, cpu, train=True, seed=SEED)
    batch = next(iter(loader.epoch(0)))
    with exact_float32():
        ref_loss, ref = one_step_gradients(model, masks, batch, cpu, channels_last=False)
        loss, got = one_step_gradients(model, masks, batch, ctx.device, channels_last=True)
    worst, where = largest_relative(got, ref)
    leaked = sum(int((got[k][~m] != 0).sum()) for k, m in masks.items())
    rec.numbers.update(
        max_relative_error=worst, at=where, loss=loss, cpu_loss=ref_loss, pruned_grads=leaked
    )
    problems = [] if worst <= GRAD_TOL else [f"gradients differ by {worst:.3g} at {where}"]
    problems += [] if not leaked else [f"{leaked} pruned gradients nonzero"]
    return verdict(problems, f"max relative error {worst:.2g} (tolerance {GRAD_TOL:g})")


def masking_problems(ts: Training) -> tuple[dict[str, int], list[str]]:
    """After training: pruned weights and their momentum at +0.0, masks in their weights'
    layout, convolution weights channels_last."""
    params = dict(ts.trainer.model.named_parameters())
    n = Counter()
    for key, mask in ts.masks.items():
        p, dead = params[key].detach(), ~mask.to(params[key].device)
        n["pruned_nonzero"] += int((p[dead] != 0).sum())
        n["pruned_negative_zero"] += int(torch.signbit(p[dead]).sum())
        buf = ts.optimizer.state.get(params[key], {}).get("momentum_buffer")
        n["momentum_nonzero"] += 0 if buf is None else int((buf[dead] != 0).sum())
    for p, m in zip(ts.masker.params, ts.masker.masks, strict=True):
        n["mask_layout_mismatch"] += int(p.stride() != m.stride())
        n["weights_not_channels_last"] += int(
            p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last)
        )
    return dict(n), [f"{v} {k.replace('_', ' ')}" for k, v in n.items() if v]


def trainer_epochs(ctx: Ctx, rec: Record, capture: bool) -> Outcome:
    """Two epochs of the real Trainer (precision auto, channels_last): host syncs of each,
    then the masks' invariants."""
    s = ctx.sizes
    flag = "true" if capture else "false"
    ts = training(ctx, s.epoch_steps, f"train.capture={flag}", "train.compile=false")
    syncs, where, results = [], {}, []
    for epoch in range(2):
        with counting_syncs(ctx.device) as counter:
            results.append(ts.epoch(epoch))
        syncs.append(counter.count)
        where = counter.top()
    counts, problems = masking_problems(ts)
    steady = results[-1]
    rec.numbers.update(
        steps_per_epoch=s.epoch_steps,
        syncs_per_epoch=syncs,
        syncs_where=where,
        train_loss=steady.train_loss,
        precision=ts.trainer.precision,
        **counts,
        **ts.ran(),
    )
    if not all(math.isfinite(r.train_loss) for r in results):
        problems.append("non-finite training loss")
    if ctx.cuda and syncs[-1] > MAX_SYNCS_PER_EPOCH:
        problems.append(f"{syncs[-1]} host syncs in an epoch of {s.epoch_steps} steps ({where})")
    if ctx.cuda and capture and not ts.graph:
        problems.append("no CUDA graph was captured: the step ran eagerly")
    judged = "" if ctx.cuda else " (not judged on a CPU: nothing waits)"
    return verdict(
        problems,
        f"syncs per epoch {syncs}{judged}, pruned weights and momentum 0, masks in layout"
        + (f", graph {'captured' if ts.graph else 'not captured (CPU)'}" if capture else ""),
    )


def check_trainer_eager(ctx: Ctx, rec: Record) -> Outcome:
    """Two epochs of the eager Trainer: one host sync per statistic an epoch, masks kept."""
    return trainer_epochs(ctx, rec, capture=False)


def check_trainer_captured(ctx: Ctx, rec: Record) -> Outcome:
    """Two epochs with train.capture: a graph captured, no sync per step, masks kept."""
    return trainer_epochs(ctx, rec, capture=True)


@contextlib.contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """Deterministic convolutions: two runs then differ only where the code differs."""
    saved = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic = saved


def two_epochs(ctx: Ctx, capture: bool) -> tuple[Training, list[EpochResult]]:
    flag = "true" if capture else "false"
    settings = ("train.precision=fp32", "train.compile=false", f"train.capture={flag}")
    ts = training(ctx, ctx.sizes.parity_steps, *settings)
    return ts, [ts.epoch(e) for e in range(2)]


def check_capture_vs_eager(ctx: Ctx, rec: Record) -> Outcome:
    """``train.capture=true`` against the eager loop (fp32, no TF32, deterministic cuDNN):
    the same weights after two epochs within a tolerance, and a CUDA graph really captured."""
    with exact_float32(), deterministic_cudnn():
        eager, eager_rows = two_epochs(ctx, capture=False)
        captured, rows = two_epochs(ctx, capture=True)
    worst, where = largest_relative(
        captured.trainer.model.state_dict(), eager.trainer.model.state_dict()
    )
    loss_diff = max(
        abs(a.train_loss - b.train_loss) / max(abs(b.train_loss), 1e-12)
        for a, b in zip(rows, eager_rows, strict=True)
    )
    lrs = [r.lr for r in rows] == [r.lr for r in eager_rows]
    rec.numbers.update(
        max_relative_weight_diff=worst,
        at=where,
        train_loss_relative_diff=loss_diff,
        rows={"eager": [asdict(r) for r in eager_rows], "captured": [asdict(r) for r in rows]},
        graph_captured=captured.graph,
        steps_per_epoch=ctx.sizes.parity_steps,
    )
    problems = [] if worst <= CAPTURE_TOL else [f"weights differ by {worst:.3g} at {where}"]
    problems += [] if loss_diff <= CAPTURE_TOL else [f"train loss differs by {loss_diff:.3g}"]
    problems += [] if lrs else ["learning rates differ"]
    if ctx.cuda and not captured.graph:
        problems.append("no CUDA graph was captured")
    graph = "graph captured" if captured.graph else "no graph (CPU)"
    return verdict(problems, f"max relative weight diff {worst:.2g} after 2 epochs, {graph}")


# -- export, synthetic levels, NCCL ------------------------------------------------------------
def model_with_empty_neurons() -> tuple[nn.Module, dict[str, int], dict[str, str]]:
    """A small VGG with emptied neurons, and what the export must make of them: removed
    counts per layer, and the one channel it must keep (with its reason).

    block2.conv1: channels 0-2 emit a positive constant (BN bias) into the classifier's
    Linear through the flatten (removed, the constant folded into its bias), channel 3 a
    negative one that the ReLU zeroes (removed). classifier.fc1: neurons 0-1 emit a constant
    into fc2 (folded). block1.conv1: channel 0 emits a constant into a zero-padded
    convolution (kept)."""
    torch.manual_seed(SEED)
    model = randomise_bn(VGG(((8,), (16,)), hidden=24, num_classes=10, image_size=32))
    empties = {
        ("block2.conv1", "block2.bn1"): {0: 0.7, 1: 0.7, 2: 0.7, 3: -0.5},
        ("classifier.fc1", "classifier.bn1"): {0: 0.4, 1: 0.4},
        ("block1.conv1", "block1.bn1"): {0: 0.3},
    }
    modules = dict(model.named_modules())
    with torch.no_grad():
        for (layer, bn), constants in empties.items():
            for c, value in constants.items():
                modules[layer].weight[c] = 0.0
                modules[layer].bias[c] = 0.0
                modules[bn].running_mean[c] = 0.0
                modules[bn].bias[c] = value
    removed = {"block2.conv1": 4, "classifier.fc1": 2, "block1.conv1": 0}
    kept = {"block1.conv1": "a nonzero constant into a zero-padded convolution"}
    return model.eval(), removed, kept


def check_export_fold(ctx: Ctx, rec: Record) -> Outcome:
    """``export_model`` on the device of a model whose empty neurons feed a Linear: the
    planned removals, the folded constants, and the outputs (fp32 without TF32)."""
    model, want_removed, want_kept = model_with_empty_neurons()
    model = model.to(ctx.device)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(ctx.device)
    result = export_model(model, layers, [(x, None)])
    removed = {layer: len(p.removed) for layer, p in result.plans.items()}
    kept = {layer: sorted(set(p.kept.values())) for layer, p in result.plans.items() if p.kept}
    with exact_float32(), torch.no_grad():
        ref = model(x)
        diff = float((result.small(x) - ref).abs().max()) / float(ref.abs().max())
    devices = sorted({str(p.device) for p in result.small.parameters()})
    rec.numbers.update(
        removed=removed,
        kept=kept,
        relative_diff=diff,
        prunescope_max_rel_diff=result.max_rel_diff,
        small_devices=devices,
    )
    problems = (
        [] if all(removed[k] == v for k, v in want_removed.items()) else [f"removed {removed}"]
    )
    problems += [f"{k} keeps {kept.get(k)}" for k, why in want_kept.items() if [why] != kept.get(k)]
    problems += [] if diff <= EXPORT_TOL else [f"outputs differ by {diff:.3g} (relative)"]
    problems += (
        [] if devices == [device_name(ctx.device)] else [f"exported parameters on {devices}"]
    )
    gone = {k: v for k, v in removed.items() if v}
    return verdict(problems, f"removed {gone}, folded; outputs equal to {diff:.2g} relative")


def check_synthetic_state(ctx: Ctx, rec: Record) -> Outcome:
    """``synthetic_state`` (runtime's further-pruned levels) of a state on the device equals
    the CPU's, stays on the device, and prunes exactly the share asked for."""
    model, _ = pruned_model(0.0, *ctx.sizes.arch)
    keys = prunable_weight_keys(model, ["fc"])
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    want = synthetic_state(state, keys, 0.9)
    got = synthetic_state({k: v.to(ctx.device) for k, v in state.items()}, keys, 0.9)
    total = sum(state[k].numel() for k in keys)
    zeros = sum(int((got[k] == 0).sum()) for k in keys)
    devices = sorted({str(got[k].device) for k in keys})
    equal = all(torch.equal(got[k].cpu(), want[k]) for k in keys)
    rec.numbers.update(zeros=zeros, wanted_zeros=round(0.9 * total), devices=devices)
    problems = [] if equal else ["differs from the CPU's"]
    problems += [] if zeros == round(0.9 * total) else [f"{zeros} zeros of {total}"]
    problems += [] if devices == [device_name(ctx.device)] else [f"result on {devices}"]
    return verdict(problems, f"{zeros} of {total} weights zeroed, equal to the CPU's")


def device_name(device: torch.device) -> str:
    """How a tensor on ``device`` prints its device (``cuda`` becomes ``cuda:0``)."""
    return str(torch.empty(0, device=device).device)


@contextlib.contextmanager
def one_process_group(backend: str, device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)  # set_device refuses a device without index
    store = torch.distributed.HashStore()
    torch.distributed.init_process_group(backend, store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def pretend_world(size: int) -> Iterator[None]:
    """prunescope's collectives believe they run under torchrun with ``size`` ranks: they
    then go through torch.distributed (the real code path) on a 1-process group."""
    saved = distributed.world
    distributed.world = lambda: distributed.World(0, size)
    try:
        yield
    finally:
        distributed.world = saved


def check_nccl_broadcast(ctx: Ctx, rec: Record) -> Outcome:
    """prunescope's broadcasts as a torchrun phase starts (the model state from the device,
    the masks as the runner holds them, a phase message) over NCCL on a 1-process group
    (gloo on a CPU): rank 0's values must come back unchanged."""
    if not torch.distributed.is_available():
        raise Skipped("this torch has no torch.distributed")
    backend = "nccl" if ctx.cuda else "gloo"
    if ctx.cuda and not torch.distributed.is_nccl_available():
        raise Skipped("this torch has no NCCL")
    model, masks = pruned_model(SPARSITY, *ctx.sizes.arch)
    model = model.to(ctx.device).to(memory_format=torch.channels_last)
    state = model.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    mask_copy = {k: m.clone() for k, m in masks.items()}
    with one_process_group(backend, ctx.device), pretend_world(2):
        distributed.broadcast_tensors(state)
        rec.numbers["state"] = "broadcast"
        distributed.broadcast_tensors(masks)  # CPU bool tensors, as imp.py broadcasts them
        rec.numbers["masks"] = "broadcast"
        message = distributed.broadcast_object({"masks": True, "begin": 0})
    same = all(torch.equal(state[k], before[k]) for k in state)
    same_masks = all(torch.equal(masks[k], mask_copy[k]) for k in masks)
    gpus = torch.cuda.device_count() if ctx.cuda else 0
    rec.numbers.update(backend=backend, gpus=gpus, processes=1)
    problems = [] if same else ["model state changed"]
    problems += [] if same_masks else ["masks changed"]
    problems += [] if message == {"masks": True, "begin": 0} else [f"message {message}"]
    if problems or ctx.cuda:
        note = "; 2+ GPUs here: a torchrun run would test a real transfer" if gpus >= 2 else ""
        return verdict(problems, f"nccl, 1-process group: state, masks, message intact{note}")
    raise Skipped("no NCCL on a CPU; the same broadcasts over gloo: state, masks, message intact")


# -- analyses on the device --------------------------------------------------------------------
def check_zeroing(ctx: Ctx, rec: Record) -> Outcome:
    """The zeroing engine vs the naive loop on the device, a few neurons of a few layers
    (fp32 without TF32 for both): equal correct counts, loss sums within a tolerance."""
    s = ctx.sizes
    model = randomise_bn(pruned_model(SPARSITY, *s.arch)[0]).to(ctx.device)
    layers = prunable_layers(model)[: s.zeroing_layers]
    neurons = {layer: list(range(s.zeroing_neurons)) for layer in layers}
    batches = eval_batches(ctx)
    with exact_float32():
        naive = zeroing_naive(model, layers, batches, "weights", neurons=neurons)
        fast = zeroing_fast(model, layers, batches, "weights", neurons=neurons)
    images = naive.images
    counts = sum(int((fast.correct[k] != naive.correct[k]).sum()) for k in layers)
    loss = max(float((fast.loss_sum[k] - naive.loss_sum[k]).abs().max()) / images for k in layers)
    effect = max(float((naive.loss_sum[k] - naive.base_loss_sum).abs().max()) for k in layers)
    rec.numbers.update(
        layers=layers,
        neurons=s.zeroing_neurons,
        images=images,
        correct_mismatches=counts,
        max_mean_loss_diff=loss,
        base_equal=fast.base_correct == naive.base_correct,
        largest_ablation_effect=effect / images,
    )
    problems = [] if not counts else [f"{counts} neurons' correct counts differ"]
    problems += [] if loss <= ZEROING_LOSS_TOL else [f"mean loss differs by {loss:.3g}"]
    problems += [] if fast.base_correct == naive.base_correct else ["base accuracy differs"]
    return verdict(
        problems, f"{len(layers)} layers x {s.zeroing_neurons} neurons equal (loss {loss:.2g})"
    )


def check_similarity(ctx: Ctx, rec: Record) -> Outcome:
    """The similarity analysis' float64 statistics streamed on the device vs the metrics of
    the same activations materialised on the CPU."""
    s = ctx.sizes
    a = randomise_bn(pruned_model(0.0, *s.arch)[0]).to(ctx.device)
    b = randomise_bn(pruned_model(SPARSITY, *s.arch)[0], seed=2).to(ctx.device)
    all_layers = prunable_layers(a)
    layers = sorted({all_layers[0], all_layers[len(all_layers) // 2], all_layers[-1]})
    sa: dict[str, SelfStats] = {}
    sb: dict[str, SelfStats] = {}
    ab: dict[str, CrossStats] = {}
    kept: dict[str, tuple[list, list]] = {k: ([], []) for k in layers}
    for x, _ in eval_batches(ctx):
        acts_a, acts_b = capture(a, layers, x), capture(b, layers, x)
        for k in layers:
            ra, rb = as_rows(acts_a[k]), as_rows(acts_b[k])
            sa.setdefault(k, SelfStats(ra.shape[1], x.device)).update(ra)
            sb.setdefault(k, SelfStats(rb.shape[1], x.device)).update(rb)
            ab.setdefault(k, CrossStats(ra.shape[1], rb.shape[1], x.device)).update(ra, rb)
            kept[k][0].append(ra.cpu())
            kept[k][1].append(rb.cpu())
    worst, values = 0.0, {}
    for k in layers:
        got = similarity_metrics(sa[k], sb[k], ab[k])
        want = materialised_metrics(torch.cat(kept[k][0]), torch.cat(kept[k][1]))
        values[k] = got
        for metric, v in want.items():
            worst = max(worst, abs(got[metric] - v) / max(abs(v), 1e-12))
    rec.numbers.update(layers=layers, metrics=values, max_relative_diff=worst)
    return verdict(
        [] if worst <= SIMILARITY_TOL else [f"metrics differ by {worst:.3g} (relative)"],
        f"{len(layers)} layers, 3 metrics equal to {worst:.2g} relative",
    )


def check_runtime_formats(ctx: Ctx, rec: Record) -> Outcome:
    """The runtime analysis' formats (dense, sparse, exported, hybrid) measured on the
    device as ``prunescope runtime`` measures them: each must run and agree with dense
    (prunescope leaves a format that disagrees untimed)."""
    s = ctx.sizes
    model, masks = pruned_model(0.9, *s.arch)
    model = randomise_bn(model)
    layers = [k.removesuffix(".weight") for k in masks]
    stage_of = {layer: st for st, names in model.stages.items() for layer in names}
    x = eval_batches(ctx, max(s.runtime_batch, s.eval_batch))[0][0][: s.runtime_batch]
    # exported on the CPU and moved: the export on the device is export_fold's to check
    exported = export_model(copy.deepcopy(model), layers, [(x[:8].cpu(), None)]).small
    model, exported = model.to(ctx.device), exported.to(ctx.device)
    formats = ("dense", "sparse", "exported", "hybrid")
    settings = Settings((s.runtime_batch,), torch.get_num_threads(), s.repetitions, 1, formats)
    rows, _ = measure_batch(model, exported, layers, stage_of, x, settings)
    with torch.inference_mode():
        scale = float(dense_format(model)(x).abs().max())
    found = {r["format"]: r for r in rows}
    rec.numbers.update(
        batch=s.runtime_batch,
        latency_ms={f: r["latency_ms"] for f, r in found.items()},
        max_abs_diff={f: r["max_abs_diff"] for f, r in found.items()},
        tolerance=TOLERANCE * scale,
        hybrid_choice=found.get("hybrid", {}).get("choice"),
    )
    problems = [f"{f} missing" for f in formats if f not in found]
    problems += [
        f"{f} differs by {r['max_abs_diff']:.3g} (untimed)"
        for f, r in found.items()
        if not math.isfinite(r["latency_ms"])
    ]
    times = ", ".join(f"{f} {r['latency_ms']:.3g} ms" for f, r in found.items())
    return verdict(problems, f"batch {s.runtime_batch}: {times}")


# -- profile and speed -------------------------------------------------------------------------
LAUNCHES = ("cudaLaunch", "cuLaunch", "cudaGraphLaunch", "cudaMemcpyAsync", "cudaMemsetAsync")


def union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def kernel_stats(prof, steps: int) -> dict[str, float | None]:
    """Per step: kernels run, launches from the host, top-level aten ops; and the GPU's busy
    share of the span from its first kernel to its last."""
    events = prof.events()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    launches = [e for e in events if e.name.startswith(LAUNCHES)]
    ops = [e for e in events if e.name.startswith("aten::") and e.cpu_parent is None]
    spans = [(e.time_range.start, e.time_range.end) for e in kernels]
    span = (max(b for _, b in spans) - min(a for a, _ in spans)) if spans else 0.0
    return {
        "kernels_per_step": len(kernels) / steps,
        "launches_per_step": len(launches) / steps,
        "aten_ops_per_step": len(ops) / steps,
        "gpu_busy_fraction": union_us(spans) / span if span else None,
    }


def profiled_epoch(ctx: Ctx, capture: bool) -> dict:
    from torch.profiler import ProfilerActivity, profile

    steps = ctx.sizes.profile_steps
    flag = "true" if capture else "false"
    ts = training(
        ctx, steps, "train.precision=bf16", "train.compile=false", f"train.capture={flag}"
    )
    for epoch in range(warmup_epochs(ctx, steps)):
        ts.epoch(epoch)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    with profile(activities=activities) as prof:
        result = ts.epoch(10)
    return {**kernel_stats(prof, steps), "epoch_s": result.seconds, "graph_captured": ts.graph}


def check_profile_step(ctx: Ctx, rec: Record) -> Outcome:
    """torch.profiler over one epoch of the real Trainer, eager and captured: kernels and
    launches per step, and how busy the GPU is."""
    for mode in ("eager", "captured"):
        rec.numbers[mode] = profiled_epoch(ctx, capture=mode == "captured")
    eager, captured = rec.numbers["eager"], rec.numbers["captured"]
    if not ctx.cuda:
        raise Skipped(
            f"no kernels or GPU time on a CPU; profiled aten ops per step: eager "
            f"{eager['aten_ops_per_step']:.0f}, captured {captured['aten_ops_per_step']:.0f}"
        )
    busy = {m: rec.numbers[m]["gpu_busy_fraction"] or 0.0 for m in ("eager", "captured")}
    detail = (
        f"kernels/step {eager['kernels_per_step']:.0f}, launches/step eager "
        f"{eager['launches_per_step']:.0f} vs captured {captured['launches_per_step']:.1f}, "
        f"GPU busy {busy['eager']:.0%} vs {busy['captured']:.0%}"
    )
    problems = [] if captured["graph_captured"] else ["no CUDA graph was captured"]
    if captured["launches_per_step"] > MAX_CAPTURED_LAUNCHES:
        problems.append(f"captured step launches {captured['launches_per_step']:.0f} per step")
    return ("FAIL", f"{'; '.join(problems)}: {detail}") if problems else ("PASS", detail)


SPEED = ("train.precision=bf16", "train.channels_last=true")


def trainer_speed(ctx: Ctx, rec: Record, *settings: str) -> float:
    """Images/s of whole epochs of the real Trainer (the loader, the step, the masks, the
    statistics), the median of ``speed_epochs`` after the warm-up (compile, capture)."""
    s = ctx.sizes
    epochs = s.speed_epochs + warmup_epochs(ctx, s.speed_steps)
    ts = training(ctx, s.speed_steps, *SPEED, *settings, epochs=epochs)
    start = time.perf_counter()
    for epoch in range(epochs - s.speed_epochs):
        ts.epoch(epoch)
    warmup = time.perf_counter() - start
    rates = [
        s.speed_steps * s.batch / ts.epoch(e).seconds
        for e in range(epochs - s.speed_epochs, epochs)
    ]
    rate = statistics.median(rates)
    rec.numbers.update(
        images_per_s=rate,
        epochs_images_per_s=rates,
        warmup_s=warmup,
        batch=s.batch,
        steps_per_epoch=s.speed_steps,
        settings=[*SPEED, *settings],
        **ts.ran(),
    )
    if ctx.floor:
        rec.numbers["vs_bare_floor"] = rate / ctx.floor
    return rate


def speed_line(ctx: Ctx, rate: float) -> str:
    floor = f", {rate / ctx.floor:.0%} of the bare step" if ctx.floor else ""
    return f"{rate:,.0f} images/s at batch {ctx.sizes.batch}{floor}"


def judged(ctx: Ctx, rec: Record, rate: float, problems: list[str]) -> Outcome:
    """FAIL on a mechanism that did not run, SLOW below the target, else PASS."""
    line = speed_line(ctx, rate)
    if problems:
        return "FAIL", f"{'; '.join(problems)}: {line}"
    rec.numbers["target"] = ctx.target
    if ctx.target is None:
        return "PASS", f"{line} (no target here: --target sets one)"
    if rate < ctx.target:
        return "SLOW", f"{line}, below the target {ctx.target:,.0f}"
    return "PASS", f"{line} (target {ctx.target:,.0f})"


def bare_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """Plain torch, no prunescope: one SGD step on the static ``x``, ``y`` in bf16 autocast
    (no autocast cache: a captured graph must not keep casts between replays)."""
    cuda = x.device.type == "cuda"
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, fused=cuda)

    def step() -> None:
        opt.zero_grad(set_to_none=False)
        with torch.autocast(x.device.type, torch.bfloat16, cache_enabled=False):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def check_speed_bare_captured(ctx: Ctx, rec: Record) -> Outcome:
    """The floor: a bare ResNet step (no loader, masks or statistics) captured as a CUDA
    graph (run eagerly on a CPU), each batch copied into its static inputs."""
    s = ctx.sizes
    n, size = s.batch, s.arch[1]
    model = build_model(s.arch[0], 10, 3, size).to(ctx.device)
    model = model.to(memory_format=torch.channels_last).train()

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 3, size, size, device=ctx.device)
        return x.contiguous(memory_format=torch.channels_last), torch.randint(
            0, 10, (n,), device=ctx.device
        )

    sx, sy = batch()
    pool = [batch() for _ in range(4)]
    run = capture_graph(bare_step(model, sx, sy), ctx.device)
    steps = s.speed_steps * s.speed_epochs
    sync(ctx.device)
    start = time.perf_counter()
    for i in range(steps):
        sx.copy_(pool[i % 4][0])
        sy.copy_(pool[i % 4][1])
        run()
    sync(ctx.device)
    rate = steps * n / (time.perf_counter() - start)
    ctx.floor = rate
    rec.numbers.update(images_per_s=rate, batch=n, steps=steps, graph_captured=ctx.cuda)
    if not ctx.cuda:
        raise Skipped(f"no CUDA graph on a CPU; the step run eagerly: {rate:,.0f} images/s")
    return "PASS", f"{rate:,.0f} images/s at batch {n}, one graph replay a step"


def capture_graph(step: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """``step`` captured as a CUDA graph after a warm-up (optimizer state, cuDNN's choices)
    on a side stream, as torch's CUDA graph documentation does; on a CPU, ``step``."""
    if device.type != "cuda":
        for _ in range(3):
            step()
        return step
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize(device)
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_speed_trainer_eager(ctx: Ctx, rec: Record) -> Outcome:
    """Images/s of the eager Trainer (bf16, channels_last)."""
    rate = trainer_speed(ctx, rec, "train.compile=false", "train.capture=false")
    return "PASS", speed_line(ctx, rate)


def check_speed_trainer_captured(ctx: Ctx, rec: Record) -> Outcome:
    """The captured Trainer (bf16, channels_last): SLOW below the target."""
    rate = trainer_speed(ctx, rec, "train.compile=false", "train.capture=true")
    problems = [] if rec.numbers["graph_captured"] or not ctx.cuda else ["no graph captured"]
    return judged(ctx, rec, rate, problems)


def check_speed_trainer_compiled(ctx: Ctx, rec: Record) -> Outcome:
    """Images/s of the Trainer with train.compile (bf16, channels_last); FAIL if it fell back."""
    if not ctx.cuda:
        raise Skipped("torch.compile takes minutes on a CPU (training/compile.py)")
    rate = trainer_speed(ctx, rec, "train.compile=true", "train.capture=false")
    fell_back = rec.numbers["compile_fell_back"]
    return judged(ctx, rec, rate, ["torch.compile fell back to eager"] if fell_back else [])


def check_speed_trainer_default(ctx: Ctx, rec: Record) -> Outcome:
    """What ``prunescope run`` does without settings (compile and capture ``auto``): on CUDA
    a compiled forward inside a captured step."""
    rate = trainer_speed(ctx, rec, "train.compile=auto", "train.capture=auto")
    n = rec.numbers
    problems = ["torch.compile fell back to eager"] if n["compile_fell_back"] else []
    problems += (
        ["no graph captured"] if n["capture"] and ctx.cuda and not n["graph_captured"] else []
    )
    return judged(ctx, rec, rate, problems)


# -- end to end --------------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


def run_child(cmd: list[str], deadline: float) -> dict:
    """One subprocess: exit code, seconds, and what its stderr says went wrong."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=max(5.0, deadline - time.monotonic()),
            env=child_env(),
            cwd=ROOT,
        )
        rc, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, err = "timeout", exc.stderr if isinstance(exc.stderr, str) else ""
    frames = re.findall(r'File "([^"]*prunescope[/\\][^"]+)", line (\d+)', err)
    return {
        "cmd": " ".join(cmd[1:]),
        "rc": rc,
        "seconds": round(time.perf_counter() - start, 1),
        "fell_back": [
            line
            for line in err.splitlines()
            if re.search("could not be captured|compile failed", line)
        ][:3],
        "where": f"{short_path(frames[-1][0])}:{frames[-1][1]}" if frames else None,
        "stderr_tail": err[-1500:] if rc != 0 else "",
    }


def cli_steps(ctx: Ctx, run_dir: Path) -> list[tuple[str, list[str]]]:
    """``prunescope run`` on the quickstart preset, tiny, then ``analyze`` and ``runtime``.
    torch.compile is off: compiling every level would take the check's whole budget (the
    speed checks measure it)."""
    py = [sys.executable, "-m", "prunescope"]
    dev = ctx.device.type
    sizes = ["data.train_subset=256", "data.test_subset=120", "imp.levels=2", "imp.train_epochs=2"]
    if ctx.quick:
        sizes = [
            "data.train_subset=128",
            "data.test_subset=60",
            "imp.levels=1",
            "imp.train_epochs=1",
        ]
    sets = [*sizes, "imp.pretrain_epochs=1", "imp.rate=0.4", f"device={dev}", "train.compile=false"]
    run = [
        *py,
        "run",
        "--debug",
        "--preset",
        "quickstart",
        "--run-dir",
        str(run_dir),
        "--no-analyze",
    ]
    analyze = [*py, "analyze", "--debug", str(run_dir)]
    runtime = [*py, "runtime", "--debug", str(run_dir), "--device", dev, "--synthetic", "0.9"]
    runtime += ["--set", "analysis.runtime.repetitions=3", "--set", "analysis.runtime.warmup=1"]
    if ctx.quick:  # the suite runs every analysis on a CPU; here the path of the check
        analyze += ["--only", "sparsity,zeroing"]
        runtime += ["--levels", "1", "--batch-sizes", "1,8", "--formats", "dense,sparse"]
    else:
        runtime += ["--batch-sizes", "1,64"]
    run += [item for s in sets for item in ("--set", s)]
    return [("run", run), ("analyze", analyze), ("runtime", runtime)]


def check_cli_end_to_end(ctx: Ctx, rec: Record) -> Outcome:
    """The CLI as a user runs it on this device: run -> analyze -> runtime, exit codes 0."""
    deadline = time.monotonic() + rec.budget_s - 2
    with tempfile.TemporaryDirectory(prefix="gpu_check_cli_") as tmp:
        for name, cmd in cli_steps(ctx, Path(tmp) / "run"):
            result = run_child(cmd, deadline)
            rec.numbers[name] = result
            if result["rc"] != 0:
                last = [line for line in result["stderr_tail"].splitlines() if line.strip()]
                where = f" (at {result['where']})" if result["where"] else ""
                return (
                    "FAIL",
                    f"{name} exited {result['rc']}: {last[-1][:300] if last else ''}{where}",
                )
    fell_back = [line for r in rec.numbers.values() for line in r["fell_back"]]
    seconds = ", ".join(f"{k} {v['seconds']:.0f}s" for k, v in rec.numbers.items())
    note = f"; warned: {fell_back[0][:160]}" if fell_back else ""
    return "PASS", f"run, analyze, runtime on {ctx.device.type} exited 0 ({seconds}){note}"


def check_bench_gpu_quick(ctx: Ctx, rec: Record) -> Outcome:
    """``bench/gpu.py --quick`` as a subprocess; its JSON recorded here."""
    deadline = time.monotonic() + rec.budget_s - 2
    out = ctx.out / "gpu_quick.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", ctx.device.type, "--quick"]
    result = run_child([*cmd, "--out", str(out)], deadline)
    rec.numbers["run"] = result
    if result["rc"] != 0:
        return "FAIL", f"exited {result['rc']} (at {result['where']})"
    doc = json.loads(out.read_text())
    rec.numbers["result"] = doc
    rates = {k: round(v["images_per_s"]) for k, v in doc["training"].items()}
    missing = [
        k
        for k, v in doc["training"].items()
        if v["capture"] and ctx.cuda and not v["graph_captured"]
    ]
    problems = [f"{k}: {e[:160]}" for k, e in doc["errors"].items()]
    problems += [f"{k}: no graph captured" for k in missing]
    return verdict(problems, f"images/s {rates} ({result['seconds']:.0f}s)")


# -- the run -----------------------------------------------------------------------------------
CHECKS: list[tuple[str, Check, float]] = [  # name, check, budget in seconds on an H100
    ("device", check_device, 15),
    ("loader_parity", check_loader_parity, 30),
    ("gradient_parity", check_gradient_parity, 30),
    ("trainer_eager", check_trainer_eager, 45),
    ("trainer_captured", check_trainer_captured, 45),
    ("capture_vs_eager", check_capture_vs_eager, 45),
    ("export_fold", check_export_fold, 20),
    ("synthetic_state", check_synthetic_state, 15),
    ("nccl_broadcast", check_nccl_broadcast, 30),
    ("zeroing", check_zeroing, 30),
    ("similarity", check_similarity, 30),
    ("runtime_formats", check_runtime_formats, 45),
    ("profile_step", check_profile_step, 45),
    ("speed_bare_captured", check_speed_bare_captured, 30),
    ("speed_trainer_eager", check_speed_trainer_eager, 30),
    ("speed_trainer_captured", check_speed_trainer_captured, 30),
    ("cli_end_to_end", check_cli_end_to_end, 150),
    ("speed_trainer_compiled", check_speed_trainer_compiled, 120),
    ("speed_trainer_default", check_speed_trainer_default, 90),
    ("bench_gpu_quick", check_bench_gpu_quick, 90),
]
MIN_LEFT_S = 5  # a check with less time than this left is not started
# what these checks are about needs CUDA: on a CPU they run what they can, then SKIP
CUDA_ONLY = {"nccl_broadcast", "profile_step", "speed_bare_captured", "speed_trainer_compiled"}


def device_info(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"name": cpu_name() or platform.processor() or "cpu", "cores": os.cpu_count()}
    props = torch.cuda.get_device_properties(device)
    nccl = None
    with contextlib.suppress(Exception):  # a tuple in recent torch, an int in older ones
        version = torch.cuda.nccl.version()
        nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return {
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": props.total_memory / 2**30,
        "multiprocessors": props.multi_processor_count,
        "count": torch.cuda.device_count(),
        "cudnn": torch.backends.cudnn.version(),
        "nccl": nccl,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            env.update(device_info(device))
        except Exception as exc:  # the device check will say more; the JSON still gets written
            env["device_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return env


def target_for(device: torch.device, batch: int, flag: float | None) -> float | None:
    if flag is not None:
        return flag
    if device.type != "cuda" or batch != TARGET_BATCH:
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in TARGETS.items() if k in name), None)


def clean(value):
    """JSON without NaN or infinity (strict parsers reject them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)


def write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(doc), indent=2) + "\n")
    os.replace(tmp, path)  # whole or not at all, even if the run is killed mid-write


def selected(only: str | None, skip: str | None) -> list[tuple[str, Check, float]]:
    names = [name for name, _, _ in CHECKS]
    wanted = [n.strip() for n in (only or "").split(",") if n.strip()] or names
    dropped = {n.strip() for n in (skip or "").split(",") if n.strip()}
    unknown = sorted((set(wanted) | dropped) - set(names))
    if unknown:
        raise SystemExit(f"gpu_check: unknown check(s) {unknown}; the checks: {', '.join(names)}")
    return [c for c in CHECKS if c[0] in wanted and c[0] not in dropped]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (ResNet-8, 16px)")
    p.add_argument("--out", type=Path, default=Path("gpu_check"), help="folder for the JSON")
    p.add_argument("--batch", type=int, help=f"training batch (default {FULL.batch}; quick 16)")
    p.add_argument(
        "--target", type=float, help="images/s of the captured Trainer below which it is SLOW"
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=330,
        help="seconds for all the checks (default 330: with start-up, under 6 minutes)",
    )
    p.add_argument("--only", metavar="A,B", help="run only these checks")
    p.add_argument("--skip", metavar="A,B", help="leave these checks out")
    p.add_argument("--list", action="store_true", help="print the checks and their budgets")
    return p.parse_args(argv)


def new_document(ctx: Ctx, argv: list[str]) -> dict:
    return {
        "script": "bench/gpu_check.py",
        "argv": argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "finished": None,
        "quick": ctx.quick,
        "environment": environment(ctx.device),
        "sizes": asdict(ctx.sizes),
        "target_images_per_s": ctx.target,
        "thresholds": {
            "loader_max_abs_diff": LOADER_TOL,
            "gradient_relative": GRAD_TOL,
            "capture_vs_eager_relative": CAPTURE_TOL,
            "export_relative": EXPORT_TOL,
            "similarity_relative": SIMILARITY_TOL,
            "zeroing_mean_loss": ZEROING_LOSS_TOL,
            "syncs_per_epoch": MAX_SYNCS_PER_EPOCH,
            "captured_launches_per_step": MAX_CAPTURED_LAUNCHES,
            "targets_images_per_s": TARGETS,
        },
        "cuda_only": sorted(CUDA_ONLY),
        "checks": [],
        "counts": {},
    }


def run_all(ctx: Ctx, checks: list, doc: dict, path: Path, time_limit: float) -> list[Record]:
    records, end = [], time.monotonic() + time_limit
    for name, check, budget in checks:
        left = end - time.monotonic()
        if left < MIN_LEFT_S:
            rec = Record(name, budget, "SKIP", f"no time left of --time-limit {time_limit:.0f}s")
        else:
            rec = run_check(ctx, name, check, min(budget, left))
        print(rec.line(), flush=True)
        records.append(rec)
        doc["checks"].append(asdict(rec))
        doc["counts"] = dict(Counter(r.status for r in records))
        write_json(path, doc)
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = selected(args.only, args.skip)
    if args.list:
        for name, check, budget in checks:
            summary = (check.__doc__ or "-").strip().splitlines()[0]
            print(f"{name:24} {budget:4.0f}s  {summary}")
        return 0
    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    if args.batch:
        sizes = Sizes(**{**asdict(sizes), "batch": args.batch})
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.json"
    cuda_missing = device.type == "cuda" and not torch.cuda.is_available()
    target = None if cuda_missing else target_for(device, sizes.batch, args.target)
    ctx = Ctx(device, args.quick, args.out, sizes, target)
    doc = new_document(ctx, sys.argv[1:] if argv is None else argv)
    if cuda_missing:  # one line, and the JSON says so
        rec = Record("device", 0, "FAIL", f"{args.device} asked for, but torch sees no CUDA GPU")
        print(rec.line(), flush=True)
        doc.update(checks=[asdict(rec)], counts={"FAIL": 1})
        write_json(path, doc)
        return 1
    records = run_all(ctx, checks, doc, path, args.time_limit)
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(path, doc)
    print(f"{dict(Counter(r.status for r in records))} -> {path}", flush=True)
    return 1 if any(r.status in ("FAIL", "ERROR") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
