"""The torchrun protocol of a run's training (docs/guide.md, "One run on several GPUs"): rank 0 leads, the others follow.

Rank 0 alone reads and writes the run directory. Before every training phase it
broadcasts what the phase starts from (the model state, whether there are masks and the
masks themselves, a resumed optimizer state, the epochs); the other ranks train the same
phase in step with it (:mod:`prunescope.distributed` averages the gradients) and write
nothing. ``None`` or a message without ``begin`` ends the followers' loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from prunescope.distributed import broadcast_object, broadcast_tensors, world
from prunescope.pruning.masks import Masker, dense_masks, relayout_state

if TYPE_CHECKING:
    from prunescope.training.phase import Phase
    from prunescope.training.trainer import Trainer


def lead_phase(
    model: torch.nn.Module, phase: Phase, optimizer: torch.optim.Optimizer, begin: int
) -> None:
    """Rank 0: what the phase starts from, to every rank (a no-op in one process)."""
    if not world().distributed:
        return
    resumed = begin != phase.first_epoch
    broadcast_object(
        {
            "masks": phase.masks is not None,
            "optimizer": optimizer.state_dict() if resumed else None,
            "first_epoch": phase.first_epoch,
            "begin": begin,
            "end_epoch": phase.end_epoch,
            "final_lr": phase.final_lr,
        }
    )
    broadcast_tensors(model.state_dict())
    if phase.masks is not None:
        broadcast_tensors(phase.masks)


def follow_phases(trainer: Trainer, keys: list[str]) -> dict[str, Any] | None:
    """A rank other than 0: train every phase rank 0 announces, in step with it; return
    rank 0's next message once training is done (None when it stopped)."""
    model = trainer.model
    while (phase := broadcast_object()) is not None and "begin" in phase:
        masks = dense_masks(model, keys) if phase["masks"] else None
        broadcast_tensors(model.state_dict())
        if masks is not None:
            broadcast_tensors(masks)
        optimizer = trainer.new_optimizer()
        if phase["optimizer"] is not None:
            optimizer.load_state_dict(phase["optimizer"])
            relayout_state(optimizer)
        trainer.fit(
            phase["begin"],
            phase["end_epoch"],
            optimizer,
            Masker(model, masks) if masks is not None else None,
            first_epoch=phase["first_epoch"],
            final_lr=phase["final_lr"],
        )
    return phase
