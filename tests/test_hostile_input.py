"""Damaged, foreign and mistaken input: detected, one clear line, the right exit code, nothing run."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_helpers import fake_cifar, one_error_line, resign, write_planetoid
from prunescope import load_level
from prunescope.cli import main
from prunescope.config import build_config
from prunescope.config.load import known_keys
from prunescope.data import graph as graph_mod
from prunescope.data.graph import load_planetoid
from prunescope.errors import ConfigError, DataError, EnvironmentFault, RunDirError
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


# --- hostile Planetoid files (data.name = "planetoid"): one DataError line each -----------


def dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def forged(matrix, **attrs):
    """A real scipy matrix whose attributes are then set as a forger would (pickle writes
    them as they are)."""
    for name, value in attrs.items():
        setattr(matrix, name, value)
    return matrix


def write_index(folder: Path, text: str) -> None:
    (folder / "ind.toy.test.index").write_text(text)


def shared_list_graph(folder: Path, _) -> None:
    # 2,000 nodes share one list of 3,000 neighbours through the pickle memo: 6 million
    # entries from a file of a few kB
    neighbours = list(range(3000))
    dump(folder / "ind.toy.graph", {i: neighbours for i in range(2000)})


# tamper(folder, feats) and the message it must end in; write_planetoid's folder has 12 nodes
# (allx rows 0..5, tx rows for test.index 9, 7, 11, 8, 6), 4 features and 3 classes
PLANETOID_ATTACKS = {
    "lil matrix": (
        lambda d, x: dump(d / "ind.toy.allx", sp.lil_matrix(x[:6])),
        r"refusing to load scipy\.sparse\._lil\.lil_matrix",
    ),
    "object data in csr": (
        lambda d, x: dump(
            d / "ind.toy.allx",
            forged(sp.csr_matrix(x[:6]), data=sp.csr_matrix(x[:6]).data.astype(object)),
        ),
        r"ind\.toy\.allx: object values in its data; planetoid reads only numeric arrays",
    ),
    "object labels": (
        lambda d, x: dump(d / "ind.toy.y", np.eye(3, dtype=object)),
        r"ind\.toy\.y: object values in the one-hot labels",
    ),
    "a 10^9 x 10^9 shape": (
        lambda d, x: dump(d / "ind.toy.tx", forged(sp.csr_matrix(x[:5]), _shape=(10**9, 10**9))),
        r"ind\.toy\.tx: a 1,000,000,000 x 1,000,000,000 matrix is more than 50,000,000 "
        r"elements",
    ),
    "a negative shape": (
        lambda d, x: dump(d / "ind.toy.tx", forged(sp.csr_matrix(x[:5]), _shape=(-5, 4))),
        r"ind\.toy\.tx: its shape is \(-5, 4\), not two non-negative integers",
    ),
    "a csr without arrays": (
        lambda d, x: dump(d / "ind.toy.x", forged(sp.csr_matrix(x[:3]), __dict__={})),
        r"ind\.toy\.x: a csr matrix without its arrays",
    ),
    "NaN features": (
        lambda d, x: dump(d / "ind.toy.allx", sp.csr_matrix(x[:6] * np.nan)),
        r"ind\.toy\.allx: NaN or infinite values in its data",
    ),
    "features of another width": (
        lambda d, x: dump(d / "ind.toy.tx", sp.csr_matrix(x[:5, :3])),
        r"ind\.toy\.\{x,tx,allx\} must agree on a number of features above 0 \(they hold 4, 3, 4\)",
    ),
    "a span of a billion test nodes": (
        lambda d, x: write_index(d, "9\n7\n1000000000\n8\n6\n"),
        r"ind\.toy\.\* describe 1,000,000,001 nodes x 4 features or classes, more than "
        r"50,000,000 elements",
    ),
    "a negative test node": (
        lambda d, x: write_index(d, "9\n7\n11\n8\n-1\n"),
        r"test\.index must number the test nodes from 6, right after allx's 6 rows \(its "
        r"smallest is -1\)",
    ),
    "a training node in test.index": (
        lambda d, x: write_index(d, "9\n7\n11\n8\n2\n"),
        r"test\.index must number the test nodes from 6, .* \(its smallest is 2\)",
    ),
    "a test node twice": (
        lambda d, x: write_index(d, "9\n7\n7\n8\n6\n"),
        r"test\.index names a test node twice",
    ),
    "a fraction in test.index": (
        lambda d, x: write_index(d, "9\n7\n1.5\n8\n6\n"),
        r"cannot read .*test\.index \(could not convert string '1\.5' to int64",
    ),
    "an empty test.index": (
        lambda d, x: write_index(d, "# nothing\n"),
        r"ind\.toy\.test\.index names no test node",
    ),
    "a graph that is a list": (
        lambda d, x: dump(d / "ind.toy.graph", [[1], [2]]),
        r"ind\.toy\.graph: expected a dict of adjacency lists, found a list",
    ),
    "a text node": (
        lambda d, x: dump(d / "ind.toy.graph", {"a": [1]}),
        r"ind\.toy\.graph: a node is a str, not a non-negative integer",
    ),
    "a negative neighbour": (
        lambda d, x: dump(d / "ind.toy.graph", {0: [1, -3]}),
        r"ind\.toy\.graph: node 0 lists the neighbour -3, not a non-negative integer",
    ),
    "a fractional neighbour": (
        lambda d, x: dump(d / "ind.toy.graph", {0: [1.5]}),
        r"node 0 lists the neighbour a float, not a non-negative integer",
    ),
    "a bool neighbour": (
        lambda d, x: dump(d / "ind.toy.graph", {0: [True]}),
        r"node 0 lists the neighbour a bool, not a non-negative integer",
    ),
    "an object array of neighbours": (
        lambda d, x: dump(d / "ind.toy.graph", {0: np.array([1, "x"], dtype=object)}),
        r"ind\.toy\.graph: the neighbours of node 0 are a numpy array, not a list",
    ),
    "six million neighbours in a small file": (
        shared_list_graph,
        r"ind\.toy\.graph lists more than 5,000,000 neighbours",
    ),
    "labels in one dimension": (
        lambda d, x: dump(d / "ind.toy.y", np.array([0, 1, 2])),
        r"ind\.toy\.y: the one-hot labels must be 2-D, not 1-D",
    ),
    "labels of another class count": (
        lambda d, x: dump(d / "ind.toy.ty", np.eye(5, 2)),
        r"ind\.toy\.\{y,ty,ally\} must agree on a number of classes above 0 \(they hold 3, 2, 3\)",
    ),
    "a label of 2": (
        lambda d, x: dump(d / "ind.toy.ally", 2 * np.eye(6, 3)),
        r"ind\.toy\.ally: labels other than 0 and 1",
    ),
    "sparse labels": (
        lambda d, x: dump(d / "ind.toy.y", sp.csr_matrix(np.eye(3))),
        r"ind\.toy\.y: expected a numpy array as the one-hot labels, found a scipy csr matrix",
    ),
    "more labels than features": (
        lambda d, x: dump(d / "ind.toy.y", np.eye(4, 3)),
        r"ind\.toy\.x has 3 rows but .*ind\.toy\.y has 4 \(one row of labels for each row",
    ),
    "more training nodes than allx rows": (
        lambda d, x: (dump(d / "ind.toy.y", np.eye(7, 3)), dump(d / "ind.toy.x", x[:7])),
        r"ind\.toy\.y labels 7 training nodes but allx holds only 6 rows",
    ),
}


@pytest.mark.parametrize("attack", list(PLANETOID_ATTACKS))
def test_a_hostile_planetoid_part_is_one_line(tmp_path, attack):
    tamper, message = PLANETOID_ATTACKS[attack]
    _, feats = write_planetoid(tmp_path)
    tamper(tmp_path, feats)
    with pytest.raises(DataError, match=message) as caught:
        load_planetoid(tmp_path, download=False)
    assert "\n" not in str(caught.value)


def csr_forgery(folder: Path, feats, **attrs) -> None:
    dump(folder / "ind.toy.allx", forged(sp.csr_matrix(feats[:6]), **attrs))


def memo_forgery(folder: Path, _) -> None:
    # PROTO 2, EMPTY_LIST, LONG_BINPUT 2**32-1, STOP: CPython sizes its memo table to the
    # index, 64 GiB (10**8 took 1.5 GB and 4.5 s)
    (folder / "ind.toy.graph").write_bytes(b"\x80\x02]r\xff\xff\xff\xff.")


def fifo(part: str):
    def make(folder: Path, _) -> None:
        (folder / f"ind.toy.{part}").unlink()
        os.mkfifo(folder / f"ind.toy.{part}")

    return make


def device(folder: Path, _) -> None:
    (folder / "ind.toy.tx").unlink()
    (folder / "ind.toy.tx").symlink_to("/dev/zero")


# Attacks that crashed (SIGSEGV, free(): invalid size), hung (a FIFO) or asked for 64 GiB
# before the checks: run in a child process, so that without the checks this test fails
# instead of taking pytest down with it.
FATAL_PLANETOID_ATTACKS = {
    "column index past the last": (
        lambda d, x: csr_forgery(d, x, indices=np.full(24, 10**6, dtype=np.int32)),
        r"ind\.toy\.allx: an index lies outside 0\.\.3 \(a damaged or forged file\)",
    ),
    "negative column index": (
        lambda d, x: csr_forgery(d, x, indices=np.full(24, -7, dtype=np.int32)),
        r"ind\.toy\.allx: an index lies outside 0\.\.3",
    ),
    "indptr past the data": (
        lambda d, x: csr_forgery(d, x, indptr=np.array([0, 4, 8, 12, 16, 20, 10**6])),
        r"ind\.toy\.allx: its indptr does not rise from 0 to 24",
    ),
    "indptr falling": (
        lambda d, x: csr_forgery(d, x, indptr=np.array([0, 20, 8, 12, 16, 20, 24])),
        r"ind\.toy\.allx: its indptr does not rise from 0 to 24",
    ),
    "indptr of another length": (
        lambda d, x: csr_forgery(d, x, indptr=np.array([0, 24])),
        r"ind\.toy\.allx: its indptr \(2\), indices \(24\) and data \(24\) do not fit its 6 "
        r"compressed rows",
    ),
    "csc row index past the last": (
        lambda d, x: dump(d / "ind.toy.tx", forged(sp.csc_matrix(x[:5]), indices=np.full(20, 99))),
        r"ind\.toy\.tx: an index lies outside 0\.\.4",
    ),
    "a forged memo index": (memo_forgery, r"ind\.toy\.graph \(memo index 4294967295 at opcode"),
    "a FIFO as a part": (fifo("x"), r"ind\.toy\.x is not a regular file \(a FIFO, device"),
    "a FIFO as test.index": (fifo("test.index"), r"test\.index is not a regular file"),
    "a device as a part": (device, r"ind\.toy\.tx is not a regular file"),
}

LOAD_EACH = """
import json, sys
from pathlib import Path
from prunescope.data.graph import load_planetoid
from prunescope.errors import DataError
for root in sys.argv[1:]:
    try:
        load_planetoid(Path(root), download=False)
        print(json.dumps("loaded"), flush=True)
    except DataError as exc:
        print(json.dumps(str(exc)), flush=True)
