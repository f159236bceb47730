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

from hostile_helpers import one_error_line
from prunescope.cli import build_parser, main
from prunescope.errors import ConfigError, RunDirError
from prunescope.sweep import run_sweep, sweep_status
from prunescope.sweep.jobs import start
from prunescope.sweep.slurm import executor_parameters
from prunescope.sweep.spec import MAX_RUNS, SweepBase, SweepFile, expand, load_sweep
from prunescope.sweep.state import is_run_name

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
    assert all(is_run_name(n) for n in names)  # what sweep.json may name, and nothing else
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
        # paired keys take a list per choice: a scalar was an internal error, a string was
        # split into its characters
        ('"model.name,data.name" = [5]\n', "each choice is a list of 2 values, one per key"),
        ('"model.name,data.name" = ["ab"]\n', "each choice is a list of 2 values"),
    ],
)
def test_bad_grids_are_refused_before_any_run(tmp_path, capsys, grid, says):
    path = write_sweep(tmp_path, grid)
    assert main(["sweep", str(path), "--dir", str(tmp_path / "s")]) == 2
    assert says in one_line(capsys)
    assert not (tmp_path / "s").exists()


def test_unknown_executor_and_missing_submitit(tmp_path, capsys, monkeypatch):
    path = write_sweep(tmp_path, GRID_2X2)
    assert main(["sweep", str(path), "--executor", "kubernetes"]) == 2
    assert "unknown executor 'kubernetes': choose local or slurm" in one_line(capsys)
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


# --- A sweep folder or sweep file from someone else (issue #20): one line, exit 2, and
# nothing written outside. The sweep folders are built by hand: nothing trains.

RUN = "seed0-0123abcd"


def hand_sweep(root: Path, change=None) -> Path:
    """A sweep folder as prunescope writes it, with one run not started yet."""
    rec = {
        "format": "prunescope-sweep",
        "format_version": 1,
        "sweep_file": "/sweeps/grid.toml",
        "base": {"preset": "quickstart", "config": None, "set": []},
        "grid": {"seed": [0]},
        "slurm": {},
        "runs": [{"name": RUN, "values": {"seed": 0}, "levels": 1}],
        "jobs": [],
    }
    if change is not None:
        rec = change(rec)
    root.mkdir(parents=True, exist_ok=True)
    text = rec if isinstance(rec, str) else json.dumps(rec)
    (root / "sweep.json").write_text(text)
    return root


def run_entry(**fields):
    return lambda rec: {**rec, "runs": [{"name": RUN, "levels": 1, **fields}]}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda rec: {**rec, "runs": {"a": 1}}, "'runs': Input should be a valid list"),
        (lambda rec: {**rec, "runs": [{"levels": 1}]}, "'runs.0.name': Field required"),
        (run_entry(levels="3"), "'runs.0.levels': Input should be a valid integer"),
        (run_entry(levels=-1), "'runs.0.levels': Input should be greater than or equal to 0"),
        (lambda rec: {**rec, "jobs": 5}, "'jobs': Input should be a valid list"),
        (lambda rec: {**rec, "grid": [1]}, "'grid': Input should be a valid dictionary"),
        (lambda rec: [rec], "expected a JSON object"),
        (run_entry(levels=10**30), "'runs.0.levels': Input should be less than or equal to 60"),
        (lambda rec: json.dumps(rec).replace('"levels": 1', '"levels": 1e400'), "'runs.0.levels'"),
        (lambda rec: json.dumps(rec).replace('"levels": 1', '"levels": ' + "9" * 5000), "4300"),
        (lambda rec: {**rec, "format": "other"}, "'format'"),
        # a run name is one plain path component: status and report never leave the sweep
        (run_entry(name="../victim"), "'runs.0.name': Value error, a run name is <slug>-<hash8>"),
        (run_entry(name="/etc"), "'runs.0.name'"),
        (run_entry(name="seed0/x-0123abcd"), "'runs.0.name'"),
        (run_entry(name=".."), "'runs.0.name'"),
    ],
)
@pytest.mark.parametrize("command", ["sweep status", "report"])
def test_a_damaged_sweep_json_is_refused_in_one_line(tmp_path, capsys, change, says, command):
    root = hand_sweep(tmp_path / "s", change)
    assert main([*command.split(), str(root)]) == 2
    line = one_error_line(capsys)
    assert "sweep.json" in line and says in line, line


def test_a_sweep_json_that_is_not_a_regular_file_is_refused(tmp_path, capsys):
    real = hand_sweep(tmp_path / "elsewhere")
    root = tmp_path / "s"
    root.mkdir()
    (root / "sweep.json").symlink_to(real / "sweep.json")
    assert main(["sweep", "status", str(root)]) == 2
    assert "sweep.json cannot be read (a symbolic link)" in one_line(capsys)
    (root / "sweep.json").unlink()
    os.mkfifo(root / "sweep.json")  # reading it would block forever
    for command in (["sweep", "status"], ["report"]):
        assert main([*command, str(root)]) == 2
        assert "sweep.json cannot be read (not a regular file)" in one_error_line(capsys)


