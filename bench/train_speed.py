"""Training speed on a CPU: prunescope's training step in each precision and compile
setting against a plain fp32 PyTorch loop, in interleaved rounds on the same data.

The reference is what a researcher writes first: the model, SGD, ``F.cross_entropy``,
fp32, eager, on the same normalised batches. prunescope's step is its real
``Trainer.train_epoch`` on an IMP-pruned model (a global magnitude mask of the
``--sparsity`` asked for, so the masking costs are in), in channels_last as it trains
CNNs on a CPU. Every round runs every variant for ``--steps`` steps, in a rotated
order, so machine noise hits all of them; the ratio is taken within each round.
Compile time (the first call) is reported on its own and is charged to the
``per epoch`` ratio of a real epoch of ``--epoch-steps`` steps.

Also measured in the same run: the CPU's fp32 and bf16 1024³ matmul rates, and the
model's FLOPs per training step (torch's FLOP counter), so each variant's rate is given
as a fraction of what the matrix units deliver.

    python bench/train_speed.py --cifar10 ../shared/data/cifar10 [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from prunescope.config import build_config
from prunescope.data import DeviceLoader, prepare_data
from prunescope.models import build_model
from prunescope.pruning.magnitude import prune_masks
from prunescope.pruning.masks import Masker, apply_masks, dense_masks, prunable_weight_keys
from prunescope.training.precision import autocast, cpu_has_fast_bf16
from prunescope.training.trainer import Trainer

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def matmul_gflops(dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


@dataclass
class Variant:
    name: str
    run: object  # callable(steps) -> seconds
    first_call: float = 0.0


def plain_loop(model, batches, channels_last: bool = False):
    """The reference: fp32, eager, no masks (optionally in channels_last, as prunescope)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    it = iter(batches * 1000)

    def run(steps: int) -> float:
        model.train()
        start = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    return run


def prunescope_step(cfg, data, model, masks, device):
    """prunescope's own epoch loop (Trainer.train_epoch), cut to ``steps`` batches."""
    trainer = Trainer(model, cfg, data, device, total_epochs=10**6)
    apply_masks(trainer.model, masks)
    masker = Masker(trainer.model, masks)
    opt = trainer.new_optimizer()
    sched = trainer.scheduler(opt, 0)
    epoch = [0]

    def run(steps: int) -> float:
        trainer.steps_per_epoch = steps
        loader = trainer.train_loader
        loader.num_batches = steps  # the loader stops after ``steps`` batches
        start = time.perf_counter()
        trainer.train_epoch(epoch[0], opt, sched, masker)
        epoch[0] += 1
        return time.perf_counter() - start

    return trainer, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar10", default="../shared/data/cifar10")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--images", type=int, default=2560)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6, help="steps per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--epoch-steps", type=int, default=390, help="a real epoch (CIFAR-10, 128)")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    data = prepare_data("cifar10", args.cifar10, train_subset=args.images, test_subset=100)
    torch.manual_seed(0)
    base = build_model(args.model, 10, 3, 32)
    keys = prunable_weight_keys(base, ["fc"])
    masks = dense_masks(base, keys)
    state = base.state_dict()
    while (
        1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        < args.sparsity - 1e-3
    ):
        masks = prune_masks(state, masks, 0.2)
    apply_masks(base, masks)

    loader = DeviceLoader(
        data.train_x,
        data.train_y,
        args.batch_size,
        MEAN,
        STD,
        device,
        train=True,
        crop_padding=4,
        flip=True,
    )
    batches = list(loader.epoch(0))

    def fresh():
        m = build_model(args.model, 10, 3, 32)
        m.load_state_dict(base.state_dict())
        return m

    variants = [
        Variant("plain fp32 loop", plain_loop(fresh(), batches)),
        Variant("plain fp32 loop, channels_last", plain_loop(fresh(), batches, True)),
    ]
    settings = [("fp32", False), ("bf16", False)]
    if not args.no_compile:
        settings += [("fp32", True), ("bf16", True)]
    flops = {}
    for precision, compiled in settings:
        cfg = build_config(
            overrides=[
                f"train.batch_size={args.batch_size}",
                f"train.precision={precision}",
                f"train.compile={str(compiled).lower()}",
                "train.lr=0.05",
            ]
        )
        trainer, run = prunescope_step(cfg, data, fresh(), masks, device)
        name = f"prunescope {precision}{' + compile' if compiled else ''}"
        v = Variant(name, run)
        start = time.perf_counter()
        run(1)  # warm-up; for compile, this call compiles
        v.first_call = time.perf_counter() - start
        variants.append(v)
        if not compiled:
            x, y = batches[0]
            with FlopCounterMode(display=False) as counter:
                with autocast(device, precision):
                    out = trainer.model(x.contiguous(memory_format=torch.channels_last))
                F.cross_entropy(out.float(), y).backward()
            flops[precision] = counter.get_total_flops()
    variants[0].run(1)
    variants[1].run(1)

    gf = {"fp32": [], "bf16": []}
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    ratios: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(args.rounds):
        gf["fp32"].append(matmul_gflops(torch.float32))
        gf["bf16"].append(matmul_gflops(torch.bfloat16))
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        this = {}
        for v in order:
            this[v.name] = v.run(args.steps)
            times[v.name].append(this[v.name])
        for v in variants:
            ratios[v.name].append(this["plain fp32 loop"] / this[v.name])

    fp32_rate, bf16_rate = statistics.median(gf["fp32"]), statistics.median(gf["bf16"])
    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} thread(s), torch "
        f"{torch.__version__}, fast bf16 detected: {cpu_has_fast_bf16()}"
    )
    print(
        f"# matmul 1024^3: fp32 {fp32_rate:.0f} GFLOP/s, bf16 {bf16_rate:.0f} GFLOP/s "
        f"({bf16_rate / fp32_rate:.1f}x); {args.model} batch {args.batch_size}, "
        f"{100 * args.sparsity:.0f}% sparse, {args.rounds} rounds x {args.steps} steps"
    )
    per_step_flops = flops.get("fp32", 0)
    print(
        "| variant | img/s (median) | ratio to plain fp32 (median, range) | % of fp32 / bf16 matmul rate | first call | ratio per real epoch (compile included) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    plain_step = statistics.median(times["plain fp32 loop"]) / args.steps
    for v in variants:
        step = statistics.median(times[v.name]) / args.steps
        ips = args.batch_size / step
        rs = ratios[v.name]
        achieved = per_step_flops / step / 1e9
        extra = max(v.first_call - step, 0.0)
        per_epoch = (plain_step * args.epoch_steps) / (step * args.epoch_steps + extra)
        print(
            f"| {v.name} | {ips:.0f} | {statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f}) "
            f"| {100 * achieved / fp32_rate:.0f}% / {100 * achieved / bf16_rate:.0f}% "
            f"| {v.first_call:.1f}s | {per_epoch:.2f}x |"
        )


if __name__ == "__main__":
    main()