"""


def test_planetoid_forgeries_that_crashed_or_hung_are_one_line(tmp_path):
    roots = []
    for i, (tamper, _) in enumerate(FATAL_PLANETOID_ATTACKS.values()):
        _, feats = write_planetoid(tmp_path / str(i))
        tamper(tmp_path / str(i), feats)
        roots.append(str(tmp_path / str(i)))
    done = subprocess.run(
        [sys.executable, "-c", LOAD_EACH, *roots], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    for (attack, (_, pattern)), message in zip(
        FATAL_PLANETOID_ATTACKS.items(), messages, strict=True
    ):
        assert re.search(pattern, message), (attack, message)
        assert "\n" not in message


def test_an_oversized_planetoid_part_is_not_read(tmp_path, monkeypatch):
    write_planetoid(tmp_path)
    monkeypatch.setattr(graph_mod, "PART_BYTES", 100)
    with pytest.raises(DataError, match=r"ind\.toy\.x is larger than 100 bytes"):
        load_planetoid(tmp_path, download=False)


def test_a_hostile_planetoid_folder_fails_the_run_in_one_line(tmp_path, capsys):
    write_planetoid(tmp_path / "g")
    write_index(tmp_path / "g", "9\n7\n11\n8\n-1\n")
    args = ["run", "--run-dir", str(tmp_path / "r"), "--preset", "gcn-planetoid"]
    assert main([*args, "--set", f"data.root={tmp_path / 'g'}"]) == 2
    assert "must number the test nodes from 6" in one_error_line(capsys)


def test_a_valid_planetoid_folder_still_loads(tmp_path):
    labels, feats = write_planetoid(tmp_path / "raw")
    g = load_planetoid(tmp_path, download=False)
    assert g.features.shape == (12, 4) and list(g.train_nodes) == [0, 1, 2]
    assert list(g.test_nodes) == [6, 7, 8, 9, 11] and g.edges.shape == (2, 24)
    assert list(g.labels[[0, 4, 9, 11]]) == list(labels[[0, 4, 9, 11]])
    np.testing.assert_allclose(g.features[9], feats[9] / feats[9].sum(), rtol=1e-6)
    # csc features, dense x and a part linked in from a shared copy read the same
    dump(tmp_path / "raw" / "ind.toy.allx", sp.csc_matrix(feats[:6]))
    dump(tmp_path / "raw" / "ind.toy.x", feats[:3])
    (tmp_path / "raw" / "ind.toy.ty").rename(tmp_path / "ty")
    (tmp_path / "raw" / "ind.toy.ty").symlink_to(tmp_path / "ty")
    again = load_planetoid(tmp_path, download=False)
    np.testing.assert_array_equal(again.features, g.features)
    np.testing.assert_array_equal(again.labels, g.labels)


CIFAR_LOAD = """
import json, sys
from pathlib import Path
from prunescope.data import cifar10
from prunescope.errors import DataError
try:
    cifar10.load_cifar10_arrays(Path(sys.argv[1]), download=False)
    print(json.dumps("loaded"))
except DataError as exc:
    print(json.dumps(str(exc)))
"""


@pytest.mark.parametrize(
    "tamper, pattern",
    [
        (lambda p: (p.unlink(), os.mkfifo(p)), r"data_batch_2 is not a regular file"),
        (lambda p: p.write_bytes(b"\x80\x02r\xff\xff\xff\xffN."), r"memo index 4294967295"),
    ],
    ids=["fifo", "memo"],
)
def test_a_cifar_batch_that_hangs_or_balloons_is_one_line(tmp_path, tamper, pattern):
    """The shared pickle reader (data/safe_pickle.py) guards CIFAR-10 as it does Planetoid;
    in a child process, so that a regression hangs or dies there, not in pytest."""
    fake_cifar(tmp_path / "cifar-10-batches-py")
    tamper(tmp_path / "cifar-10-batches-py" / "data_batch_2")
    done = subprocess.run(
        [sys.executable, "-c", CIFAR_LOAD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(pattern, json.loads(done.stdout)), done.stdout
