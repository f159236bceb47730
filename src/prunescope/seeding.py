"""Seeds derived from (run seed, purpose, epoch): every epoch's randomness is a pure
function of its position, so levels see identical data order and augmentation,
and a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def derive_seed(seed: int, purpose: str, *numbers: int) -> int:
    tag = zlib.crc32(purpose.encode())
    state = np.random.SeedSequence([seed, tag, *numbers]).generate_state(2, dtype=np.uint32)
    return int(state[0]) | (int(state[1]) & 0x7FFFFFFF) << 32


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g
