"""Neuron zeroing: the naive loop of Alg. 2 against the batched engine, same checkpoint, same images.

Prints both times, their ratio, and checks that every neuron's correct count is
identical and its loss within 1e-5. Without --run-dir the checkpoint is the
model at initialisation with BatchNorm statistics drawn at random (a trained
network's speed is the same: the work does not depend on the values).

    python bench/zeroing_speed.py --model resnet20 --images 64
    python bench/zeroing_speed.py --model vgg16 --images 32 --stride 16
    python bench/zeroing_speed.py --run-dir runs/r20 --level 4 --images 64
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from prunescope import build_model, load_level
from prunescope.analysis.zeroing import zeroing_fast, zeroing_naive
from prunescope.data import DeviceLoader, prepare_data

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def checkpoint(args) -> nn.Module:
    if args.run_dir:
        return load_level(args.run_dir, args.level)[0]
    torch.manual_seed(0)
    model = build_model(args.model)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--run-dir")
    ap.add_argument("--level", type=int, default=0)
    ap.add_argument("--cifar10", default="../shared/data/cifar10")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--stride", type=int, default=1, help="zero every n-th neuron of each layer (both methods)"
    )
    ap.add_argument("--mode", default="weights", choices=["weights", "output"])
    args = ap.parse_args()

    # Both methods get the faster memory format (channels_last), so the ratio is the algorithm's.
    model = checkpoint(args).to(memory_format=torch.channels_last)
    data = prepare_data("cifar10", args.cifar10, test_subset=args.images, seed=0)
    batches = list(
        DeviceLoader(
            data.test_x,
            data.test_y,
            args.batch_size,
            MEAN,
            STD,
            torch.device("cpu"),
            channels_last=True,
        )
    )
    layers = [layer for layers in model.stages.values() for layer in layers]
    modules = dict(model.named_modules())
    neurons = {
        layer: list(
            range(
                0,
                getattr(modules[layer], "out_channels", None) or modules[layer].out_features,
                args.stride,
            )
        )
        for layer in layers
    }
    count = sum(len(v) for v in neurons.values())

    start = time.perf_counter()
    fast = zeroing_fast(model, layers, batches, args.mode, neurons=neurons)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    naive = zeroing_naive(model, layers, batches, args.mode, neurons=neurons)
    t_naive = time.perf_counter() - start

    mismatched = sum(int((fast.correct[k] != naive.correct[k]).sum()) for k in layers)
    loss_diff = max(
        float(((fast.loss_sum[k] - naive.loss_sum[k]) / fast.images).abs().max()) for k in layers
    )
    print(
        f"hardware: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print(
        f"model {args.model if not args.run_dir else args.run_dir + f' level {args.level}'}, mode {args.mode}, "
        f"{fast.images} CIFAR-10 test images, {count} neurons in {len(layers)} layers (stride {args.stride})"
    )
    print(f"naive {t_naive:8.1f} s   fast {t_fast:8.1f} s   speed-up {t_naive / t_fast:6.1f}x")
    print(
        f"identical correct counts: {mismatched == 0} ({mismatched} neurons differ); "
        f"max |loss difference| per image {loss_diff:.2e}"
    )


if __name__ == "__main__":
    main()
