"""The GPU path, measured in one script (a few minutes on one H100 or H200): ResNet20
training images/s on CIFAR-10-sized synthetic data in every speed setting that
``prunescope run`` can select, one full level's zeroing and similarity on 10,000 images,
and the paper's full ResNet20 study projected from them.

A training variant is a set of ``--set`` values of ``prunescope run`` (``train.precision``,
``train.channels_last``, ``train.compile``, ``train.capture``) and nothing else. Its rate is
the real epoch path, ``Trainer.train_epoch`` on a pruned ResNet20: the loader's crops and
flips, the step (eager, compiled, or the device step that ``train.capture`` captures as a
CUDA graph), the masks, and the epoch's statistics, timed one whole epoch at a time. What
really ran is recorded per variant: ``Trainer.compiled``, whether ``GuardedForward`` fell
back to eager, and whether the device step captured a CUDA graph. Variants run
interleaved, in rotated order, ``--rounds`` times (the ratio to the fp32 eager reference is
taken within each round). A variant that raises is recorded with its error and left out.

    python bench/gpu.py [--out BENCH.json]        # on a CUDA machine
    python bench/gpu.py --device cpu --quick      # the same code path, tiny (ResNet-8, 16px)

The projection: 19 levels x 155 epochs x 50,000 images at the fastest variant's rate, plus
19 levels of zeroing and similarity at the measured times (the paper trains 155 epochs per
level: 5 of pretraining, then 150); and the same at the rate of the variant that the
defaults (``auto``) select on this device.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prunescope.analysis.similarity import CrossStats, SelfStats, as_rows, capture
from prunescope.analysis.zeroing import zeroing_fast
from prunescope.config import build_config
from prunescope.data import PreparedData
from prunescope.data.registry import dataset_spec
from prunescope.models import build_model
from prunescope.pruning.magnitude import prune_masks
from prunescope.pruning.masks import Masker, apply_masks, dense_masks, prunable_weight_keys
from prunescope.rundir.layout import cpu_name
from prunescope.training.compile import compile_wanted
from prunescope.training.device import use_channels_last
from prunescope.training.device_step import WARMUP_STEPS, DeviceStep, capture_wanted
from prunescope.training.precision import resolve_precision
from prunescope.training.trainer import Trainer

PAPER_LEVELS, PAPER_EPOCHS, CIFAR_TRAIN = 19, 155, 50_000
# (model, image size): the paper's ResNet20 on CIFAR-10 sizes; --quick takes a ResNet-8 on
# 16-pixel images, the same code path at a small fraction of a CPU's time
PAPER_ARCH, QUICK_ARCH = ("resnet20", 32), ("resnet8", 16)


def settings(precision: str, channels_last: bool, compile: bool, capture: bool) -> list[str]:
    """The ``--set`` values of ``prunescope run`` that select one variant."""
    flag = {True: "true", False: "false"}
    return [
        f"train.precision={precision}",
        f"train.channels_last={flag[channels_last]}",
        f"train.compile={flag[compile]}",
        f"train.capture={flag[capture]}",
    ]


VARIANTS = {  # name -> the config settings that select it
    "fp32 eager": settings("fp32", False, False, False),  # the reference
    "bf16": settings("bf16", False, False, False),
    "bf16 channels_last": settings("bf16", True, False, False),
    "bf16 channels_last compile": settings("bf16", True, True, False),
    "bf16 channels_last capture": settings("bf16", True, False, True),
    "bf16 channels_last compile capture": settings("bf16", True, True, True),
}


def default_variant(device: torch.device) -> str | None:
    """The variant that the defaults (precision, compile and capture ``auto``, channels_last
    on) select on ``device``, when it is one of :data:`VARIANTS`."""
    precision = resolve_precision("auto", device)
    wanted = settings(
        precision,
        use_channels_last(device, True),
        compile_wanted("auto", device, 1),
        capture_wanted("auto", device, distributed=False),
    )
    return next((name for name, s in VARIANTS.items() if s == wanted), None)


def synthetic_data(n_train: int, n_test: int, size: int = 32) -> PreparedData:
    """CIFAR-10-shaped uint8 images with random labels (speed does not depend on content)."""
    g = torch.Generator().manual_seed(0)
    return PreparedData(
        spec=dataset_spec("cifar10"),
        train_x=torch.randint(0, 256, (n_train, 3, size, size), dtype=torch.uint8, generator=g),
        train_y=torch.randint(0, 10, (n_train,), generator=g),
        test_x=torch.randint(0, 256, (n_test, 3, size, size), dtype=torch.uint8, generator=g),
        test_y=torch.randint(0, 10, (n_test,), generator=g),
        classes=[str(i) for i in range(10)],
    )


def pruned_model(
    sparsity: float, name: str = "resnet20", image_size: int = 32
) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A seeded model with a global magnitude mask of ``sparsity`` (classifier excluded)."""
    torch.manual_seed(0)
    model = build_model(name, 10, 3, image_size)
    keys = prunable_weight_keys(model, ["fc"])
    masks = prune_masks(model.state_dict(), dense_masks(model, keys), sparsity, "global")
    apply_masks(model, masks)
    return model, masks


