"""One run on several processes under ``torchrun`` (DESIGN §14): data-parallel training.

Rank 0 alone opens the run directory (its lock, every file); the other ranks hold no
file. Each training phase starts with rank 0 broadcasting what the phase needs (the model
state it starts from, the masks, an optimizer state when it resumes a checkpoint), so
every rank trains the same network. Each rank takes its share ``[rank::size]`` of every
global batch of the same seeded epoch permutation, and gradients are averaged across
ranks before each step: a step sees the whole global batch, as one process would
(BatchNorm statistics are per rank, as in plain DDP). Evaluation and checkpoints run on
rank 0. The analyses split their levels across ranks, each reading the run directory
and sending its tables to rank 0, which writes them; the report is rank 0's.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

log = logging.getLogger("prunescope")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def writer(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


@functools.lru_cache(maxsize=1)
def world() -> World:
    """This process's place, from torchrun's environment (one process when unset)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size)


def init(device: str = "auto") -> World:
    """Join the process group (NCCL for CUDA, gloo otherwise) when torchrun started us."""
    w = world()
    if not w.distributed or torch.distributed.is_initialized():
        return w
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    if not w.writer:  # one log, rank 0's
        logging.getLogger("prunescope").setLevel(logging.WARNING)
    return w


def shard(t: torch.Tensor) -> torch.Tensor:
    """This rank's share of one global batch (rows ``rank, rank + size, …``)."""
    w = world()
    return t[w.rank :: w.size] if w.distributed else t


def average_gradients(model: nn.Module) -> None:
    w = world()
    if not w.distributed:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= w.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def reduce_across(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Elementwise sum (or max) over ranks: the epoch statistics of every shard."""
    if world().distributed:
        values = values.clone()
        how = torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
        torch.distributed.all_reduce(values, op=how)
    return values


def broadcast_object(obj: Any = None) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not world().distributed:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on rank 0 (an empty list elsewhere)."""
    w = world()
    if not w.distributed:
        return [obj]
    out = [None] * w.size if w.writer else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out or []


def broadcast_tensors(tensors: dict[str, torch.Tensor]) -> None:
    """Overwrite every rank's tensors (same keys, shapes, dtypes) with rank 0's, in place."""
    if not world().distributed:
        return
    for key in sorted(tensors):
        t = tensors[key]
        # gloo has no bool; a copy (masks, channels_last weights) is written back
        buf = t.detach().to(torch.uint8) if t.dtype == torch.bool else t.detach().contiguous()
        torch.distributed.broadcast(buf, src=0)
        if buf.data_ptr() != t.data_ptr():
            t.detach().copy_(buf)


def barrier() -> None:
    if world().distributed:
        torch.distributed.barrier()


def finish() -> None:
    if world().distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
