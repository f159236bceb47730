"""Watching a run as it trains (docs/guide.md, "Tracking"): one small interface, a
no-op tracker by default, and TensorBoard event files under ``RUN_DIR/tensorboard/``
when ``track.tensorboard = true``.

What goes where (one TensorBoard *run* per folder, so that a chart overlays them):

    tensorboard/pretrain/    epoch/train_loss, epoch/train_accuracy, epoch/lr, epoch/seconds
    tensorboard/level_NN/    the same tags, one folder per IMP level
    tensorboard/levels/      level/network_sparsity, level/test_accuracy, ... (step: the level)
    tensorboard/headlines/   headline/<key>: the report's numbers (step: the last level)

The step of an epoch is its index in the one schedule (pretraining 0..r-1, every level
r..E-1), as in ``levels/NN/epochs.csv``: every level's curve lies over the same epochs,
one curve per level on one chart, and pretraining's curve ends where they begin.

Event files are observation, not results: TensorBoard appends to them as training goes,
so they cannot be recorded with a sha256 as the run's files are. They are not in the
manifest and prunescope never reads them back; ``status`` and every command ignore them.
They are still only ever written into real folders of the run directory, never through a
symbolic link (:func:`~prunescope.rundir.files.own_folder`).

A phase or a level resumed or trained again (``--redo-from``) would log its epochs twice;
each writer opens with ``purge_step`` at the first step it logs, so TensorBoard hides the
events of an earlier session from that step on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prunescope.errors import RunDirError, UserInputError
from prunescope.rundir.files import own_folder
from prunescope.rundir.layout import level_name

if TYPE_CHECKING:
    from prunescope.config import Config
    from prunescope.rundir.layout import RunDir
    from prunescope.training.trainer import EpochResult

log = logging.getLogger("prunescope")

TENSORBOARD = "tensorboard"  # the folder under the run directory
LEVELS_RUN = "levels"
HEADLINES_RUN = "headlines"
EPOCH_TAGS = ("train_loss", "train_accuracy", "lr", "seconds")
LEVEL_TAGS = (
    "network_sparsity",
    "parameter_sparsity",
    "remaining_weights",
    "test_accuracy",
    "test_loss",
)


class Tracker(Protocol):
    """Where a run reports what it does as it does it; every method must be cheap."""

    def epoch(self, phase: str, level: int | None, result: EpochResult) -> None:
        """One epoch of a phase: ``phase`` is "pretrain" (``level`` None) or "level"."""

    def level(self, level: int, metrics: Mapping[str, Any]) -> None:
        """A level is complete: its ``metrics.json``."""

    def summary(self, headlines: Mapping[str, float | None], level: int) -> None:
        """The report's headline numbers, as of the last complete ``level``."""

    def close(self) -> None:
        """Everything written out; the tracker may be used again afterwards."""


class NullTracker:
    """The default: nothing tracked, nothing imported."""

    def epoch(self, phase: str, level: int | None, result: EpochResult) -> None:
        pass

    def level(self, level: int, metrics: Mapping[str, Any]) -> None:
        pass

    def summary(self, headlines: Mapping[str, float | None], level: int) -> None:
        pass

    def close(self) -> None:
        pass


def phase_run(phase: str, level: int | None) -> str:
    """The TensorBoard run (folder) of a training phase: "pretrain" or "level_03"."""
    return "pretrain" if phase == "pretrain" else f"level_{level_name(int(level or 0))}"


def summary_writer_class() -> type:
    """torch's SummaryWriter; a clear line when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserInputError(
            "track.tensorboard = true needs the tensorboard package: pip install "
            "'prunescope[track]' (or resume with --set track.tensorboard=false)"
        ) from None
    return SummaryWriter


class TensorBoardTracker:
    """Event files under ``root/tensorboard/<run>/``, one writer per TensorBoard run."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.writer_class = summary_writer_class()
        # checked (and made) now: a link found here stops the command before it trains
        own_folder(self.root / TENSORBOARD, "TensorBoard event files", base=self.root)
        self.writers: dict[str, Any] = {}
        self.phase: str | None = None  # the run of the phase being trained

    def _writer(self, run: str, first_step: int) -> Any:
        """The run's writer of this session, opened at its first step (see purge_step above)."""
        if run not in self.writers:
            folder = own_folder(
                self.root / TENSORBOARD / run, "TensorBoard event files", base=self.root
            )
            try:
                self.writers[run] = self.writer_class(str(folder), purge_step=first_step)
            except OSError as exc:
                raise RunDirError(
                    f"cannot write TensorBoard event files under {folder} ({exc.strerror or exc})"
                ) from None
        return self.writers[run]

    def _close_run(self, run: str) -> None:
        writer = self.writers.pop(run, None)
        if writer is not None:
            writer.close()

    def epoch(self, phase: str, level: int | None, result: EpochResult) -> None:
        run = phase_run(phase, level)
        if self.phase not in (None, run):  # phases come one after another: the last is done
            self._close_run(self.phase)
        self.phase = run
        writer = self._writer(run, result.epoch)
        for tag in EPOCH_TAGS:
            writer.add_scalar(f"epoch/{tag}", getattr(result, tag), result.epoch)
        writer.flush()  # an epoch takes seconds to hours: let TensorBoard show it now

    def level(self, level: int, metrics: Mapping[str, Any]) -> None:
        self._scalars(LEVELS_RUN, "level", metrics, LEVEL_TAGS, level)

    def summary(self, headlines: Mapping[str, float | None], level: int) -> None:
        self._scalars(HEADLINES_RUN, "headline", headlines, tuple(headlines), level)
        self._close_run(HEADLINES_RUN)

    def _scalars(
        self, run: str, prefix: str, values: Mapping[str, Any], keys: tuple[str, ...], step: int
    ) -> None:
        writer = self._writer(run, step)
        for key in keys:
            value = values.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(f"{prefix}/{key}", value, step)
        writer.flush()

    def close(self) -> None:
        for run in list(self.writers):
            self._close_run(run)
        self.phase = None


def tracker_for(cfg: Config, root: Path) -> Tracker:
    """The tracker a run's config asks for; under torchrun only rank 0 writes."""
    from prunescope.distributed import world

    if not cfg.track.tensorboard or not world().writer:
        return NullTracker()
    return TensorBoardTracker(root)


def track_report(rd: RunDir, cfg: Config, findings: Mapping[str, Any]) -> None:
    """After a report: its headline numbers (from ``summary.json``'s findings, one number
    each), at the run's last complete level."""
    levels = rd.completed_levels()
    if not cfg.track.tensorboard or not levels:
        return
    from prunescope.report.build import headline

    tracker = tracker_for(cfg, rd.root)
    try:
        tracker.summary(headline(dict(findings), cfg.analysis.plugins), levels[-1])
    finally:
        tracker.close()