@dataclass
class Variant:
    """One variant's trainer, ready to run epochs exactly as ``Trainer.fit`` runs them."""

    name: str
    trainer: Trainer
    optimizer: torch.optim.Optimizer
    masker: Masker
    step: DeviceStep | None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    epoch: int = 0
    warmup_s: float = 0.0

    def epoch_seconds(self) -> float:
        """Seconds of one whole training epoch (its statistics read back included)."""
        t = self.trainer
        # the schedule's length is only the learning rate's: it cannot change a rate
        result = t.train_epoch(
            self.epoch % t.total_epochs,
            self.optimizer,
            self.scheduler,
            self.masker,
            device_step=self.step,
        )
        self.epoch += 1
        return result.seconds

    def ran(self) -> dict[str, bool]:
        return what_ran(self.trainer, self.step)


def what_ran(t: Trainer, step: DeviceStep | None) -> dict[str, bool]:
    """What really ran: asked-for compile or capture can fall back to eager."""
    return {
        "compiled": t.compiled,
        "compile_fell_back": t.compiled and not t.forward.active,
        "capture": t.captured,
        "graph_captured": step is not None and step.graph is not None,
    }


def make_variant(
    name: str,
    device: torch.device,
    data: PreparedData,
    batch: int,
    epochs: int,
    arch: tuple[str, int] = PAPER_ARCH,
) -> Variant:
    cfg = build_config(
        preset="cpu-resnet20-cifar10",
        overrides=[*VARIANTS[name], f"train.batch_size={batch}", f"device={device.type}"],
    )
    model, masks = pruned_model(0.8, *arch)
    trainer = Trainer(model, cfg, data, device, total_epochs=epochs)
    optimizer = trainer.new_optimizer()
    masker = Masker(trainer.model, masks)
    # as Trainer.fit: one device step for the phase when capturing, else the scheduler
    step = trainer.device_step(optimizer, masker, 0, False) if trainer.captured else None
    scheduler = None if step else trainer.scheduler(optimizer, 0)
    variant = Variant(name, trainer, optimizer, masker, step, scheduler)
    start = time.perf_counter()
    # compile, and capture (after WARMUP_STEPS eager steps): timed epochs only replay
    for _ in range(warmup_epochs(trainer.steps_per_epoch)):
        variant.epoch_seconds()
    variant.warmup_s = time.perf_counter() - start
    return variant


def warmup_epochs(steps_per_epoch: int) -> int:
    return math.ceil((WARMUP_STEPS + 1) / steps_per_epoch)


def make_variants(
    device: torch.device,
    data: PreparedData,
    batch: int,
    names: list[str],
    epochs: int,
    arch: tuple[str, int],
) -> tuple[list[Variant], dict[str, str]]:
    """The variants that could be set up, and the error of each one that could not."""
    out, errors = [], {}
    for name in names:
        try:
            out.append(make_variant(name, device, data, batch, epochs, arch))
        except Exception as exc:  # one broken setting must not cost the others' numbers
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            errors[name] = f"{type(exc).__name__}: {first}"
    return out, errors


