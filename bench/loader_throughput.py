"""Training throughput: prunescope's on-device loader vs a plain PyTorch DataLoader loop.

Same model, same images, same augmentation (random crop with 4px zero padding +
horizontal flip + normalisation), same optimizer; only the input pipeline
differs. The reference is the idiomatic per-sample Dataset + DataLoader. Also
reports the input pipeline alone (no model), where the difference is largest.

    python bench/loader_throughput.py --cifar10 ../shared/data/cifar10 [--images 5120] [--workers 0]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from prunescope.data import DeviceLoader, prepare_data
from prunescope.models import build_model

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PerSampleCifar(Dataset):
    """What a plain PyTorch pipeline does: one image at a time, in the worker."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = F.pad(self.x[i], (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,)).tolist()
        img = img[:, dy : dy + 32, dx : dx + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(2)
        return (img.float() / 255 - self.mean) / self.std, self.y[i]


def model_is_channels_last(model: torch.nn.Module) -> bool:
    w = next(p for p in model.parameters() if p.dim() == 4)
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def train_images_per_second(batches, model, opt, n_images: int) -> float:
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        if model_is_channels_last(model):
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return n_images / (time.perf_counter() - start)


def pipeline_images_per_second(batches, n_images: int) -> float:
    start = time.perf_counter()
    for x, _ in batches:
        x.sum()
    return n_images / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cifar10", default="../shared/data/cifar10")
    ap.add_argument("--images", type=int, default=5120)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--channels-last", action="store_true", help="both sides, as prunescope trains on CPU"
    )
    args = ap.parse_args()

    data = prepare_data("cifar10", args.cifar10, train_subset=args.images, seed=0)
    x, y = data.train_x, data.train_y
    n = len(x) // args.batch_size * args.batch_size
    device = torch.device("cpu")

    cl = args.channels_last
    ours = DeviceLoader(
        x,
        y,
        args.batch_size,
        MEAN,
        STD,
        device,
        train=True,
        crop_padding=4,
        flip=True,
        channels_last=cl,
    )
    plain = DataLoader(
        PerSampleCifar(x, y),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )

    def fresh():
        torch.manual_seed(0)
        m = build_model(args.model)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        return m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)

    # Warm up oneDNN kernels once so that neither side pays for it.
    m, o = fresh()
    train_images_per_second(list(ours.epoch(0))[:3], m, o, 1)

    results = {"ours_train": [], "plain_train": [], "ours_pipeline": [], "plain_pipeline": []}
    for r in range(args.repeats):
        m, o = fresh()
        results["ours_train"].append(train_images_per_second(ours.epoch(r), m, o, n))
        m, o = fresh()
        results["plain_train"].append(train_images_per_second(plain, m, o, n))
        results["ours_pipeline"].append(pipeline_images_per_second(ours.epoch(r), n))
        results["plain_pipeline"].append(pipeline_images_per_second(plain, n))

    best = {k: max(v) for k, v in results.items()}
    median = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"hardware: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    print(
        f"model {args.model}, {n} CIFAR-10 images, batch {args.batch_size}, DataLoader workers {args.workers}, "
        f"channels_last {cl}"
    )
    print(
        f"training   ours {best['ours_train']:8.0f} img/s   DataLoader {best['plain_train']:8.0f} img/s   "
        f"ratio {best['ours_train'] / best['plain_train']:.2f}x"
    )
    print(
        f"training, median of {args.repeats}: ours {median['ours_train']:8.0f} img/s   "
        f"DataLoader {median['plain_train']:8.0f} img/s   "
        f"ratio {median['ours_train'] / median['plain_train']:.2f}x"
    )
    print(
        f"pipeline   ours {best['ours_pipeline']:8.0f} img/s   DataLoader {best['plain_pipeline']:8.0f} img/s   "
        f"ratio {best['ours_pipeline'] / best['plain_pipeline']:.2f}x"
    )


if __name__ == "__main__":
    main()
