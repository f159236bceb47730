"""Peak memory of the streamed similarity analysis for 1,000 vs 10,000 test images.

Runs the analysis' own code path (forward hooks, float64 Gram accumulators)
on two ResNet20s over CIFAR-10 test images, in a fresh process per size, and
reports the growth of the peak resident set while it runs (VmHWM, reset after
the data and the models are in memory). Streaming means the growth does not
depend on the number of images; holding a layer's activations would cost
N·H·W·C floats (ResNet20's first stage alone: 64 KB per image per network).

    python bench/similarity_memory.py --cifar10 ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure(n: int, cifar10: str, model_name: str, batch_size: int) -> dict:
    from prunescope import build_model
    from prunescope.analysis.similarity import (
        CrossStats,
        SelfStats,
        as_rows,
        capture,
        similarity_metrics,
    )
    from prunescope.data import DeviceLoader
    from prunescope.data.cifar10 import read_batch

    x, y = read_batch(Path(cifar10) / "cifar-10-batches-py" / "test_batch")
    x, y = torch.from_numpy(x[:n]), torch.from_numpy(y[:n])
    torch.manual_seed(0)
    a = build_model(model_name).eval()
    b = build_model(model_name).eval()
    layers = [layer for layers in a.stages.values() for layer in layers]
    loader = DeviceLoader(
        x, y, batch_size, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), torch.device("cpu")
    )
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = rss_kib("VmRSS")
    start = time.perf_counter()
    sa, sb, ab = {}, {}, {}
    for xb, _ in loader:
        acts_a, acts_b = capture(a, layers, xb), capture(b, layers, xb)
        for layer in layers:
            ra, rb = as_rows(acts_a[layer]), as_rows(acts_b[layer])
            sa.setdefault(layer, SelfStats(ra.shape[1], xb.device)).update(ra)
            sb.setdefault(layer, SelfStats(rb.shape[1], xb.device)).update(rb)
            ab.setdefault(layer, CrossStats(ra.shape[1], rb.shape[1], xb.device)).update(ra, rb)
    values = {layer: similarity_metrics(sa[layer], sb[layer], ab[layer]) for layer in layers}
    seconds = time.perf_counter() - start
    peak = rss_kib("VmHWM")
    return {
        "images": n,
        "growth_mib": (peak - before) / 1024,
        "seconds": seconds,
        "cka_first_layer": values[layers[0]]["cka"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cifar10", default="../shared/data/cifar10")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.cifar10, args.model, args.batch_size)))
        return
    rows = []
    for n in (1000, 10000):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--cifar10",
                args.cifar10,
                "--model",
                args.model,
                "--batch-size",
                str(args.batch_size),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"hardware: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print(
        f"model {args.model}, batch {args.batch_size}, metrics cosine, cosine_per_neuron, cka for every prunable layer"
    )
    for r in rows:
        print(
            f"{r['images']:>6} images: peak memory growth {r['growth_mib']:7.1f} MiB  ({r['seconds']:.1f} s)"
        )
    held = 10000 * 2 * 16 * 32 * 32 * 4 / 2**20
    print(
        f"ratio 10,000 / 1,000: {rows[1]['growth_mib'] / rows[0]['growth_mib']:.2f}x "
        f"(holding even one stage-1 layer's activations of both networks for 10,000 images: {held:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