def test_status_and_report_do_not_follow_a_run_or_logs_link(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    root = hand_sweep(tmp_path / "s")
    (root / RUN).symlink_to(victim)
    for command in (["sweep", "status"], ["report"]):
        assert main([*command, str(root)]) == 2
        assert f"{root / RUN} is a symbolic link" in one_error_line(capsys)
    (root / RUN).unlink()
    (root / "logs").symlink_to(victim)
    assert main(["sweep", "status", str(root)]) == 2
    assert "logs is a symbolic link" in one_error_line(capsys)
    assert list(victim.iterdir()) == []


def test_a_log_that_is_a_fifo_or_link_is_neither_read_nor_written(tmp_path):
    root = hand_sweep(tmp_path / "s")
    log = root / "logs" / f"{RUN}.log"
    log.parent.mkdir()
    os.mkfifo(log)
    [state] = sweep_status(root)  # read without blocking: as if there were no log
    assert state.state == "pending"
    with pytest.raises(RunDirError, match=r"cannot append to .* \(a FIFO\)"):
        start([sys.executable, "-c", "pass"], log)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    log.unlink()
    log.symlink_to(victim)
    with pytest.raises(RunDirError, match=r"cannot append to .* \(a symbolic link\)"):
        start([sys.executable, "-c", "pass"], log)
    assert victim.read_text() == "mine\n"


def one_point_sweep(tmp_path: Path) -> tuple[Path, Path, str]:
    path = write_sweep(tmp_path, "seed = [0]\n")
    return path, tmp_path / "s", expand(load_sweep(path))[0].name


@pytest.mark.parametrize("link", ["run", "logs"])
def test_a_sweep_never_writes_through_a_link(tmp_path, capsys, link):
    path, root, name = one_point_sweep(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    root.mkdir()
    (root / (name if link == "run" else "logs")).symlink_to(victim)
    assert main(["sweep", str(path), "--dir", str(root)]) == 2
    assert "is a symbolic link; prunescope writes a sweep's" in one_error_line(capsys)
    assert list(victim.iterdir()) == []


def test_submitits_folder_is_not_a_link(tmp_path):
    pytest.importorskip("submitit")
    path, root, _ = one_point_sweep(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    root.mkdir()
    (root / "submitit").symlink_to(victim)
    with pytest.raises(RunDirError, match="submitit is a symbolic link"):
        run_sweep(path, executor="slurm", sweep_dir=root, cluster="local", analyze=False)
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("link", ["report", "report/figures"])
def test_report_of_a_sweep_never_writes_through_a_link(tmp_path, capsys, monkeypatch, link):
    import prunescope.sweep as sweep_mod

    root = hand_sweep(tmp_path / "s")
    # a run with a trained level, as far as the sweep can tell (nothing trains here)
    monkeypatch.setattr(sweep_mod, "sweep_runs", lambda _: [root / RUN])
    victim = tmp_path / "victim"
    victim.mkdir()
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(victim)
    assert main(["report", str(root)]) == 2
    assert f"{root / link} is a symbolic link" in one_error_line(capsys)
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'[base]\npreset = "quick\xe9start"\n', "is not UTF-8 text (at byte offset 22)"),
        (b"[grid]\nseed = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nests its values too deeply"),
    ],
)
def test_a_sweep_file_that_is_not_toml_text(tmp_path, capsys, data, says):
    path = tmp_path / "grid.toml"
    path.write_bytes(data)
    assert main(["sweep", str(path), "--dir", str(tmp_path / "s")]) == 2
    assert says in one_line(capsys)
    assert not (tmp_path / "s").exists()


def test_a_sweep_file_that_is_a_fifo_is_not_read(tmp_path, capsys):
    os.mkfifo(tmp_path / "grid.toml")
    assert main(["sweep", str(tmp_path / "grid.toml"), "--dir", str(tmp_path / "s")]) == 2
    assert "(not a regular file)" in one_line(capsys)


def test_a_grid_is_counted_before_it_is_expanded(tmp_path, capsys):
    rates = ", ".join(str(i / 2000) for i in range(1, 1001))
    path = write_sweep(tmp_path, f'seed = {list(range(1000))}\n"imp.rate" = [{rates}]\n')
    began = time.monotonic()
    assert main(["sweep", str(path), "--dir", str(tmp_path / "s")]) == 2
    assert time.monotonic() - began < 10  # expanding it took hours
    line = one_line(capsys)
    assert "the grid has 1,000,000 points, more than 10,000" in line
    assert "allow it with --max-runs 1000000" in line
    assert not (tmp_path / "s").exists()
    small = write_sweep(tmp_path, GRID_2X2, "small.toml")
    assert main(["sweep", str(small), "--dir", str(tmp_path / "s"), "--max-runs", "3"]) == 2
    assert "the grid has 4 points, more than 3" in one_line(capsys)
    assert main(["sweep", str(small), "--dir", str(tmp_path / "s"), "--max-runs", "0"]) == 2
    assert "--max-runs must be at least 1, got 0" in one_line(capsys)
    assert build_parser().parse_args(["sweep", "x.toml"]).max_runs == MAX_RUNS


@pytest.mark.parametrize(
    "slurm",
    [
        'partition = "gpu\\ntouch X #"',
        'slurm_setup = ["module load cuda", "a\\rb"]',
        'slurm_additional_parameters = { comment = { deep = ["x\\u2028y"] } }',
        '"part\\nition" = "gpu"',
    ],
)
def test_slurm_values_with_control_characters_are_refused(tmp_path, capsys, slurm):
    path = write_sweep(tmp_path, "seed = [0]\n")
    path.write_text(path.read_text() + f"\n[slurm]\n{slurm}\n")
    args = ["sweep", str(path), "--executor", "slurm", "--dir", str(tmp_path / "s")]
    assert main(args) == 2
    assert "holds a control character" in one_line(capsys)
    assert not (tmp_path / "s").exists()
    # and where the table goes to submitit, whoever calls it
    with pytest.raises(ConfigError, match="holds a control character"):
        executor_parameters({"partition": "gpu\ntouch X #"}, 1)
