"""A crash at any single write of the run directory leaves it usable.

The crash is an exception injected at the N-th atomic write, before or after
its rename; the next command reads everything back from disk, as it would
after a SIGKILL (the subprocess tests in test_crash_safety.py do the real kills).
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

import prunescope.rundir.atomic as atomic
from imp_helpers import tiny_config
from prunescope.cli import main
from prunescope.runner import analyze, run
from prunescope.status import status_text


class Crash(BaseException):
    """Not an Exception: nothing in prunescope may catch it, like a kill."""


@pytest.fixture
def crash_at(monkeypatch):
    def arm(n: int, when: str) -> None:
        real = atomic.os.replace
        count = {"writes": 0}

        def replace(src, dst):
            count["writes"] += 1
            if count["writes"] == n and when == "before":
                raise Crash
            real(src, dst)
            if count["writes"] == n and when == "after":
                raise Crash

        monkeypatch.setattr(atomic.os, "replace", replace)

    return arm


def attempt(fn, *args, **kw) -> bool:
    """True when the call crashed."""
    try:
        fn(*args, **kw)
    except Crash:
        return True
    return False


@pytest.mark.parametrize("when", ["before", "after"])
def test_creating_a_run_crash_anywhere(tmp_path, crash_at, monkeypatch, when):
    for n in range(1, 8):
        root = tmp_path / f"{when}{n}"
        crash_at(n, when)
        crashed = attempt(run, root, tiny_config("imp.levels=0"), analyze=False)
        monkeypatch.undo()
        run(root, tiny_config("imp.levels=0"), analyze=False)  # the same command again
        assert "all levels complete" in status_text(root), (n, crashed)
        assert "damaged files: none" in status_text(root)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_changing_settings_crash_anywhere(analysed_run, tmp_path, crash_at, monkeypatch, when):
    for n in range(1, 6):
        root = tmp_path / f"{when}{n}"
        shutil.copytree(analysed_run, root)
        crash_at(n, when)
        attempt(analyze, root, ["analysis.zeroing.test_subset=50"], ["sparsity"], None, False)
        monkeypatch.undo()
        assert "damaged files: none" in status_text(root), n
        analyze(root, ["analysis.zeroing.test_subset=50"], ["zeroing"], None, False)
        assert "test_subset = 50" in (root / "config.toml").read_text()


def test_redo_from_crash_anywhere_never_keeps_old_levels_under_the_new_config(
    analysed_run, tmp_path, crash_at, monkeypatch
):
    for n in range(1, 30, 2):
        root = tmp_path / f"r{n}"
        shutil.copytree(analysed_run, root)
        crash_at(n, "after")
        crashed = attempt(run, root, tiny_config("train.lr=0.04"), analyze=False, redo_from=2)
        monkeypatch.undo()
        manifest = json.loads((root / "manifest.json").read_text())
        config = (root / "config.toml").read_text()
        if "lr = 0.04" in config:
            # the new settings are on disk: no level from 2 on may still be one trained with the old ones
            for k, v in manifest["levels"].items():
                if int(k) >= 2 and v.get("status") == "complete":
                    old = (analysed_run / f"levels/{k}/model.safetensors").read_bytes()
                    assert (root / f"levels/{k}/model.safetensors").read_bytes() != old, (n, k)
        if not crashed:
            break
        assert main(["run", "--run-dir", str(root), "--no-analyze"]) == 0, n


@pytest.mark.slow
def test_redo_from_recomputes_the_analyses_of_the_redone_levels(analysed_run, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(analysed_run, root)
    before = pd.read_csv(root / "analysis/zeroing.csv")
    run(root, tiny_config("train.lr=0.04"), analyze=True, redo_from=2)
    after = pd.read_csv(root / "analysis/zeroing.csv")
    pd.testing.assert_frame_equal(before[before["level"] < 2], after[after["level"] < 2])
    assert not after[after["level"] == 2]["accuracy"].equals(
        before[before["level"] == 2]["accuracy"]
    )
    # what the incremental analysis kept equals a full recomputation
    analyze(root, [], ["zeroing"], None, True)
    pd.testing.assert_frame_equal(after, pd.read_csv(root / "analysis/zeroing.csv"))
