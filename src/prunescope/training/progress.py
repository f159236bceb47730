"""Progress of one training phase (pretraining, or one level): the bar, the log line of
each epoch, and when a mid-level checkpoint is due.

Epochs are numbered within the phase everywhere a person reads them (bar, log,
``status``): "level 1: epoch 3 of 10", never the position in the whole schedule.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

from prunescope.training.trainer import EpochResult

log = logging.getLogger("prunescope")

# Without a checkpoint_every setting, a checkpoint about every 5 minutes.
CHECKPOINT_SECONDS = 300


class PhaseProgress:
    def __init__(
        self,
        name: str,
        first_epoch: int,
        end_epoch: int,
        begin: int,
        *,
        checkpoint_every: int,
        save: Callable[[int], None],
    ):
        self.name = name
        self.first_epoch = first_epoch
        self.end_epoch = end_epoch
        self.every = checkpoint_every
        self.save = save
        self.last_save = time.monotonic()
        # no progress bars in a log file: one line per epoch instead
        self.chatty = not sys.stderr.isatty()
        self.bar = tqdm(
            total=end_epoch - first_epoch,
            initial=begin - first_epoch,
            desc=name,
            unit="epoch",
            leave=False,
            disable=None,
        )

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.first_epoch

    def number(self, epoch: int) -> int:
        """1-based number of a schedule epoch within this phase."""
        return epoch + 1 - self.first_epoch

    def __call__(self, r: EpochResult) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{r.train_loss:.3f}", acc=f"{r.train_accuracy:.3f}")
        if self.chatty:
            log.info(
                "%s: epoch %d of %d  lr %.4g  loss %.4f  train acc %.4f  (%.1fs)",
                self.name,
                self.number(r.epoch),
                self.epochs,
                r.lr,
                r.train_loss,
                r.train_accuracy,
                r.seconds,
            )
        done = self.number(r.epoch)
        due = (self.every > 0 and done % self.every == 0) or (
            self.every == 0 and time.monotonic() - self.last_save >= CHECKPOINT_SECONDS
        )
        if due and r.epoch + 1 < self.end_epoch:
            self.save(r.epoch + 1)
            self.last_save = time.monotonic()

    def close(self) -> None:
        self.bar.close()
