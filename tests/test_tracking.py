"""``track.tensorboard``: TensorBoard event files in the run directory, read back with the
tensorboard package's own reader and compared with the run's files (``epochs.csv``,
``metrics.json``, ``summary.json``), never with numbers from the code under test."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from imp_helpers import tiny_cli_args, tiny_config
from prunescope import distributed
from prunescope.cli import main
from prunescope.errors import RunDirError, UserInputError
from prunescope.tracking import NullTracker, TensorBoardTracker, tracker_for
from prunescope.training.trainer import EpochResult


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> [(step, value)] of one TensorBoard run, as TensorBoard shows it."""
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def f32(value: float) -> float:
    """How TensorBoard stores a scalar."""
    return float(np.float32(value))


def epochs_rows(run: Path, level: int) -> list[dict[str, str]]:
    with open(run / f"levels/{level:02d}/epochs.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_event_files_hold_the_runs_own_numbers(tmp_path):
    run = tmp_path / "r"
    args = ["run", "--run-dir", str(run), *tiny_cli_args("track.tensorboard=true", "threads=1")]
    assert main(args) == 0
    board = run / "tensorboard"
    levels = [0, 1, 2, 3]  # tiny_config: imp.levels = 3
    assert sorted(p.name for p in board.iterdir()) == sorted(
        ["pretrain", "levels", "headlines", *(f"level_{lv:02d}" for lv in levels)]
    )

    pretrain = scalars(board / "pretrain")
    assert set(pretrain) == {
        "epoch/train_loss",
        "epoch/train_accuracy",
        "epoch/lr",
        "epoch/seconds",
    }
    assert [step for step, _ in pretrain["epoch/train_loss"]] == [0]  # imp.pretrain_epochs = 1

    for level in levels:
        rows = epochs_rows(run, level)
        assert len(rows) == 2  # imp.train_epochs = 2
        got = scalars(board / f"level_{level:02d}")
        for column in ("train_loss", "train_accuracy", "lr"):
            want = [(int(r["epoch"]), f32(float(r[column]))) for r in rows]
            assert got[f"epoch/{column}"] == want, (level, column)
        assert [s for s, _ in got["epoch/seconds"]] == [int(r["epoch"]) for r in rows]

    per_level = scalars(board / "levels")
    for key in ("network_sparsity", "test_accuracy", "test_loss", "remaining_weights"):
        want = [
            (lv, f32(json.loads((run / f"levels/{lv:02d}/metrics.json").read_text())[key]))
            for lv in levels
        ]
        assert per_level[f"level/{key}"] == want, key

    findings = json.loads((run / "report/summary.json").read_text())["findings"]
    heads = scalars(board / "headlines")
    critical = findings["critical_sparsity"]["network_sparsity"]
    if critical is not None:
        assert heads["headline/critical_sparsity"] == [(3, f32(critical))]
    last = findings["fully_pruned_neurons"]["last_level_fully_pruned"]
    assert heads["headline/fully_pruned_last"] == [(3, f32(last))]
    assert all(s == 3 for values in heads.values() for s, _ in values)

    # observation, not results: no event file is a recorded run file, and none is damaged
    manifest = json.loads((run / "manifest.json").read_text())
    assert not [rel for rel in manifest["files"] if rel.startswith("tensorboard")]
    assert main(["status", str(run)]) == 0


def result(epoch: int, loss: float) -> EpochResult:
    return EpochResult(epoch, 0.1, loss, 0.5, -1, 1.0)


def test_a_phase_trained_again_hides_what_an_earlier_session_logged(tmp_path):
    """A level killed after epoch 3 but checkpointed after epoch 2 trains epoch 3 again:
    TensorBoard shows each epoch once, with the values of the session that finished it."""
    first = TensorBoardTracker(tmp_path)
    for epoch in (1, 2, 3):
        first.epoch("level", 2, result(epoch, 1.0))
    first.level(2, {"test_accuracy": 0.1})
    first.close()
    time.sleep(1.1)  # event files are ordered by their names, which start with the second
    second = TensorBoardTracker(tmp_path)
    for epoch in (3, 4):
        second.epoch("level", 2, result(epoch, 2.0))
    second.level(2, {"test_accuracy": 0.2})
    second.close()
    got = scalars(tmp_path / "tensorboard" / "level_02")["epoch/train_loss"]
    assert got == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
    assert scalars(tmp_path / "tensorboard" / "levels")["level/test_accuracy"] == [(2, f32(0.2))]


def test_phases_write_their_own_folders_and_close(tmp_path):
    tracker = TensorBoardTracker(tmp_path)
    tracker.epoch("pretrain", None, result(0, 3.0))
    tracker.epoch("level", 0, result(1, 2.0))
    assert set(tracker.writers) == {"level_00"}  # pretraining's writer closed with its phase
    tracker.level(0, {"network_sparsity": 0.0, "test_loss": None, "test_accuracy": 0.5})
    tracker.close()
    assert tracker.writers == {}
    assert scalars(tmp_path / "tensorboard" / "pretrain")["epoch/train_loss"] == [(0, 3.0)]
    levels = scalars(tmp_path / "tensorboard" / "levels")
    assert set(levels) == {"level/network_sparsity", "level/test_accuracy"}  # None: left out


def test_never_written_through_a_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "tensorboard").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(RunDirError, match="symbolic link"):
        TensorBoardTracker(run)
    (run / "tensorboard").unlink()
    tracker = TensorBoardTracker(run)
    (run / "tensorboard" / "level_01").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(RunDirError, match="symbolic link"):
        tracker.epoch("level", 1, result(1, 1.0))
    tracker.close()
    assert list(elsewhere.iterdir()) == []


def test_off_by_default_and_off_on_other_ranks(tmp_path, monkeypatch):
    assert isinstance(tracker_for(tiny_config(), tmp_path), NullTracker)
    on = tiny_config("track.tensorboard=true")
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=1, size=2))
    assert isinstance(tracker_for(on, tmp_path), NullTracker)
    assert not (tmp_path / "tensorboard").exists()


def test_without_the_tensorboard_package_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(UserInputError, match=r"pip install 'prunescope\[track\]'"):
        tracker_for(tiny_config("track.tensorboard=true"), tmp_path)


@pytest.mark.slow
def test_tracking_may_be_turned_on_when_a_run_resumes(tmp_path):
    run = tmp_path / "r"
    base = ["run", "--run-dir", str(run), *tiny_cli_args("threads=1", "imp.levels=1")]
    assert main([*base, "--no-analyze"]) == 0
    more = ["--set", "imp.levels=2", "--set", "track.tensorboard=true", "--no-analyze"]
    assert main(["run", "--run-dir", str(run), *more]) == 0
    board = run / "tensorboard"
    assert sorted(p.name for p in board.iterdir()) == ["level_02", "levels"]  # only what it trained
    assert [s for s, _ in scalars(board / "levels")["level/test_accuracy"]] == [2]
