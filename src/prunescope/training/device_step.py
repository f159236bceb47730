"""The whole training step on the device, without the host (``train.capture``).

The eager loop of :class:`~prunescope.training.trainer.Trainer` launches every kernel
from Python: on a GPU a ResNet-20 step at batch 128 is about 310 launches (estimated in
issue #22), so the GPU waits on the host. Here one step is one function over static
tensors: the batch is copied into fixed buffers, then forward, loss, backward, the
gradient masks, the optimizer's update, the weight masks, the next learning rate (read
from a table of the whole phase, indexed by a step counter on the device) and the
epoch's statistics (loss sum, correct, scored, first non-finite step) all run on the
device. On CUDA that function is captured once per phase as a CUDA graph
(``torch.cuda.graph``) after a few eager warm-up steps, and replayed: one launch a step.
Elsewhere (a CPU) the same function runs as it is; the tests compare it with the eager
loop, weight for weight.

A batch of another shape (the ragged last batch of token data) runs the function
eagerly; so does everything under torchrun (a collective inside a captured graph is left
to a later version). A capture that fails falls back to eager, with one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from prunescope.pruning.masks import Masker
from prunescope.training import objective
from prunescope.training.precision import autocast

log = logging.getLogger("prunescope")

WARMUP_STEPS = 3  # eager steps before capture: optimizer state exists, allocators settle


def capture_wanted(setting: bool | str, device: torch.device, distributed: bool) -> bool:
    """``true``/``false`` as given; ``auto``: on CUDA outside torchrun, where launches are
    what a small network's step costs (a CPU step has no launch overhead to save)."""
    if distributed:
        return False
    if setting != "auto":
        return bool(setting)
    return device.type == "cuda"


class DeviceStep:
    """Steps of one training phase (one optimizer, one masker, one learning-rate table)."""

    def __init__(
        self,
        *,
        model: nn.Module,
        forward: Callable[[torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        masker: Masker | None,
        lr_table: list[float],
        precision: str,
        label_smoothing: float,
        device: torch.device,
    ):
        self.model, self.forward, self.optimizer = model, forward, optimizer
        self.masker = masker if masker else None
        self.precision, self.smoothing, self.device = precision, label_smoothing, device
        # On a CPU the optimizer reads lr as a Python number, as the eager loop passes it:
        # float64 keeps it the same number. torch's fused CUDA kernels read a float32 tensor.
        dtype = torch.float32 if device.type == "cuda" else torch.float64
        self.lr_table = torch.tensor(lr_table, dtype=dtype, device=device)
        self.lr = self.lr_table[0].clone()
        for group in optimizer.param_groups:
            group["lr"] = self.lr
        self.index = torch.zeros((), dtype=torch.int64, device=device)
        # loss sum, correct, scored, first non-finite step (-1: none)
        self._fresh = torch.tensor([0.0, 0.0, 0.0, -1.0], dtype=torch.float64, device=device)
        self.stats = self._fresh.clone()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.steps = 0
        self.start = self.index.clone()
        self.capture = device.type == "cuda"

    def reset_stats(self) -> None:
        self.stats.copy_(self._fresh)

    # -- the step itself ---------------------------------------------------------------------
    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=False)  # static gradients (a graph needs them)
        with autocast(self.device, self.precision):
            out = self.forward(x)
            loss = objective.loss(out, y, label_smoothing=self.smoothing)
        loss.backward()
        if self.masker:
            self.masker.mask_grads()
        self.optimizer.step()
        if self.masker:
            self.masker.mask_weights()
        self._count(out.detach(), y, loss.detach())
        self.index.add_(1)
        nxt = torch.clamp(self.index, max=len(self.lr_table) - 1).view(1)
        # index_select, not lr_table[nxt]: indexing with a tensor reads it on the host
        # (a sync every step, and an error inside a CUDA graph capture)
        self.lr.copy_(torch.index_select(self.lr_table, 0, nxt).view(()))

    def _count(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        correct, scored = objective.correct_count(out, y)
        bad = (self.stats[3] < 0) & ~torch.isfinite(loss)
        step = (self.index - self.start).double()
        self.stats[3] = torch.where(bad, step, self.stats[3])
        self.stats[0] += loss.double() * scored
        self.stats[1] += correct
        self.stats[2] += scored

    # -- running it --------------------------------------------------------------------------
    def begin_epoch(self) -> None:
        self.reset_stats()
        self.start.copy_(self.index)  # in place: a captured graph reads this very tensor

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.steps += 1
        if self.graph is not None and self._fits(x, y):
            self.static[0].copy_(x)
            self.static[1].copy_(y)
            self.graph.replay()
            return
        self._step(x, y)
        if self.capture and self.graph is None and self.steps >= WARMUP_STEPS:
            self._capture(x, y)

    def _fits(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        sx, sy = self.static
        return x.shape == sx.shape and y.shape == sy.shape and x.stride() == sx.stride()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record one step as a CUDA graph (recording runs nothing: the next call replays)."""
        self.static = (x.clone(memory_format=torch.preserve_format), y.clone())
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                self._step(*self.static)
        except Exception as exc:  # an op that cannot be captured: stay eager, say so once
            self.capture = False
            log.warning(
                "train.capture: the step could not be captured as a CUDA graph (%s: %s); "
                "training on without it",
                type(exc).__name__,
                str(exc).splitlines()[0][:160] if str(exc) else "",
            )
            return
        self.graph = graph

    def epoch_stats(self) -> tuple[float, int, int, int]:
        """(loss sum, correct, scored, first non-finite step or -1): one read of the device."""
        loss_sum, correct, scored, bad = self.stats.tolist()
        return loss_sum, int(correct), int(scored), int(bad)