def time_training(variants: list[Variant], rounds: int, images_per_epoch: int) -> dict:
    ratios: dict[str, list[float]] = {v.name: [] for v in variants}
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    reference = variants[0].name
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        seconds = {v.name: v.epoch_seconds() for v in order}
        for name, s in seconds.items():
            ratios[name].append(s / seconds[reference])
            rates[name].append(images_per_epoch / s)
    return {
        v.name: {
            "images_per_s": statistics.median(rates[v.name]),
            "time_vs_reference": statistics.median(ratios[v.name]),
            "warmup_s": v.warmup_s,
            "settings": VARIANTS[v.name],
            **v.ran(),
        }
        for v in variants
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batches_of(data: PreparedData, n: int, batch: int, device: torch.device) -> list:
    loader = data.loader(data.test_x[:n], data.test_y[:n], batch, device)
    return list(loader)


def time_zeroing(
    device: torch.device, data: PreparedData, n: int, quick: bool, arch: tuple[str, int]
) -> float:
    model, _ = pruned_model(0.8, *arch)
    model = model.to(device).eval()
    layers = [layer for ls in model.stages.values() for layer in ls if layer != "fc"]
    layers = layers[:1] if quick else layers
    batches = batches_of(data, n, 500, device)
    sync(device)
    start = time.perf_counter()
    zeroing_fast(model, layers, batches, "weights")
    sync(device)
    return time.perf_counter() - start


def time_similarity(
    device: torch.device, data: PreparedData, n: int, arch: tuple[str, int]
) -> float:
    """The similarity analysis' streamed statistics of one level against the dense network."""
    a = pruned_model(0.0, *arch)[0].to(device).eval()
    b = pruned_model(0.8, *arch)[0].to(device).eval()
    layers = [layer for ls in a.stages.values() for layer in ls]
    sync(device)
    start = time.perf_counter()
    sa, sb, ab = {}, {}, {}
    for xb, _ in batches_of(data, n, 500, device):
        acts_a, acts_b = capture(a, layers, xb), capture(b, layers, xb)
        for layer in layers:
            ra, rb = as_rows(acts_a[layer]), as_rows(acts_b[layer])
            sa.setdefault(layer, SelfStats(ra.shape[1], device)).update(ra)
            sb.setdefault(layer, SelfStats(rb.shape[1], device)).update(rb)
            ab.setdefault(layer, CrossStats(ra.shape[1], rb.shape[1], device)).update(ra, rb)
    sync(device)
    return time.perf_counter() - start


def study_hours(images_per_s: float, zeroing_s: float, similarity_s: float, eval_images: int):
    train_h = PAPER_LEVELS * PAPER_EPOCHS * CIFAR_TRAIN / images_per_s / 3600
    scale = 10_000 / eval_images  # the analyses on 10,000 test images each
    analyses_h = PAPER_LEVELS * (zeroing_s + similarity_s) * scale / 3600
    return {
        "training_hours": train_h,
        "analyses_hours": analyses_h,
        "total_hours": train_h + analyses_h,
    }


def projection(
    train: dict, zeroing_s: float, similarity_s: float, eval_images: int, default: str | None
) -> dict:
    """The study at the fastest variant's rate, and at the rate of the one the defaults pick
    (every variant is a set of config settings, so either can be run as measured)."""
    best = max(train, key=lambda k: train[k]["images_per_s"])
    out = {
        **study_hours(train[best]["images_per_s"], zeroing_s, similarity_s, eval_images),
        "at": best,
        "settings": train[best]["settings"],
    }
    if default in train:
        out["with_defaults"] = {
            **study_hours(train[default]["images_per_s"], zeroing_s, similarity_s, eval_images),
            "at": default,
        }
    return out


def variant_names(device: torch.device, quick: bool) -> list[str]:
    names = list(VARIANTS)
    if device.type != "cuda" or quick:  # compiling takes minutes on a CPU
        names = [n for n in names if "compile" not in n]
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the path")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=50, help="training steps per timed epoch")
    p.add_argument("--batch", type=int, help="default 128 (the paper's), 16 with --quick")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing measured (BENCHMARKS.md keeps 'unmeasured')")
    quick = args.quick
    batch = args.batch or (16 if quick else 128)
    n_eval = 32 if quick else 10_000
    rounds, steps = (1, 2) if quick else (args.rounds, args.steps)
    arch = QUICK_ARCH if quick else PAPER_ARCH
    data = synthetic_data(batch * steps, n_eval, arch[1])
    epochs = rounds + warmup_epochs(steps)
    names = variant_names(device, quick)
    variants, errors = make_variants(device, data, batch, names, epochs, arch)
    train = time_training(variants, rounds, batch * steps) if variants else {}
    zeroing_s = time_zeroing(device, data, n_eval, quick, arch)
    similarity_s = time_similarity(device, data, n_eval, arch)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
        "quick": quick,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "model": arch[0],
        "image_size": arch[1],
        "batch": batch,
        "steps_per_epoch": steps,
        "training": train,
        "reference": next(iter(train), None),  # time_vs_reference is against this one
        "errors": errors,
        "zeroing_one_level_s": zeroing_s,
        "similarity_one_level_s": similarity_s,
        "eval_images": n_eval,
        "projection_paper_resnet20": (
            projection(train, zeroing_s, similarity_s, n_eval, default_variant(device))
            if train
            else None
        ),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
