"""The GPU path, measured in one script (under 8 minutes on one H200): ResNet20 training
images/s on CIFAR-10-sized synthetic data in every speed setting, one full level's zeroing
and similarity on 10,000 images, and the paper's full ResNet20 study projected from them.

Training variants run interleaved, in rotated order, ``--rounds`` times (the ratio to the
fp32 eager reference is taken within each round): fp32 eager (the reference), bf16 autocast,
bf16 + channels_last, ``torch.compile`` of the latter, and ``torch.compile`` in
"reduce-overhead" mode (CUDA graphs; CUDA only). Each step is prunescope's real ``Trainer`` step on a
pruned ResNet20 (global magnitude mask, masks applied after every step).

    python bench/gpu.py [--out BENCH.json]        # on a CUDA machine
    python bench/gpu.py --device cpu --quick      # the same code path, tiny, on a CPU

The projection: 19 levels × 155 epochs × 50,000 images at the fastest variant's rate,
plus 19 levels of zeroing and similarity at the measured times (the paper trains 155
epochs per level: 5 of pretraining, then 150).
"""

from __future__ import annotations

import argparse
import json
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
from prunescope.training.compile import GuardedForward
from prunescope.training.trainer import Trainer

PAPER_LEVELS, PAPER_EPOCHS, CIFAR_TRAIN = 19, 155, 50_000

VARIANTS = {  # name -> config overrides
    "fp32 eager": ["train.precision=fp32", "train.channels_last=false", "train.compile=false"],
    "bf16": ["train.precision=bf16", "train.channels_last=false", "train.compile=false"],
    "bf16 channels_last": [
        "train.precision=bf16",
        "train.channels_last=true",
        "train.compile=false",
    ],
    "bf16 channels_last compile": [
        "train.precision=bf16",
        "train.channels_last=true",
        "train.compile=true",
    ],
    # CUDA graphs: torch.compile's "reduce-overhead" mode replays the captured step
    "bf16 channels_last CUDA graphs": [
        "train.precision=bf16",
        "train.channels_last=true",
        "train.compile=false",
    ],
}
CUDA_GRAPHS = "bf16 channels_last CUDA graphs"


def synthetic_data(n_train: int, n_test: int) -> PreparedData:
    """CIFAR-10-shaped uint8 images with random labels (speed does not depend on content)."""
    g = torch.Generator().manual_seed(0)
    return PreparedData(
        spec=dataset_spec("cifar10"),
        train_x=torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g),
        train_y=torch.randint(0, 10, (n_train,), generator=g),
        test_x=torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
        test_y=torch.randint(0, 10, (n_test,), generator=g),
        classes=[str(i) for i in range(10)],
    )


def pruned_resnet20(sparsity: float) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = build_model("resnet20")
    keys = prunable_weight_keys(model, ["fc"])
    masks = prune_masks(model.state_dict(), dense_masks(model, keys), sparsity, "global")
    apply_masks(model, masks)
    return model, masks


@dataclass
class Variant:
    name: str
    trainer: Trainer
    masker: Masker
    optimizer: torch.optim.Optimizer
    first_call_s: float = 0.0

    def steps(self, n: int, device: torch.device) -> float:
        """Seconds for ``n`` training steps (the trainer's own step, masks included)."""
        t = self.trainer
        batches = t.train_loader.epoch(0)
        sched = t.scheduler(self.optimizer, 0)
        sync(device)
        start = time.perf_counter()
        for _, (x, y) in zip(range(n), batches, strict=False):
            t.forward.run(lambda m, x=x, y=y: t._forward_backward(m, x, y))
            self.masker.mask_grads()
            self.optimizer.step()
            sched.step()
            self.masker.mask_weights()
        sync(device)
        return time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_variants(device: torch.device, data: PreparedData, batch: int, names: list[str]):
    out = []
    for name in names:
        cfg = build_config(
            preset="cpu-resnet20-cifar10",
            overrides=[*VARIANTS[name], f"train.batch_size={batch}", "device=" + device.type],
        )
        model, masks = pruned_resnet20(0.8)
        trainer = Trainer(model, cfg, data, device, total_epochs=10)
        if name == CUDA_GRAPHS:
            compiled = torch.compile(trainer.model, mode="reduce-overhead")
            trainer.forward = GuardedForward(trainer.model, compiled)
        masker = Masker(trainer.model, {k: m.to(device) for k, m in masks.items()})
        v = Variant(name, trainer, masker, trainer.new_optimizer())
        v.first_call_s = v.steps(3, device)  # compile, autotune, warm caches
        out.append(v)
    return out


