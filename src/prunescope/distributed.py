"""One run on several processes under ``torchrun`` (docs/guide.md, "One run on several GPUs"): data-parallel training.

Rank 0 alone opens the run directory (its lock, every file); the other ranks hold no
file. Each training phase starts with rank 0 broadcasting what the phase needs (the model
state it starts from, the masks, an optimizer state when it resumes a checkpoint), so
every rank trains the same network. Each rank takes its share ``[rank::size]`` of every
global batch of the same seeded epoch permutation, and gradients are averaged across
ranks before each step: a step sees the whole global batch, as one process would
(BatchNorm statistics are per rank, as in plain DDP). Evaluation and checkpoints run on
rank 0. The analyses split their levels across ranks, each reading the run directory
and sending its tables to rank 0, which writes them; the report is rank 0's.

Devices: on a GPU host the process group is ``cpu:gloo,cuda:nccl`` (objects and CPU tensors
over gloo, CUDA tensors over NCCL); elsewhere it is gloo. Once the config is known,
:func:`bind` puts each rank on its device (``cuda:LOCAL_RANK`` for ``cuda``/``auto`` on a GPU
host, the CPU for ``cpu``; ``cuda:N`` is refused), and every tensor collective runs on the
rank's collective device (:func:`collective_device`): a tensor that lives elsewhere (the CPU
masks of a CUDA run) is copied there for the collective and the result written back.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.training.device import resolve_device

log = logging.getLogger("prunescope")

# Where this rank's tensor collectives run, once bind() has chosen it (None before).
_COLLECTIVE: torch.device | None = None


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


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def group_backend(cuda_available: bool) -> str:
    """The process group's backends. The device setting is not known yet when the group
    forms (a resumed run's config is read by rank 0 and broadcast over this very group), so
    a GPU host gets both: NCCL has no CPU tensors and gloo no fast CUDA collectives, and
    each tensor goes to the backend of its device. NCCL only connects at its first CUDA
    collective, so a ``device = "cpu"`` run never touches it."""
    return "cpu:gloo,cuda:nccl" if cuda_available else "gloo"


def init() -> World:
    """Join the process group when torchrun started us (see :func:`group_backend`)."""
    w = world()
    if not w.distributed or torch.distributed.is_initialized():
        return w
    torch.distributed.init_process_group(group_backend(torch.cuda.is_available()))
    if not w.writer:  # one log, rank 0's
        logging.getLogger("prunescope").setLevel(logging.WARNING)
    return w


def plan_device(setting: str, cuda_available: bool, rank_on_node: int) -> tuple[str, torch.device]:
    """(backend, device) of one rank under torchrun for ``device = setting``: the backend
    that carries its tensors and the device it trains on.

    ``cpu`` (or ``auto`` without a GPU) is gloo on the CPU; ``cuda`` or ``auto`` on a GPU
    host is NCCL on ``cuda:LOCAL_RANK``, one GPU per process (choose the GPUs with
    ``CUDA_VISIBLE_DEVICES``). ``cuda:N`` is refused: it would put every rank on one GPU."""
    if setting == "cpu" or (setting == "auto" and not cuda_available):
        return "gloo", torch.device("cpu")
    if setting == "auto" or setting == "cuda":
        if not cuda_available:
            raise UserInputError("device 'cuda' asked for, but this machine has no CUDA GPU")
        return "nccl", torch.device("cuda", rank_on_node)
    if setting.startswith("cuda:"):
        raise UserInputError(
            f"device {setting!r} under torchrun: each process takes its own GPU "
            f'(cuda:LOCAL_RANK); set device = "cuda" and choose GPUs with CUDA_VISIBLE_DEVICES'
        )
    return "gloo", torch.device(setting)  # e.g. mps: its collectives go through the CPU


def bind(setting: str) -> torch.device:
    """The device this process computes on for ``device = setting``. Under torchrun also
    the rank's GPU (``torch.cuda.set_device``) and the device of its tensor collectives."""
    global _COLLECTIVE
    if not world().distributed:
        return resolve_device(setting)
    backend, device = plan_device(setting, torch.cuda.is_available(), local_rank())
    if device.type == "cuda":
        if device.index >= torch.cuda.device_count():
            raise UserInputError(
                f"torchrun started process {device.index} of this node, which has only "
                f"{torch.cuda.device_count()} CUDA GPU(s): start at most one process per GPU"
            )
        torch.cuda.set_device(device)
    else:
        resolve_device(setting)  # checks that it exists here (mps)
    _COLLECTIVE = device if backend == "nccl" else torch.device("cpu")
    return device


def collective_device() -> torch.device:
    """Where this rank's tensor collectives run: what :func:`bind` chose, else what the
    group can carry (an NCCL-only group has no CPU tensors: the current GPU)."""
    if _COLLECTIVE is not None:
        return _COLLECTIVE
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(t: torch.Tensor) -> torch.Tensor:
    """This rank's share of one global batch (rows ``rank, rank + size, …``)."""
    w = world()
    return t[w.rank :: w.size] if w.distributed else t


def average_gradients(model: nn.Module, scored: torch.Tensor) -> None:
    """The gradient of the whole global batch on every rank: each rank's gradient (of its
    mean loss over its ``scored`` examples) weighted by ``scored``, summed over ranks and
    divided by the total. A plain mean over ranks is wrong when the shards differ in size
    (a global batch that the world size does not divide, e.g. an epoch's last batch)."""
    w = world()
    if not w.distributed:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    count = scored.reshape(1).to(grads[0].device, torch.float32)
    # a rank with no scored example adds nothing (its mean loss is NaN, its gradient may be)
    parts = [torch.where(count > 0, g.reshape(-1).float() * count, 0.0) for g in grads]
    flat = _to_collective(torch.cat([*parts, count]))
    torch.distributed.all_reduce(flat)
    total = flat[-1].clamp_min(1.0)
    offset = 0
    for g in grads:
        g.copy_((flat[offset : offset + g.numel()] / total).view_as(g))
        offset += g.numel()


def reduce_across(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Elementwise sum (or max) over ranks: the epoch statistics of every shard."""
    if world().distributed:
        buf = _to_collective(values.clone())
        how = torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
        torch.distributed.all_reduce(buf, op=how)
        values = buf.to(values.device)
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


def _to_collective(t: torch.Tensor) -> torch.Tensor:
    """``t`` on the collective device, contiguous (a copy where it lives elsewhere)."""
    return t.to(collective_device()).contiguous()


def broadcast_tensors(tensors: dict[str, torch.Tensor]) -> None:
    """Overwrite every rank's tensors (same keys, shapes, dtypes) with rank 0's, in place.

    Each goes over the collective device (NCCL has no CPU tensors: CPU masks of a CUDA run
    would end the run at level 0), as uint8 where it is bool (gloo has no bool), and a copy
    (another device, bool, a channels_last weight) is written back."""
    if not world().distributed:
        return
    for key in sorted(tensors):
        t = tensors[key].detach()
        buf = _to_collective(t.to(torch.uint8) if t.dtype == torch.bool else t)
        torch.distributed.broadcast(buf, src=0)
        if buf.device != t.device or buf.dtype != t.dtype or not t.is_contiguous():
            t.copy_(buf)


def barrier() -> None:
    if world().distributed:
        torch.distributed.barrier()


def finish() -> None:
    if world().distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
