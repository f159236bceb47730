"""A loader that keeps the whole dataset on the training device as uint8.

Shuffling, random crops, flips and normalisation run batched on that device;
the random draws of an epoch come from a CPU generator seeded by (seed, epoch),
so an epoch is reproducible on any device and identical at every IMP level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from prunescope.distributed import shard
from prunescope.seeding import cpu_generator, derive_seed


class Normalizer:
    """uint8 NCHW → float32, ``(x/255 - mean) / std`` folded into one multiply-add."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device):
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * s)
        self.shift = -m / s

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.float(), self.scale)


def random_crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor | None, padding: int
) -> torch.Tensor:
    """Crop every image of a uint8 batch at its own offset of the zero-padded image, then flip.

    ``dy``/``dx`` are offsets in ``[0, 2*padding]`` per image; offset ``padding``
    is the identity.
    """
    n, c, h, w = x.shape
    if padding:
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = dy.view(n, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = dx.view(n, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
        x = padded[batch, chan, rows, cols]
    if flip is not None:
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


# Images cropped and flipped at once: the crop's gather builds an int64 index per pixel,
# 8 bytes x 3 x 32 x 32 an image, so 2,048 CIFAR images take 50 MB of indices at a time.
AUGMENT_IMAGES = 2048


class DeviceLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        *,
        train: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ):
        if images.dtype != torch.uint8:
            raise TypeError("DeviceLoader keeps images as uint8")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.normalize = Normalizer(mean, std, device)
        self.train = train
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.seed = seed
        self.channels_last = channels_last
        n = len(self.images)
        # A lone last sample would break BatchNorm in training; drop the ragged
        # tail there (it is a different tail every epoch), keep it in evaluation.
        self.drop_last = train and n > batch_size
        self.num_batches = n // batch_size if self.drop_last else -(-n // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def _draws(self, epoch: int) -> tuple[torch.Tensor, ...]:
        n = len(self.images)
        g = cpu_generator(derive_seed(self.seed, "data", epoch))
        order = torch.randperm(n, generator=g)
        span = 2 * self.crop_padding + 1
        dy = torch.randint(span, (n,), generator=g)
        dx = torch.randint(span, (n,), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        return tuple(t.to(self.device, non_blocking=True) for t in (order, dy, dx, flip))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of (normalised float images, labels) for one epoch. Training batches are
        cropped and flipped many batches at a time (:data:`AUGMENT_IMAGES`): the same images
        as batch by batch, in a few kernels per chunk instead of a few per step."""
        if self.train:
            draws = self._draws(epoch)
            per_chunk = max(1, AUGMENT_IMAGES // self.batch_size)
        for b in range(self.num_batches):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if self.train:
                if b % per_chunk == 0:
                    chunk_x, chunk_y = self._augmented(draws, b, per_chunk)
                at = (b % per_chunk) * self.batch_size
                part = slice(at, at + self.batch_size)
                # under torchrun, this rank's share of the global batch
                x, y = shard(chunk_x[part]), shard(chunk_y[part])
            else:
                x, y = self.images[sl], self.labels[sl]
            x = self.normalize(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def _augmented(
        self, draws: tuple[torch.Tensor, ...], first: int, batches: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cropped and flipped uint8 images, and labels, of ``batches`` batches from
        batch ``first`` of the epoch."""
        order, dy, dx, flip = draws
        sl = slice(first * self.batch_size, (first + batches) * self.batch_size)
        idx = order[sl]
        x = random_crop_flip(
            self.images[idx], dy[sl], dx[sl], flip[sl] if self.flip else None, self.crop_padding
        )
        return x, self.labels[idx]


class TokenLoader:
    """Sequences of token ids and their next-token targets, batched on the device; the
    order of an epoch comes from (seed, epoch), as for images."""

    def __init__(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        device: torch.device,
        *,
        train: bool = False,
        seed: int = 0,
    ):
        self.tokens = tokens.to(device)
        self.labels = targets.to(device)
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.seed = seed
        self.num_batches = -(-len(self.tokens) // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.tokens)
        if self.train:
            g = cpu_generator(derive_seed(self.seed, "data", epoch))
            order = torch.randperm(n, generator=g).to(self.device)
        for b in range(self.num_batches):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = shard(order[sl]) if self.train else sl
            yield self.tokens[idx].long(), self.labels[idx].long()


class GraphLoader:
    """One graph is one batch: every node's features, the labels of the split's nodes
    (the others are ignored by the loss and the accuracy)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, device: torch.device):
        self.features = features.to(device)
        self.labels = labels.to(device)
        self.device = device
        self.batch_size = len(labels)
        self.num_batches = 1

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield self.features, self.labels