def time_training(variants: list[Variant], device, rounds: int, steps: int, batch: int) -> dict:
    ratios: dict[str, list[float]] = {v.name: [] for v in variants}
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        seconds = {v.name: v.steps(steps, device) for v in order}
        ref = seconds[variants[0].name]
        for name, s in seconds.items():
            ratios[name].append(s / ref)
            rates[name].append(steps * batch / s)
    return {
        v.name: {
            "images_per_s": statistics.median(rates[v.name]),
            "time_vs_fp32_eager": statistics.median(ratios[v.name]),
            "first_call_s": v.first_call_s,
        }
        for v in variants
    }


def batches_of(data: PreparedData, n: int, batch: int, device: torch.device) -> list:
    loader = data.loader(data.test_x[:n], data.test_y[:n], batch, device)
    return list(loader)


def time_zeroing(device: torch.device, data: PreparedData, n: int, quick: bool) -> float:
    model, _ = pruned_resnet20(0.8)
    model = model.to(device).eval()
    layers = [layer for ls in model.stages.values() for layer in ls if layer != "fc"]
    layers = layers[:2] if quick else layers
    batches = batches_of(data, n, 500, device)
    sync(device)
    start = time.perf_counter()
    zeroing_fast(model, layers, batches, "weights")
    sync(device)
    return time.perf_counter() - start


def time_similarity(device: torch.device, data: PreparedData, n: int) -> float:
    """The similarity analysis' streamed statistics of one level against the dense network."""
    a = pruned_resnet20(0.0)[0].to(device).eval()
    b = pruned_resnet20(0.8)[0].to(device).eval()
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


def projection(train: dict, zeroing_s: float, similarity_s: float, eval_images: int) -> dict:
    best = max(train.values(), key=lambda r: r["images_per_s"])
    train_h = PAPER_LEVELS * PAPER_EPOCHS * CIFAR_TRAIN / best["images_per_s"] / 3600
    scale = 10_000 / eval_images  # the analyses on 10,000 test images each
    analyses_h = PAPER_LEVELS * (zeroing_s + similarity_s) * scale / 3600
    return {
        "training_hours": train_h,
        "analyses_hours": analyses_h,
        "total_hours": train_h + analyses_h,
        "at": max(train, key=lambda k: train[k]["images_per_s"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the path")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing measured (BENCHMARKS.md keeps 'unmeasured')")
    quick = args.quick
    n_eval = 64 if quick else 10_000
    rounds, steps = (1, 2) if quick else (args.rounds, args.steps)
    data = synthetic_data(args.batch * (steps + 4), n_eval)
    names = list(VARIANTS)
    if device.type != "cuda" or quick:  # minutes of compiling on a CPU; graphs are CUDA's
        names = [n for n in names if "compile" not in n and n != CUDA_GRAPHS]
    variants = make_variants(device, data, args.batch, names)
    train = time_training(variants, device, rounds, steps, args.batch)
    zeroing_s = time_zeroing(device, data, n_eval, quick)
    similarity_s = time_similarity(device, data, n_eval)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
        "quick": quick,
        "torch": torch.__version__,
        "batch": args.batch,
        "training": train,
        "zeroing_one_level_s": zeroing_s,
        "similarity_one_level_s": similarity_s,
        "eval_images": n_eval,
        "projection_paper_resnet20": projection(train, zeroing_s, similarity_s, n_eval),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
