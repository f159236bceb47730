"""Sweeps (DESIGN §14): a grid of runs, run locally or through submitit, safe to re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunescope.cli import main
from prunescope.sweep import run_sweep, sweep_status
from prunescope.sweep.spec import SweepBase, SweepFile, expand, load_sweep

TINY = [
    "data.train_subset=128",
    "data.test_subset=60",
    "imp.levels=1",
    "imp.pretrain_epochs=1",
    "imp.train_epochs=1",
    "threads=1",  # submitit's local executor starts all four at once on 2 cores
]


def write_sweep(folder: Path, grid: str, name: str = "grid.toml") -> Path:
    sets = ", ".join(json.dumps(s) for s in TINY)
    path = folder / name
    path.write_text(f'[base]\npreset = "quickstart"\nset = [{sets}]\n\n[grid]\n{grid}\n')
    return path


GRID_2X2 = 'seed = [0, 1]\n"imp.rate" = [0.2, 0.4]\n'


def test_points_slugs_and_hashes():
    sweep = SweepFile(
        base=SweepBase(preset="quickstart", set=["imp.levels=2"]),
        grid={"seed": [0, 1], "imp.rate": [0.2, 0.4], "model.name,data.name": [["mlp", "digits"]]},
    )
    points = expand(sweep)
    names = [p.name for p in points]
    assert len(set(names)) == 4
    assert names[1].startswith("seed0-rate0.4-namemlp-namedigits-")
    assert [p.config.seed for p in points] == [0, 0, 1, 1]
    assert [p.config.imp.rate for p in points] == [0.2, 0.4, 0.2, 0.4]
    assert all(p.config.model.name == "mlp" and p.config.imp.levels == 2 for p in points)
    assert names == [p.name for p in expand(sweep)]  # stable
    # where and how fast a run goes is not part of its identity; what decides its numbers is
    where = SweepFile(base=SweepBase(preset="quickstart", set=["imp.levels=2", "threads=1"]))
    deciding = SweepFile(base=SweepBase(preset="quickstart", set=["imp.levels=2", "train.lr=0.1"]))
    plain = SweepFile(base=SweepBase(preset="quickstart", set=["imp.levels=2"]))
    assert expand(where)[0].name == expand(plain)[0].name
    assert expand(deciding)[0].name != expand(plain)[0].name


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("grid", "says"),
    [
        (
            '"imp.rat" = [0.2]\n',
            "grid key 'imp.rat' is not a config key (did you mean 'imp.rate'?)",
        ),
        ('"imp.rate" = [0.2, 1.5]\n', "grid point imp.rate=1.5: imp.rate"),
    ],
)
def test_bad_grids_are_refused_before_any_run(tmp_path, capsys, grid, says):
    path = write_sweep(tmp_path, grid)
    assert main(["sweep", str(path), "--dir", str(tmp_path / "s")]) == 2
    assert says in one_line(capsys)
    assert not (tmp_path / "s").exists()


def test_unknown_executor_and_missing_submitit(tmp_path, capsys, monkeypatch):
    path = write_sweep(tmp_path, GRID_2X2)
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(path), "--executor", "kubernetes"])
    assert stop.value.code == 2
    assert "invalid choice: 'kubernetes'" in one_line(capsys)
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now fails
    assert main(["sweep", str(path), "--executor", "slurm", "--dir", str(tmp_path / "s")]) == 2
    assert "pip install 'prunescope[slurm]'" in one_line(capsys)
    assert not (tmp_path / "s").exists()


def test_status_names_a_failed_run_and_its_reason(tmp_path, capsys):
    # vgg16 needs 32-pixel images: the run itself refuses digits' 8 pixels
    path = write_sweep(tmp_path, 'seed = [0]\n"model.name" = ["vgg16"]\n')
    assert main(["sweep", str(path), "--dir", str(tmp_path / "s"), "--no-analyze"]) == 1
    capsys.readouterr()
    [state] = sweep_status(tmp_path / "s")
    assert state.state == "failed" and state.levels_done == 0
    assert "needs images of at least 32px" in state.note
    assert main(["sweep", "status", str(tmp_path / "s")]) == 0
    assert "failed" in capsys.readouterr().out


def wait_for(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_local_sweep_resumes_and_a_rerun_does_nothing(tmp_path):
    path = write_sweep(tmp_path, GRID_2X2)
    root = tmp_path / "s"
    cmd = [sys.executable, "-m", "prunescope", "sweep", str(path), "--dir", str(root)]
    cmd += ["--jobs", "2", "--no-analyze"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(s.state == "complete" for s in _states(root)), 300)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    states = _states(root)
    assert any(s.state != "complete" for s in states), "killed too late to test a resume"
    # the runs it had started die with it (no run is left holding its lock)
    wait_for(lambda: not any(s.state == "running" for s in _states(root)), 60)
    run_sweep(path, slots=2, sweep_dir=root, analyze=False)
    assert [s.state for s in _states(root)] == ["complete"] * 4
    logs = {p: p.stat().st_mtime_ns for p in (root / "logs").iterdir()}
    run_sweep(path, slots=2, sweep_dir=root, analyze=False)  # nothing left: nothing runs
    assert logs == {p: p.stat().st_mtime_ns for p in (root / "logs").iterdir()}
    record = json.loads((root / "sweep.json").read_text())
    assert [r["name"] for r in record["runs"]] == [s.name for s in _states(root)]
    assert record["grid"] == {"seed": [0, 1], "imp.rate": [0.2, 0.4]}


def _states(root: Path):
    return sweep_status(root) if (root / "sweep.json").exists() else []


@pytest.mark.slow
def test_a_sweep_through_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit")
    path = write_sweep(tmp_path, GRID_2X2)
    root = run_sweep(
        path,
        executor="slurm",
        slots=2,
        sweep_dir=tmp_path / "s",
        analyze=False,
        cluster="local",
        wait=True,
    )
    assert [s.state for s in sweep_status(root)] == ["complete"] * 4
    record = json.loads((root / "sweep.json").read_text())
    [job] = record["jobs"]
    assert job["executor"] == "local" and len(job["job_ids"]) == 4
    # the report overlays the runs by what varies, seeds as replicates
    assert main(["report", str(root)]) == 0
    html = (root / "report" / "index.html").read_text()
    assert "imp.rate=0.2 (mean of seeds 0, 1)" in html
    assert "imp.rate=0.4 (mean of seeds 0, 1)" in html
    assert load_sweep(path).grid == record["grid"]


def test_the_shipped_sweep_files_expand():
    root = Path(__file__).resolve().parents[1] / "sweeps"
    fig4 = expand(load_sweep(root / "fig4-resnet20.toml"))
    assert len(fig4) == 2 * 3 * 3 and len({p.name for p in fig4}) == 18
    assert {(p.config.imp.train_epochs, tuple(p.config.train.milestones)) for p in fig4} == {
        (50, (27, 40)),
        (100, (54, 80)),
        (150, (80, 120)),
    }
    assert [p.config.seed for p in expand(load_sweep(root / "cpu-resnet20-seeds.toml"))] == [
        0,
        1,
        2,
    ]
