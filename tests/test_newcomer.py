"""A newcomer's first hour (issue #11): mistakes that leave nothing broken, time one can see,
messages that do not mislead. Each test failed before its fix."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_helpers import one_error_line
from imp_helpers import tiny_cli_args, tiny_config
from prunescope.cli import main
from prunescope.config import build_config
from prunescope.errors import ConfigError
from prunescope.runner import run
from prunescope.status import status_text

# --- run directories a mistake cannot break ----------------------------------------------

MISTAKES = {
    "missing data root": ["--set", "data.name=cifar10", "--set", "data.root=/nonexistent/x"],
    "imp.exclude naming no module": ["--set", 'imp.exclude=["fc", "nope"]'],
    "device=cuda without CUDA": ["--set", "device=cuda"],
    "analysis subset larger than the test set": ["--set", "analysis.zeroing.test_subset=5000"],
}


@pytest.mark.parametrize("mistake", [*MISTAKES, "empty tinyimagenet folder"])
def test_a_failed_first_run_leaves_nothing_and_the_corrected_run_works(mistake, tmp_path, capsys):
    root = tmp_path / "deep" / "run"
    extra = MISTAKES.get(mistake)
    if extra is None:
        (tmp_path / "tin" / "tiny-imagenet-200").mkdir(parents=True)
        extra = ["--set", "data.name=tinyimagenet", "--set", f"data.root={tmp_path / 'tin'}"]
    if mistake == "device=cuda without CUDA":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    argv = ["run", "--run-dir", str(root), "--no-analyze", *tiny_cli_args("imp.levels=0")]
    assert main([*argv, *extra]) == 2
    one_error_line(capsys)
    assert not root.exists() and not root.parent.exists()  # not even a .lock
    assert main(argv) == 0  # the corrected command is not refused as "a different config"


def test_a_directory_with_nothing_trained_is_taken_over(tmp_path, caplog):
    from prunescope.rundir.session import WriteSession

    root = tmp_path / "run"
    with WriteSession(root, tiny_config("imp.levels=0", "train.lr=7")):
        pass  # created, then the first run died before its rewind point
    caplog.set_level(logging.INFO, logger="prunescope")
    run(root, tiny_config("imp.levels=0"), analyze=False)
    assert "holds no trained state yet" in caplog.text
    assert "lr = 0.05" in (root / "config.toml").read_text()


def test_resume_time_set_applies_on_top_of_the_stored_config(analysed_run, tmp_path):
    import shutil

    root = tmp_path / "r"
    shutil.copytree(analysed_run, root)
    assert main(["run", "--run-dir", str(root), "--set", "train.checkpoint_every=1"]) == 0
    text = (root / "config.toml").read_text()
    assert "checkpoint_every = 1" in text and "train_subset = 256" in text  # the run's own


def test_preset_and_config_together(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text("[imp]\nlevels = 2\n[train]\nlr = 0.02\n")
    cfg = build_config(preset="quickstart", config_file=f, overrides=["train.lr=0.03"])
    assert cfg.model.name == "resnet8"  # from the preset
    assert cfg.imp.levels == 2  # the file on top of the preset
    assert cfg.train.lr == 0.03  # --set last
    root = tmp_path / "run"
    argv = ["run", "--run-dir", str(root), "--preset", "quickstart", "--config", str(f)]
    assert main([*argv, "--set", "imp.rate=7"]) == 2  # accepted together: only the bad value fails


def test_status_never_contradicts_itself(damaged_copy):
    root = damaged_copy()
    data = bytearray((root / "levels/01/model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "levels/01/model.safetensors").write_bytes(bytes(data))
    text = status_text(root)
    assert "DAMAGED FILES (1)" in text and "all levels complete" not in text
    assert "trained, DAMAGED (see below)" in text
    assert text.splitlines()[-1] == (
        "levels 0-3 of 0-3 complete, but 1 level (1) damaged: redo from level 1 before going on"
    )


def test_plurals_and_levels_done(analysed_run, caplog):
    caplog.set_level(logging.INFO, logger="prunescope")
    assert main(["run", "--run-dir", str(analysed_run), "--no-analyze"]) == 0
    assert "(levels 0-3 of 0-3 complete)" in caplog.text and "levels done" not in caplog.text
    header = status_text(analysed_run).splitlines()[0]
    assert "3 levels of 0.2" in header and "2 epochs per level" in header
    from prunescope.wording import plural

    assert plural(1, "level") == "1 level" and plural(1, "epoch") == "1 epoch"


# --- time a newcomer can see ------------------------------------------------------------


def test_an_estimate_after_the_first_level(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="prunescope")
    run(tmp_path / "r", tiny_config("imp.levels=1"), analyze=False)
    line = next(r.message for r in caplog.records if r.message.startswith("estimate:"))
    assert "more training for 1 level (done around " in line


def test_help_and_argument_errors_do_not_import_torch():
    code = (
        "import sys\n"
        "from prunescope.cli import build_parser\n"
        "p = build_parser()\n"
        "p.format_help()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_bare_prunescope_prints_the_help(capsys):
    assert main([]) == 0
    assert "usage: prunescope" in capsys.readouterr().out


# --- progress and messages that do not mislead ------------------------------------------


def test_one_epoch_numbering_everywhere(tmp_path):
    root = tmp_path / "r"
    cmd = [
        sys.executable,
        "-m",
        "prunescope",
        "run",
        "--run-dir",
        str(root),
        "--no-analyze",
        *tiny_cli_args("imp.levels=0", "imp.pretrain_epochs=1", "imp.train_epochs=2"),
    ]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    assert "pretraining: epoch 1 of 1" in err
    assert "level 0: epoch 1 of 2" in err and "level 0: epoch 2 of 2" in err
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["levels"].pop("00")
    manifest["checkpoint"] = {"phase": "level", "level": 0, "epoch": 2}  # after 1 of 2
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert "in progress (1 of 2 epochs done)" in status_text(root)


def test_the_zeroing_bar_counts_what_it_says(analysed_run, monkeypatch, tmp_path):
    import shutil

    import prunescope.analysis.zeroing as zmod

    bars = []
    real = zmod.tqdm

    def spy(*a, **kw):
        bars.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(zmod, "tqdm", spy)
    root = tmp_path / "r"
    shutil.copytree(analysed_run, root)
    assert main(["analyze", str(root), "--only", "zeroing", "--levels", "1", "--force"]) == 0
    assert bars and bars[0]["unit"] == "step" and "(layer x batch)" in bars[0]["desc"]


def test_analysis_logs_name_every_level(analysed_run, tmp_path, caplog):
    import shutil

    root = tmp_path / "r"
    shutil.copytree(analysed_run, root)
    caplog.set_level(logging.INFO, logger="prunescope")
    assert main(["analyze", str(root), "--only", "sparsity", "--force"]) == 0
    for level in range(4):
        assert f"sparsity: level {level} done" in caplog.text
    assert "sparsity: 4 levels analysed" in caplog.text


def test_ctrl_c_says_what_is_kept_and_how_to_resume(tmp_path, monkeypatch, capsys, damaged_copy):
    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("prunescope.runner.run", interrupted)
    # before the run directory exists: no resume to suggest
    assert main(["run", "--run-dir", str(tmp_path / "d"), "--preset", "quickstart"]) == 130
    assert one_error_line(capsys) == (
        "prunescope: interrupted before anything was trained; nothing is kept: run the same "
        "command again"
    )
    # in a level with a checkpoint: what resumes where, and what is lost
    root = damaged_copy()
    from prunescope.rundir.redo import forget_levels_from
    from prunescope.rundir.session import open_run_dir

    rd, _ = open_run_dir(root)
    forget_levels_from(rd, 3)
    rd.manifest["checkpoint"] = {"phase": "level", "level": 3, "epoch": 2}  # 1 of 2 done
    rd.save_manifest()
    assert main(["run", "--run-dir", str(root)]) == 130
    assert one_error_line(capsys) == (
        "prunescope: interrupted; levels 0-2 of 0-3 complete; level 3 resumes from its "
        "checkpoint after epoch 1 of 2; the epochs after it are lost; resume with: "
        f"prunescope run --run-dir {root}"
    )


@pytest.mark.parametrize(
    ("item", "hint"),
    [
        ("train.learning_rate=0.1", "did you mean 'train.lr'?"),
        ("train.wd=0.1", "did you mean 'train.weight_decay'?"),
        ("data.dataset=cifar10", "did you mean 'data.name'?"),
        ("imp.pruning_rate=0.3", "did you mean 'imp.rate'?"),
        ("imp.exclude=fc", """(write --set 'imp.exclude=["fc"]')"""),
    ],
)
def test_hints_find_the_key_meant(item, hint):
    with pytest.raises(ConfigError) as info:
        build_config(preset="quickstart", overrides=[item])
    assert hint in info.value.lines[0]


def test_a_data_root_one_level_too_high_names_the_folder_inside(tmp_path, capsys):
    from hostile_helpers import fake_cifar

    fake_cifar(tmp_path / "data" / "cifar10" / "cifar-10-batches-py")
    argv = ["train", "--out", str(tmp_path / "o"), "--set", f"data.root={tmp_path / 'data'}"]
    assert main(argv) == 2
    assert f"set data.root={tmp_path / 'data' / 'cifar10'}" in one_error_line(capsys)


def test_report_without_analyses_says_what_fills_it(tmp_path, caplog):
    root = tmp_path / "r"
    run(root, tiny_config("imp.levels=1"), analyze=False)
    caplog.set_level(logging.INFO, logger="prunescope")
    assert main(["report", str(root)]) == 0
    want = f"prunescope analyze {root} --only sparsity,weights,zeroing,similarity"
    assert want in caplog.text
    assert want in (root / "report/index.html").read_text()
    # analyze rebuilds the report it made stale
    assert main(["analyze", str(root), "--only", "sparsity"]) == 0
    page = (root / "report/index.html").read_text()
    assert "neuron_sparsity.png" in page and "--only weights,zeroing,similarity" in page
    assert "report rebuilt from the new tables" in caplog.text


def _levels(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())["levels"]


def test_status_shows_the_level_in_training_and_who_holds_the_lock(damaged_copy):
    """While a run trains, status said "pending" for its level and suggested a command that
    would hit the lock."""
    from prunescope.rundir.lock import RunLock
    from prunescope.rundir.redo import forget_levels_from
    from prunescope.rundir.session import open_run_dir

    root = damaged_copy()
    rd, _ = open_run_dir(root)
    forget_levels_from(rd, 3)
    lock = RunLock(root).acquire()
    try:
        lock.note("level 3: epoch 1 of 2 done at 2026-12-07T10:00:00+00:00")
        text = status_text(root)
    finally:
        lock.release()
    line = next(line for line in text.splitlines() if line.strip().startswith("03"))
    assert "training now" in line
    assert (
        f"in use by prunescope process {__import__('os').getpid()} (level 3: epoch 1 of 2" in text
    )
    assert "prunescope run --run-dir" not in text.splitlines()[-1]
    assert "continues at level 3" in status_text(root)  # the lock free again
