"""Crash safety: SIGKILL anywhere and resume to identical files; locks; numerical faults."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imp_helpers import run_command, tiny_cli_args

# Files that record when and how long, not what: they may differ between two runs.
VOLATILE = {"manifest.json", ".lock", "report/index.html"}


def cli(run_dir: Path, *extra: str, analyze: bool = True) -> list[str]:
    return run_command(run_dir, "train.checkpoint_every=1", *extra, analyze=analyze)


def files_of(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and rel not in VOLATILE:
            out[rel] = p.read_bytes()
    return out


def _sessions(root: Path) -> int:
    try:
        return len(json.loads((root / "manifest.json").read_text())["sessions"])
    except (OSError, ValueError, KeyError):
        return 0


def _manifest_bytes(root: Path) -> bytes:
    try:
        return (root / "manifest.json").read_bytes()
    except OSError:
        return b""


def _stage(root: Path) -> str:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return "setup"
    done = sum(1 for v in manifest["levels"].values() if v.get("status") == "complete")
    if "rewind.safetensors" not in manifest["files"]:
        return "pretraining"
    return "training" if done < 4 else "analysis or report"


# Longer training than the other tests, so that kills land inside epochs as well.
LONGER = ("data.train_subset=512", "imp.train_epochs=4")


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_gives_identical_files(tmp_path):
    ref = tmp_path / "ref" / "run"
    subprocess.run(cli(ref, *LONGER), check=True, capture_output=True, timeout=600)
    want = files_of(ref)
    assert "levels/03/model.safetensors" in want and "report/figures/zeroing.png" in want

    victim = tmp_path / "victim" / "run"
    rng = random.Random(20261128)
    kills, kinds, stages = 0, [], []
    # Kills come early in each invocation, so that 20 of them land before the run is done:
    # every resumed invocation gets a little further, through training, saves and analysis.
    for attempt in range(60):
        env = dict(os.environ)
        training = _stage(victim) != "analysis or report"
        if attempt % 2 == 0:
            # an exact save point: the N-th write of this invocation, before or after its rename
            n = rng.randint(2, 24 if training else 14)
            env["PRUNESCOPE_FAULT_AT_WRITE"] = f"{n}:{rng.choice(['before', 'after'])}"
            rc = subprocess.run(
                cli(victim, *LONGER), env=env, capture_output=True, timeout=600
            ).returncode
            kind = env["PRUNESCOPE_FAULT_AT_WRITE"]
        else:
            # a random moment shortly after the process has saved some progress of its own:
            # mid-epoch, mid-analysis or mid-report
            sessions = _sessions(victim)
            proc = subprocess.Popen(
                cli(victim, *LONGER), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while proc.poll() is None and _sessions(victim) <= sessions:
                time.sleep(0.005)
            # kill after k saves of its own (training and analysis save often), or after a
            # random while (the report saves nothing until it is done)
            k, patience = rng.randint(1, 8), time.time() + rng.uniform(1.0, 3.5)
            seen, changes = _manifest_bytes(victim), 0
            while proc.poll() is None and changes < k and time.time() < patience:
                now = _manifest_bytes(victim)
                if now != seen:
                    seen, changes = now, changes + 1
                time.sleep(0.002)
            delay = rng.uniform(0.0, 0.2)
            try:
                rc = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            kind = f"{changes} saves+{delay:.2f}s"
        assert rc in (0, -signal.SIGKILL), f"attempt {attempt} ({kind}) failed with exit code {rc}"
        if rc == 0:
            # finished before enough kills (a slow or fast machine): go on with a new run
            victim = victim.parent.parent / f"victim{attempt}" / "run"
            continue
        kills += 1
        kinds.append(kind)
        stages.append(_stage(victim))
        if kills >= 20 and {"training", "analysis or report"} <= set(stages):
            break
    assert kills >= 20, kinds
    # the kills landed all along the way: before training, between and inside levels, in analysis
    assert {"training", "analysis or report"} <= set(stages), stages
    print(f"{kills} kills:", ", ".join(f"{k} ({s})" for k, s in zip(kinds, stages, strict=True)))
    final = subprocess.run(cli(victim, *LONGER), capture_output=True, timeout=600)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    got = files_of(victim)
    assert sorted(got) == sorted(want)
    different = [rel for rel in want if got[rel] != want[rel]]
    assert different == [], different
    # no temporary file survives, and the manifest knows every file
    assert not list(victim.rglob(".tmp-*"))
    manifest = json.loads((victim / "manifest.json").read_text())
    assert set(manifest["files"]) == set(want) | {"report/index.html"}
    assert not manifest.get("checkpoint")


@pytest.mark.parametrize(
    ("damage", "precision"),
    [
        (None, "auto"),
        pytest.param("state.safetensors", "auto", marks=pytest.mark.slow),
        pytest.param("state.json", "auto", marks=pytest.mark.slow),
        pytest.param(None, "fp32", marks=pytest.mark.slow),
    ],
)
def test_mid_level_checkpoint_resume_is_bitwise(tmp_path, damage, precision):
    """Kill exactly after a checkpoint inside level 2 and resume from it (or, when the
    checkpoint is damaged, ignore it and redo the level): the same files either way, in the
    default precision (bf16 on a CPU with fast bf16) and in fp32."""
    setting = f"train.precision={precision}"
    ref = tmp_path / "ref" / "run"
    subprocess.run(cli(ref, setting, analyze=False), check=True, capture_output=True, timeout=300)
    victim = tmp_path / "victim" / "run"
    proc = subprocess.Popen(
        cli(victim, setting, analyze=False), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            ck = json.loads((victim / "manifest.json").read_text()).get("checkpoint")
        except (OSError, ValueError):
            ck = None
        if ck and ck.get("level") == 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert ck and ck["level"] == 2, "never saw a level-2 checkpoint"
    assert (victim / "checkpoint/state.safetensors").exists()
    if damage:
        path = victim / "checkpoint" / damage
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x55
        path.write_bytes(bytes(data))
    out = subprocess.run(
        cli(victim, setting, analyze=False), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0
    if damage:
        assert (
            f"ignoring a damaged checkpoint: {victim / 'checkpoint' / damage} is damaged"
            in out.stderr
        )
        assert "resuming from the checkpoint" not in out.stderr
    else:
        assert "level 2: resuming from the checkpoint after epoch" in out.stderr
    assert files_of(victim) == files_of(ref)
    assert not (victim / "checkpoint/state.safetensors").exists()


def test_exactly_one_of_two_writers_proceeds(tmp_path):
    root = tmp_path / "run"
    procs = [
        subprocess.Popen(
            cli(root, analyze=False), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert "is in use by another prunescope process (pid" in loser
    assert "Traceback" not in loser and len(loser.strip().splitlines()) == 1


def test_a_stale_lock_is_taken_over(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / ".lock").write_text("999999\n")  # a process that no longer exists left it
    out = subprocess.run(
        cli(root, "imp.levels=1", analyze=False), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert (root / ".lock").read_text().strip() != "999999"


def test_non_finite_loss_stops_the_level_and_keeps_completed_ones(tmp_path, monkeypatch, capsys):
    import torch

    from prunescope.cli import main

    root = tmp_path / "run"
    args = [
        "run",
        "--run-dir",
        str(root),
        "--no-analyze",
        *tiny_cli_args("imp.levels=2")[2:],
        "--preset",
        "quickstart",
    ]
    assert main([*args, "--set", "imp.levels=1"]) == 0
    kept = {k: v for k, v in files_of(root).items() if k.startswith(("levels/", "rewind"))}
    # a diverging level 2: one NaN weight makes the very first loss NaN
    from prunescope.training import phase as phase_module

    real_apply = phase_module.apply_masks

    def poisoned(model, masks):
        real_apply(model, masks)
        if sum(int((~m).sum()) for m in masks.values()) > 0.3 * sum(
            m.numel() for m in masks.values()
        ):
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("nan")

    monkeypatch.setattr(phase_module, "apply_masks", poisoned)
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert line == (
        "prunescope: error: level 2: non-finite training loss at epoch 1 of 2, step 1 (lr 0.0375); lower "
        "train.lr or check the data; completed levels are intact, change the config and resume "
        "with --redo-from 2"
    )
    assert {k: v for k, v in files_of(root).items() if k in kept} == kept  # levels 0-1 untouched
    assert not (root / "levels/02/model.safetensors").exists()
    monkeypatch.setattr(phase_module, "apply_masks", real_apply)
    # changing a training setting needs --redo-from; with it, level 2 is trained with the new setting
    assert main([*args, "--set", "train.lr=0.04"]) == 2
    assert "use --redo-from N" in capsys.readouterr().err
    assert main([*args, "--set", "train.lr=0.04", "--redo-from", "2"]) == 0
    assert json.loads((root / "levels/02/metrics.json").read_text())["level"] == 2
    assert {k: v for k, v in files_of(root).items() if k in kept} == kept
    history = json.loads((root / "manifest.json").read_text())["config_history"]
    assert history[-1]["redo_from"] == 2
    assert history[-1]["changed"]["train.lr"] == {"old": 0.05, "new": 0.04}


@pytest.mark.slow
def test_a_branch_killed_anywhere_resumes_to_identical_files(tmp_path):
    """A control branch is crash-safe like a run: SIGKILL at its writes and inside its epochs,
    resume, and every file equals an uninterrupted branch's."""
    parent = tmp_path / "parent"
    subprocess.run(cli(parent, analyze=False), check=True, capture_output=True, timeout=300)
    branch = [sys.executable, "-m", "prunescope", "branch"]

    def run_branch(root, env=None):
        return subprocess.run(
            [*branch, str(root), "random_mask", "--no-analyze"],
            env=env,
            capture_output=True,
            timeout=300,
        )

    ref, victim = tmp_path / "ref", tmp_path / "victim"
    for root in (ref, victim):
        shutil.copytree(parent, root)
    assert run_branch(ref).returncode == 0
    want = files_of(ref / "branches/random_mask")
    rng = random.Random(7)
    kills = 0
    for attempt in range(20):
        env = dict(os.environ)
        env["PRUNESCOPE_FAULT_AT_WRITE"] = f"{rng.randint(2, 16)}:{rng.choice(['before', 'after'])}"
        if attempt % 2:  # or at a random moment
            env.pop("PRUNESCOPE_FAULT_AT_WRITE")
            proc = subprocess.Popen(
                [*branch, str(victim), "random_mask", "--no-analyze"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                rc = proc.wait(timeout=rng.uniform(1.5, 4.0))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                rc = proc.wait()
        else:
            rc = run_branch(victim, env).returncode
        assert rc in (0, -signal.SIGKILL), rc
        if rc == 0:
            break
        kills += 1
    assert kills >= 4
    assert run_branch(victim).returncode == 0
    got = files_of(victim / "branches/random_mask")
    assert sorted(got) == sorted(want)
    assert [rel for rel in want if got[rel] != want[rel]] == []
