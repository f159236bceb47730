"""Damaged, foreign and mistaken input: detected, one clear line, the right exit code, nothing run."""

from __future__ import annotations

import errno
import json
import pickle
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_helpers import one_error_line, resign
from prunescope import load_level
from prunescope.cli import main
from prunescope.config import build_config
from prunescope.config.load import known_keys
from prunescope.errors import ConfigError, EnvironmentFault, RunDirError
from prunescope.rundir.atomic import atomic_write_bytes
from prunescope.status import status_text


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


LEVEL_FILES = [
    "levels/01/model.safetensors",
    "levels/01/mask.safetensors",
    "levels/01/metrics.json",
    "levels/01/epochs.csv",
]


@pytest.mark.parametrize("damage", [flip, truncate])
@pytest.mark.parametrize("rel", [*LEVEL_FILES, "rewind.safetensors"])
def test_damaged_level_files_are_detected_and_redone(damaged_copy, rel, damage, capsys):
    root = damaged_copy()
    original = (root / rel).read_bytes()
    damage(root / rel)
    assert f"{rel}: " in status_text(root) and "DAMAGED FILES (1)" in status_text(root)
    if rel != "levels/01/epochs.csv":  # the run verifies what the next levels are built from
        assert main(["run", "--run-dir", str(root), "--no-analyze"]) == 2
        line = one_error_line(capsys)
        redo = 0 if rel == "rewind.safetensors" else 1
        assert "damaged" in line and f"--redo-from {redo}" in line
    if rel.endswith("model.safetensors") or rel.endswith("mask.safetensors"):
        with pytest.raises(RunDirError, match="damaged"):
            load_level(root, 1)
    if rel.startswith("levels/"):
        # redoing from the damaged level restores exactly the same bytes (training is deterministic)
        assert main(["run", "--run-dir", str(root), "--no-analyze", "--redo-from", "1"]) == 0
        assert (root / rel).read_bytes() == original
        assert "damaged files: none" in status_text(root)


@pytest.mark.parametrize("damage", [flip, truncate])
def test_damaged_analysis_tables_are_recomputed(damaged_copy, damage, caplog):
    root = damaged_copy()
    original = (root / "analysis/zeroing.csv").read_bytes()
    damage(root / "analysis/zeroing.csv")
    assert main(["analyze", str(root), "--only", "zeroing"]) == 0
    assert "analysis/zeroing.csv is damaged" in caplog.text
    assert (root / "analysis/zeroing.csv").read_bytes() == original


def test_damaged_table_is_not_read_by_the_report(damaged_copy, capsys):
    root = damaged_copy()
    flip(root / "analysis/similarity.csv")
    assert main(["report", str(root)]) == 2
    line = one_error_line(capsys)
    assert "analysis/similarity.csv is damaged" in line and "analyze" in line and "--force" in line


@pytest.mark.parametrize("damage", [flip, truncate])
def test_damaged_manifest_or_config(damaged_copy, damage, capsys):
    root = damaged_copy()
    damage(root / "manifest.json")
    assert main(["status", str(root)]) == 2
    assert "manifest.json" in one_error_line(capsys)
    root = damaged_copy()
    damage(root / "config.toml")
    assert main(["run", "--run-dir", str(root)]) == 2
    line = one_error_line(capsys)
    # a damaged file that still parses is explained key by key (it reads as an edit)
    assert "config.toml is damaged" in line or "config.toml no longer matches" in line


class Marker:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_in_place_of_safetensors_never_runs(damaged_copy, tmp_path):
    root = damaged_copy()
    marker = tmp_path / "owned"
    resign(root, "levels/01/model.safetensors", pickle.dumps({"w": Marker(str(marker))}))
    with pytest.raises(RunDirError, match="not a valid safetensors file"):
        load_level(root, 1)
    assert not marker.exists()


def test_foreign_shapes_and_keys_are_refused(damaged_copy, capsys):
    from safetensors.torch import load_file, save

    root = damaged_copy()
    state = load_file(root / "levels/01/model.safetensors")
    state["conv1.weight"] = state["conv1.weight"][:, :, :2, :2].contiguous()
    state["extra.weight"] = state["fc.bias"].clone()
    resign(root, "levels/01/model.safetensors", save(state))
    with pytest.raises(
        RunDirError, match=r"does not fit this model .*unexpected \['extra.weight'\].*conv1.weight"
    ):
        load_level(root, 1)
    # a level built on top of it is refused too
    assert main(["run", "--run-dir", str(root), "--no-analyze", "--redo-from", "2"]) == 2
    assert "does not fit this model" in one_error_line(capsys)


