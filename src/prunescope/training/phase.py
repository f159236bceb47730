"""One training phase of a run (pretraining, or one level) with mid-phase checkpoints: a
phase killed anywhere resumes from its last checkpoint to bit-identical weights.

A checkpoint holds the model, the optimizer's state, the RNG states and the per-epoch
rows so far (:mod:`prunescope.rundir.checkpoint`); one that does not fit or does not
restore is ignored with one line, and the phase starts over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from prunescope.pruning.masks import Masker, Masks, apply_masks, relayout_state
from prunescope.rundir.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from prunescope.rundir.layout import RunDir
from prunescope.torchrun import lead_phase
from prunescope.tracking import NullTracker, Tracker
from prunescope.training.progress import PhaseProgress
from prunescope.training.trainer import EpochResult, Trainer

log = logging.getLogger("prunescope")


@dataclass(frozen=True)
class Phase:
    """Epochs ``first_epoch..end_epoch-1`` of the schedule, from ``start`` (× ``masks``);
    ``final_lr`` holds the learning rate at the schedule's last value (fine-tuning)."""

    kind: str  # "pretrain" or "level"
    level: int | None
    start: dict[str, torch.Tensor]
    masks: Masks | None
    first_epoch: int
    end_epoch: int
    final_lr: bool = False

    @property
    def name(self) -> str:
        return "pretraining" if self.kind == "pretrain" else f"level {self.level}"


def _begin(trainer: Trainer, phase: Phase) -> torch.optim.Optimizer:
    """The model at the phase's start, and a fresh optimizer (zero momentum at every level: docs/guide.md, "IMP as implemented")."""
    trainer.model.load_state_dict(phase.start)
    if phase.masks is not None:
        apply_masks(trainer.model, phase.masks)
    return trainer.new_optimizer()


def _resume(
    trainer: Trainer, rd: RunDir, phase: Phase, optimizer: torch.optim.Optimizer
) -> tuple[torch.optim.Optimizer, list[dict], int]:
    """(optimizer, rows so far, epoch to begin at): from the phase's checkpoint, if any."""
    ck = load_checkpoint(rd, phase.kind, phase.level, trainer.model)
    if ck is None or not phase.first_epoch < ck.next_epoch <= phase.end_epoch:
        return optimizer, [], phase.first_epoch
    try:
        trainer.model.load_state_dict(ck.model_state)
        optimizer.load_state_dict(ck.optimizer_state)
        relayout_state(optimizer)
        restore_rng(ck.rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        log.warning(
            "%s: ignoring a checkpoint that does not restore (%s)", phase.name, str(exc)[:200]
        )
        return _begin(trainer, phase), [], phase.first_epoch
    log.info(
        "%s: resuming from the checkpoint after epoch %d of %d",
        phase.name,
        ck.next_epoch - phase.first_epoch,
        phase.end_epoch - phase.first_epoch,
    )
    return optimizer, ck.rows, ck.next_epoch


def write_live_progress(rd: RunDir, phase: Phase, next_epoch: int) -> None:
    """Where training is now, in the lock file beside the holder's pid (``status`` shows it
    while the lock is held; the lock is no run file, so nothing is recorded)."""
    from prunescope.rundir.layout import now

    if rd.lock is not None:
        done, of = next_epoch - phase.first_epoch, phase.end_epoch - phase.first_epoch
        rd.lock.note(f"{phase.name}: epoch {done} of {of} done at {now()}")


def train_phase(
    trainer: Trainer,
    rd: RunDir,
    phase: Phase,
    checkpoint_every: int,
    tracker: Tracker | None = None,
) -> list[dict]:
    """Train the phase (resuming from its checkpoint); returns the per-epoch rows. Every
    epoch trained here, not those restored from the checkpoint, goes to ``tracker``."""
    tracker = tracker if tracker is not None else NullTracker()
    optimizer, rows, begin = _resume(trainer, rd, phase, _begin(trainer, phase))
    lead_phase(trainer.model, phase, optimizer, begin)
    progress = PhaseProgress(
        phase.name,
        phase.first_epoch,
        phase.end_epoch,
        begin,
        checkpoint_every=checkpoint_every,
        save=lambda next_epoch: save_checkpoint(
            rd, phase.kind, phase.level, next_epoch, trainer.model, optimizer, rows
        ),
    )

    def on_epoch(r: EpochResult) -> None:
        rows.append(r.row())
        progress(r)
        write_live_progress(rd, phase, r.epoch + 1)
        tracker.epoch(phase.kind, phase.level, r)

    try:
        trainer.fit(
            begin,
            phase.end_epoch,
            optimizer,
            Masker(trainer.model, phase.masks) if phase.masks is not None else None,
            on_epoch=on_epoch,
            desc=f"{phase.name}: ",
            first_epoch=phase.first_epoch,
            final_lr=phase.final_lr,
        )
    finally:
        progress.close()
    return rows