def test_run_directory_of_another_version_or_tool(damaged_copy, tmp_path, capsys):
    root = damaged_copy()
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format_version"] = 99
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["status", str(root)]) == 2
    assert "written by run format 99" in one_error_line(capsys)
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"name": "something else"}))
    assert main(["analyze", str(other)]) == 2
    assert "not a prunescope run directory" in one_error_line(capsys)
    (other / "notes.txt").write_text("mine")
    (other / "manifest.json").unlink()
    assert main(["run", "--run-dir", str(other), "--preset", "quickstart"]) == 2
    assert "is not empty and is not a prunescope run directory" in one_error_line(capsys)


def test_unwritable_paths_and_a_full_disk(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--run-dir", str(blocker / "run"), "--preset", "quickstart"]) == 2
    assert "cannot create" in one_error_line(capsys)
    assert main(["run", "--run-dir", str(blocker), "--preset", "quickstart"]) == 2
    assert "exists and is not a folder" in one_error_line(capsys)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("prunescope.rundir.atomic.os.fsync", full)
    with pytest.raises(EnvironmentFault, match="disk full while writing"):
        atomic_write_bytes(tmp_path / "out" / "f.bin", b"12345")
    assert list((tmp_path / "out").iterdir()) == []  # no partial file left behind
    assert main(["run", "--run-dir", str(tmp_path / "r"), "--preset", "quickstart"]) == 1
    assert "disk full while writing" in one_error_line(capsys)


def test_missing_data_is_one_line(tmp_path, capsys):
    args = ["run", "--run-dir", str(tmp_path / "r"), "--set", f"data.root={tmp_path / 'none'}"]
    assert main(args) == 2
    assert "CIFAR-10 not found under" in one_error_line(capsys)
    assert not (tmp_path / "r" / "levels").exists()


# --- property-based: malformed configs and command lines -------------------------------

KEYS = known_keys()
text = st.text(alphabet=string.printable, max_size=20)
values = st.one_of(
    text,
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True).map(str),
    st.sampled_from(["true", "[1, 2]", '["fc"]', "{a = 1}", "'x'", '"', "[", "nan", "inf"]),
)
keys = st.one_of(st.sampled_from(KEYS), text, st.sampled_from(KEYS).map(lambda k: k + "x"))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"), min_size=1, max_size=4))
def test_random_overrides_validate_or_fail_with_lines(items):
    try:
        cfg = build_config(preset="quickstart", overrides=items)
    except ConfigError as exc:
        assert exc.lines and all(line and "\n" not in line for line in exc.lines)
    else:
        assert 0 < cfg.imp.rate < 1 and cfg.imp.train_epochs >= 1


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_toml_files(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("toml") / "c.toml"
    path.write_text(
        content, encoding="utf-8", errors="surrogatepass"
    ) if "\ud800" not in content else None
    if not path.exists():
        return
    try:
        build_config(config_file=path)
    except ConfigError as exc:
        assert exc.lines


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(
        ["run", "train", "status", "analyze", "report", "models", "bogus", "--nope"]
    ),
    extra=st.lists(
        st.one_of(
            text,
            st.sampled_from(
                [
                    "--set",
                    "--preset",
                    "--levels",
                    "--only",
                    "--force",
                    "--redo-from",
                    "--out",
                    "-x",
                    "--no-analyze",
                ]
            ),
        ),
        max_size=5,
    ),
)
def test_random_command_lines_end_cleanly(command, extra, tmp_path, capsys):
    argv = [command, *extra]
    if command in ("run", "train"):
        # never actually train: an invalid rate makes every such command a config error at worst
        argv += [
            "--set",
            "imp.rate=7",
            "--out" if command == "train" else "--run-dir",
            str(tmp_path / "d"),
        ]
    elif command in ("status", "analyze", "report"):
        argv.insert(1, str(tmp_path / "missing"))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        code = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code in (0, 2), (argv, captured.err)
    if code == 2:
        assert captured.err.strip().startswith("prunescope")
