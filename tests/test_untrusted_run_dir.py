"""A run directory from someone else is untrusted input (issue #10).

Every attack of the red-team pass, rebuilt from a real small run: paths that lead
out of the run, a lock that is a symlink, devices and FIFOs in place of files,
script in names that reach the report, re-signed files of the wrong content,
manifests of the wrong types, SIGTERM, other data on resume, a hand-edited
config. Each one is refused with one line and exit code 2 (or handled), and
nothing outside the run directory is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save

from hostile_helpers import edit_manifest, fake_cifar, one_error_line, record_of, resign
from imp_helpers import run_command
from prunescope import load_level
from prunescope.cli import main
from prunescope.errors import RunDirError, UserInputError

# --- files outside the run directory ---------------------------------------------------

OUTSIDE_PATHS = [
    "../precious.txt",
    "levels/01/../../../precious.txt",
    "/etc/passwd",
    "/etc/shadow",
    "/dev/zero",
    "levels//01/model.safetensors",
    "./config.toml",
]


@pytest.mark.parametrize("where", ["files", "pending"])
@pytest.mark.parametrize("rel", OUTSIDE_PATHS)
def test_manifest_paths_outside_the_run_are_refused_before_any_file_operation(
    damaged_copy, rel, where, capsys
):
    root = damaged_copy()
    precious = root.parent / "precious.txt"
    precious.write_text("mine")
    edit_manifest(root, lambda m: m.setdefault(where, {}).__setitem__(rel, record_of(b"mine")))
    for argv in (
        ["status", str(root)],
        ["report", str(root)],
        ["run", "--run-dir", str(root), "--redo-from", "1", "--no-analyze"],
    ):
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert "damaged manifest" in line and f"{where}." in line, line
    assert precious.read_text() == "mine"
    assert (root / "levels/01/model.safetensors").exists()  # --redo-from never started


def test_a_symlink_that_leads_out_is_refused(damaged_copy, capsys):
    root = damaged_copy()
    rel = "levels/01/model.safetensors"
    secret = root.parent / "secret.safetensors"  # the same bytes, so the record matches
    shutil.move(root / rel, secret)
    (root / rel).symlink_to(secret)
    assert main(["status", str(root)]) == 2
    assert "leads outside the run directory" in one_error_line(capsys)
    with pytest.raises(RunDirError, match="leads outside"):
        load_level(root, 1)


def test_a_symlinked_levels_folder_cannot_make_redo_delete_outside(damaged_copy, capsys):
    root = damaged_copy()
    elsewhere = root.parent / "elsewhere"
    shutil.move(root / "levels", elsewhere)
    (root / "levels").symlink_to(elsewhere)
    before = sorted(p.name for p in (elsewhere / "01").iterdir())
    assert main(["run", "--run-dir", str(root), "--redo-from", "1", "--no-analyze"]) == 2
    assert "leads outside the run directory" in one_error_line(capsys)
    assert sorted(p.name for p in (elsewhere / "01").iterdir()) == before


def test_devices_and_fifos_are_never_read(damaged_copy, capsys):
    root = damaged_copy()
    table = root / "analysis/zeroing.csv"
    table.unlink()
    os.mkfifo(table)  # a reader that opened it without care would block forever
    status = subprocess.run(
        [sys.executable, "-m", "prunescope", "status", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0 and "analysis/zeroing.csv: not a regular file" in status.stdout
    assert main(["report", str(root)]) == 2
    assert "zeroing.csv is damaged (not a regular file)" in one_error_line(capsys)
    # a file far larger than its record is not read beyond the recorded size
    big = root / "analysis/similarity.csv"
    with open(big, "ab") as f:
        f.truncate(200 * 2**20)
    assert "similarity.csv: larger than the manifest says" in status_of(root)


def status_of(root: Path) -> str:
    from prunescope.status import status_text

    return status_text(root)


@pytest.mark.parametrize("command", ["run", "analyze", "report"])
def test_the_lock_is_never_a_weapon(damaged_copy, command, capsys):
    root = damaged_copy()
    victim = root.parent / "victim.txt"
    victim.write_text("a user's file")
    (root / ".lock").unlink(missing_ok=True)
    (root / ".lock").symlink_to(victim)
    argv = {
        "run": ["run", "--run-dir", str(root), "--no-analyze"],
        "analyze": ["analyze", str(root)],
        "report": ["report", str(root)],
    }[command]
    assert main(argv) == 2
    assert "is not a regular file" in one_error_line(capsys)
    assert victim.read_text() == "a user's file"


# --- script in the report --------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"


def test_names_from_a_run_are_escaped_in_the_report(damaged_copy):
    import pandas as pd

    root = damaged_copy()
    for name in ("sparsity_layers", "neuron_sparsity", "dead_neurons", "sparsity_stages"):
        rel = f"analysis/{name}.csv"
        df = pd.read_csv(root / rel)
        df["stage"] = df["stage"].map(lambda s: f"{s}{SCRIPT}")
        if "layer" in df:
            df["layer"] = df["layer"].map(lambda s: f'{s}"><img src=x onerror=alert(2)>')
        resign(root, rel, df.to_csv(index=False).encode())
    edit_manifest(
        root,
        lambda m: m["layer_order"].__setitem__(
            "stages", [f"{s}{SCRIPT}" for s in m["layer_order"]["stages"]]
        ),
    )
    assert main(["report", str(root)]) == 0
    page = (root / "report/index.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page  # the names are shown, as text


def test_math_text_in_a_run_name_is_plain_text(analysed_run, tmp_path):
    odd = tmp_path / r"run$\frac{1}{$x"
    shutil.copytree(analysed_run, odd)
    assert main(["report", str(analysed_run), str(odd), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep/figures/accuracy.png").stat().st_size > 0


def test_train_never_overwrites_a_run_directory(damaged_copy, capsys):
    root = damaged_copy()
    config = (root / "config.toml").read_bytes()
    assert main(["train", "--preset", "quickstart", "--out", str(root)]) == 2
    assert "is an IMP run directory" in one_error_line(capsys)
    assert (root / "config.toml").read_bytes() == config


def test_report_into_a_symlink_is_refused(damaged_copy, capsys):
    root = damaged_copy()
    outside = root.parent / "outside"
    outside.mkdir()
    shutil.rmtree(root / "report")
    (root / "report").symlink_to(outside)
    assert main(["report", str(root)]) == 2  # its recorded files now lead outside
    assert "leads outside the run directory" in one_error_line(capsys)
    edit_manifest(  # a run whose report was never made
        root,
        lambda m: [m["files"].pop(r) for r in list(m["files"]) if r.startswith("report/")],
    )
    assert main(["report", str(root)]) == 2
    assert "is a symbolic link" in one_error_line(capsys)
    assert list(outside.iterdir()) == []


# --- manifests of the wrong types: one line, exit 2 -------------------------------------


def _deep(m: dict) -> None:
    m["sessions"] = "DEEP"


MANIFEST_DAMAGE = {
    "level record is a string": lambda m: m["levels"].__setitem__("01", "complete"),
    "file record is a string": lambda m: m["files"].__setitem__("config.toml", "abc"),
    "level key xx": lambda m: m["levels"].__setitem__("xx", m["levels"]["01"]),
    "sparsity is a string": lambda m: m["levels"]["01"].__setitem__("network_sparsity", "0.2"),
    "no environment": lambda m: m.pop("environment"),
    "layer_order is an int": lambda m: m.__setitem__("layer_order", 5),
    "analyses levels a string": lambda m: m["analyses"]["zeroing"].__setitem__("levels", "0,1"),
    "100,000-deep JSON": _deep,
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_manifest_of_the_wrong_types_is_one_line(damaged_copy, damage, capsys):
    root = damaged_copy()
    edit_manifest(root, MANIFEST_DAMAGE[damage])
    if damage == "100,000-deep JSON":
        text = (root / "manifest.json").read_text()
        (root / "manifest.json").write_text(text.replace('"DEEP"', "[" * 100_000 + "]" * 100_000))
    for argv in (
        ["status", str(root)],
        ["report", str(root)],
        ["analyze", str(root)],
        ["run", "--run-dir", str(root), "--no-analyze"],
    ):
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert "damaged" in line and "internal error" not in line, line


# --- level files with the right hash and the wrong content ------------------------------


def _level_state(root: Path) -> dict[str, torch.Tensor]:
    return load_file(root / "levels/01/model.safetensors")


LEVEL_DAMAGE = {
    "wrong shape": (
        lambda s: s.__setitem__("conv1.weight", s["conv1.weight"][:, :, :2, :2].contiguous()),
        "does not fit this model",
    ),
    "int64": (lambda s: s.__setitem__("fc.weight", s["fc.weight"].long()), "is torch.int64"),
    "float16": (
        lambda s: s.__setitem__("conv1.weight", s["conv1.weight"].half()),
        "is torch.float16",
    ),
    "NaN weights": (
        lambda s: s["layer1.0.conv1.weight"].view(-1).__setitem__(5, float("nan")),
        "NaN or infinite",
    ),
    "alive where the mask prunes": (
        lambda s: s["layer1.0.conv1.weight"].fill_(0.5),
        "its mask prunes but that are not 0",
    ),
}


@pytest.mark.parametrize("damage", list(LEVEL_DAMAGE))
def test_level_files_with_the_right_hash_and_the_wrong_content(damaged_copy, damage, capsys):
    root = damaged_copy()
    change, message = LEVEL_DAMAGE[damage]
    state = _level_state(root)
    change(state)
    resign(root, "levels/01/model.safetensors", save(state))
    with pytest.raises(RunDirError, match=message):
        load_level(root, 1)
    assert main(["analyze", str(root), "--only", "sparsity", "--force"]) == 2
    assert message.split(" (")[0] in one_error_line(capsys)
    assert main(["run", "--run-dir", str(root), "--redo-from", "2", "--no-analyze"]) == 2
    assert message.split(" (")[0] in one_error_line(capsys)


@pytest.mark.parametrize("damage", ["keys", "shape", "dtype"])
def test_masks_that_do_not_fit_are_refused(damaged_copy, damage):
    root = damaged_copy()
    masks = load_file(root / "levels/01/mask.safetensors")
    if damage == "keys":
        masks["extra.weight"] = masks.pop("conv1.weight")
    elif damage == "shape":
        masks["conv1.weight"] = masks["conv1.weight"][:2].contiguous()
    else:
        masks["conv1.weight"] = masks["conv1.weight"].float() * 3
    resign(root, "levels/01/mask.safetensors", save(masks))
    with pytest.raises(RunDirError, match="mask"):
        load_level(root, 1)


def test_a_config_that_is_not_utf8(damaged_copy, capsys):
    root = damaged_copy()
    resign(root, "config.toml", b"seed = 0\n\xff\xfe\x00 broken\n")
    for argv in (["status", str(root)], ["report", str(root)], ["run", "--run-dir", str(root)]):
        assert main(argv) == 2
        assert "is not UTF-8 text" in one_error_line(capsys)


def test_excluding_every_layer_says_nothing_is_left(tmp_path, capsys):
    layers = '["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2", "layer2.0.shortcut.0", "layer3.0.conv1", "layer3.0.conv2", "layer3.0.shortcut.0", "fc"]'
    root = tmp_path / "r"
    argv = [
        "run",
        "--run-dir",
        str(root),
        "--preset",
        "quickstart",
        "--set",
        f"imp.exclude={layers}",
    ]
    assert main(argv) == 2
    assert "nothing is left to prune" in one_error_line(capsys)
    assert not root.exists()


# --- should be fixed: SIGTERM, other data, a hand-edited config -------------------------


@pytest.mark.slow
def test_sigterm_stops_with_one_line_and_the_run_resumes(tmp_path):
    root = tmp_path / "run"
    cmd = run_command(root, "train.checkpoint_every=1", "imp.train_epochs=3", analyze=False)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (root / "rewind.safetensors").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("prunescope: stopped by SIGTERM") and "Traceback" not in err
    assert f"resume with: prunescope run --run-dir {root}" in last
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "all levels complete" in status_of(root)


def _cifar_run(root: Path, data_root: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--run-dir",
        str(root),
        "--no-analyze",
        "--preset",
        "quickstart",
        "--set",
        "data.name=cifar10",
        "--set",
        f"data.root={data_root}",
        "--set",
        "imp.levels=0",
        "--set",
        "imp.pretrain_epochs=0",
        "--set",
        "imp.train_epochs=1",
        *extra,
    ]


def test_a_resume_on_other_data_is_refused(tmp_path, capsys):
    fake_cifar(tmp_path / "a" / "cifar-10-batches-py")
    fake_cifar(tmp_path / "b" / "cifar-10-batches-py", label_shift=1)
    root = tmp_path / "run"
    assert main(_cifar_run(root, tmp_path / "a")) == 0
    grow = ["--run-dir", str(root), "--no-analyze", "--set", "imp.levels=1"]
    assert main(["run", *grow, "--set", f"data.root={tmp_path / 'b'}"]) == 2
    assert "differ from the data" in one_error_line(capsys)
    assert main(["analyze", str(root), "--only", "sparsity", "--set", "device=cpu"]) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "moved")  # the same data elsewhere is fine
    assert main(["run", *grow, "--set", f"data.root={tmp_path / 'moved'}"]) == 0


def test_a_hand_edited_config_says_what_differs_and_how_to_recover(damaged_copy, capsys):
    root = damaged_copy()
    original = (root / "config.toml").read_text()
    assert "lr = 0.05\n" in original
    (root / "config.toml").write_text(original.replace("lr = 0.05\n", "lr = 0.07\n"))
    assert main(["run", "--run-dir", str(root), "--no-analyze"]) == 2
    line = one_error_line(capsys)
    assert "train.lr: 0.05 recorded, 0.07 in the file" in line and "--redo-from N" in line
    assert main(["run", "--run-dir", str(root), "--no-analyze", "--redo-from", "3"]) == 0
    assert "lr = 0.07" in (root / "config.toml").read_text()
    history = json.loads((root / "manifest.json").read_text())["config_history"]
    assert history[-1]["changed"]["train.lr"] == {"old": 0.05, "new": 0.07}
    assert "damaged files: none" in status_of(root)


def test_restoring_an_edited_config_recovers_the_run(damaged_copy, capsys):
    root = damaged_copy()
    original = (root / "config.toml").read_bytes()
    (root / "config.toml").write_bytes(original.replace(b"seed = 0", b"seed = 4"))
    assert main(["status", str(root)]) == 2
    assert "seed: 0 recorded, 4 in the file" in one_error_line(capsys)
    (root / "config.toml").write_bytes(original)
    assert main(["status", str(root)]) == 0


# --- property: manifests of random structure and types ----------------------------------

HOSTILE_PATHS = st.sampled_from(
    ["../sentinel/a.txt", "/etc/passwd", "levels/01/../../../sentinel/a.txt", "/dev/zero", "x//y"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**9) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _mutate(manifest: dict, data) -> dict:
    """Replace one value somewhere in the manifest, or add a hostile file entry."""
    if data.draw(st.booleans(), label="hostile path"):
        where = data.draw(st.sampled_from(["files", "pending"]))
        manifest.setdefault(where, {})[data.draw(HOSTILE_PATHS)] = data.draw(
            st.one_of(JSON, st.just({"sha256": "0" * 64, "bytes": 3}))
        )
        return manifest
    node = manifest
    for _ in range(data.draw(st.integers(0, 3), label="depth")):
        if not isinstance(node, dict) or not node:
            break
        key = data.draw(st.sampled_from(sorted(node)), label="key")
        if not isinstance(node[key], dict) or not node[key]:
            break
        node = node[key]
    if isinstance(node, dict) and node:
        node[data.draw(st.sampled_from(sorted(node)), label="replace")] = data.draw(JSON)
    return manifest


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_manifests_end_in_one_line_and_touch_nothing_outside(analysed_run, tmp_path, data):
    root = tmp_path / "run"
    sentinel = tmp_path / "sentinel"
    if not root.exists():
        shutil.copytree(analysed_run, root)
        sentinel.mkdir()
        (sentinel / "a.txt").write_text("keep")
    pristine = json.loads((analysed_run / "manifest.json").read_text())
    manifest = _mutate(json.loads(json.dumps(pristine)), data)
    (root / "manifest.json").write_text(json.dumps(manifest))
    before = _snapshot(sentinel)
    command = data.draw(st.sampled_from(["status", "report", "redo"]))
    argv = {
        "status": ["status", str(root)],
        "report": ["report", str(root), "--out", str(tmp_path / "rep")],
        "redo": ["run", "--run-dir", str(root), "--redo-from", "9", "--no-analyze"],
    }[command]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, text
    assert code in (0, 2), text
    if code == 2:
        assert len([ln for ln in text.splitlines() if ln.startswith("prunescope:")]) == 1, text
    assert _snapshot(sentinel) == before


# --- round two (issue #20): code, links, exports, sizes ---------------------------------

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("imported")

def make(num_classes, in_channels, image_size):
    from prunescope import build_model
    return build_model("resnet8", num_classes, in_channels, image_size)
"""


def _name_code(root: Path, name: str) -> None:
    """The run's config names ``name`` as its model, re-signed as anyone could."""
    text = (root / "config.toml").read_text()
    resign(root, "config.toml", text.replace('name = "resnet8"', f'name = "{name}"').encode())


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """``evil:make`` importable from sys.path; importing it writes a marker file."""
    folder = tmp_path / "evil_home"
    folder.mkdir()
    marker = tmp_path / "imported.txt"
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(folder))
    return marker


UNVOUCHED = [
    ["analyze", "{root}", "--only", "sparsity"],
    ["export", "{root}", "--level", "1", "--out", "{out}"],
    ["runtime", "{root}", "--levels", "1", "--formats", "dense"],
    ["branch", "{root}", "random_mask", "--no-analyze"],
    ["run", "--run-dir", "{root}", "--no-analyze"],
]


@pytest.mark.parametrize("argv", UNVOUCHED, ids=lambda a: a[0])
def test_a_run_directory_runs_no_code_its_user_did_not_vouch_for(
    damaged_copy, evil_module, argv, capsys
):
    root = damaged_copy()
    _name_code(root, "evil:make")
    args = [a.format(root=root, out=root.parent / "exp") for a in argv]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert "'evil:make'" in line and "--trust-code" in line, line
    assert not evil_module.exists()
    assert not (root / "branches").exists() and not (root.parent / "exp").exists()


def test_the_report_and_status_need_no_code_at_all(damaged_copy, evil_module, capsys):
    root = damaged_copy()
    _name_code(root, "evil:make")
    assert main(["report", str(root)]) == 0
    assert main(["status", str(root)]) == 0
    assert not evil_module.exists()


def test_vouching_imports_the_code(damaged_copy, evil_module, monkeypatch, capsys):
    root = damaged_copy()
    _name_code(root, "evil:make")
    assert main(["analyze", str(root), "--only", "sparsity", "--force", "--trust-code"]) == 0
    assert evil_module.read_text() == "imported"
    evil_module.unlink()
    monkeypatch.setenv("PRUNESCOPE_TRUST_CODE", "evil")  # a module prefix in the environment
    model, masks = load_level(root, 1)
    assert len(masks) > 0 and model is not None
    with pytest.raises(UserInputError, match="--trust-code"):
        monkeypatch.delenv("PRUNESCOPE_TRUST_CODE")
        load_level(root, 1)
    assert load_level(root, 1, trust_code=True)[0] is not None


@pytest.mark.parametrize("name", ["os:abort", "code:interact", "sys:exit", "builtins:breakpoint"])
def test_a_run_naming_any_callable_is_one_line(damaged_copy, name, capsys):
    root = damaged_copy()
    _name_code(root, name)
    assert main(["analyze", str(root), "--only", "sparsity"]) == 2
    assert repr(name) in one_error_line(capsys)


def test_python_m_never_imports_a_module_shipped_in_the_run(damaged_copy):
    """``python -m prunescope`` puts the working directory on sys.path: a run directory
    there must not become an importable package, even with --trust-code."""
    root = damaged_copy()
    marker = root.parent / "imported.txt"
    (root / "evil.py").write_text(EVIL.format(marker=str(marker)))
    _name_code(root, f"{root.name}.evil:make")
    out = subprocess.run(
        [sys.executable, "-m", "prunescope", "analyze", root.name, "--trust-code"],
        cwd=root.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and not marker.exists()


@pytest.mark.parametrize("link", ["branches", "branches/random_mask"])
def test_a_branch_is_never_written_through_a_link(damaged_copy, analysed_run, link, capsys):
    root = damaged_copy()
    victim = root.parent / "victim"
    shutil.copytree(analysed_run, victim, symlinks=True)
    before = _snapshot(victim)
    target = victim if link == "branches/random_mask" else root.parent / "elsewhere"
    target.mkdir(exist_ok=True)
    (root / "branches").mkdir(exist_ok=True) if "/" in link else None
    (root / link).symlink_to(target)
    for argv in (["branch", str(root), "random_mask"], ["analyze", str(root)]):
        assert main(argv) == 2, argv
        assert "is a symbolic link" in one_error_line(capsys)
    assert _snapshot(victim) == before
    assert not (root.parent / "elsewhere").exists() or not any(
        (root.parent / "elsewhere").iterdir()
    )


def test_another_run_copied_into_branches_is_not_adopted(damaged_copy, analysed_run, capsys):
    root = damaged_copy()
    (root / "branches").mkdir()
    shutil.copytree(analysed_run, root / "branches/random_mask", symlinks=True)
    assert main(["branch", str(root), "random_mask", "--no-analyze"]) == 2
    assert "is not the random_mask branch" in one_error_line(capsys)


def test_a_branch_cannot_change_the_levels(damaged_copy, capsys):
    root = damaged_copy()
    assert main(["branch", str(root), "random_mask", "--set", "imp.levels=5"]) == 2
    assert "imp.levels" in one_error_line(capsys)
    assert not (root / "branches").exists()


def test_runtime_refuses_batches_larger_than_the_test_set_and_no_formats(damaged_copy, capsys):
    root = damaged_copy()  # digits, 120 test images
    argv = ["runtime", str(root), "--levels", "1", "--formats", "dense"]
    assert main([*argv, "--batch-sizes", "100000000"]) == 2
    line = one_error_line(capsys)
    assert "100000000 is more than the 120 test examples" in line, line
    assert main(["runtime", str(root), "--formats", ","]) == 2
    assert "at least one format" in one_error_line(capsys)
    assert not (root / "analysis/runtime.csv").exists()


def _replicate(analysed_run: Path, folder: Path, seed: int) -> Path:
    shutil.copytree(analysed_run, folder, symlinks=True)
    text = (folder / "config.toml").read_text().replace("seed = 0", f"seed = {seed}")
    resign(folder, "config.toml", text.encode())
    return folder


def test_replicates_must_agree_on_sparsity_and_share_a_level(analysed_run, tmp_path, capsys):
    a = _replicate(analysed_run, tmp_path / "a", 1)
    b = _replicate(analysed_run, tmp_path / "b", 2)
    table = (b / "analysis/accuracy.csv").read_text().splitlines()
    lied = [
        table[0],
        *(r.replace(r.split(",")[1], "0.99", 1) if r.startswith("2,") else r for r in table[1:]),
    ]
    resign(b, "analysis/accuracy.csv", ("\n".join(lied) + "\n").encode())
    assert main(["report", str(a), str(b), "--replicates", "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert "disagree on the sparsity of level 2" in line and "0.9900" in line, line
    none_shared = [table[0], *(r.replace(r.split(",")[0], "9", 1) for r in table[1:2])]
    resign(b, "analysis/accuracy.csv", ("\n".join(none_shared) + "\n").encode())
    assert main(["report", str(a), str(b), "--replicates", "--out", str(tmp_path / "r")]) == 2
    assert "no trained level in common" in one_error_line(capsys)


@pytest.fixture(scope="module")
def exported(analysed_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "level2"
    assert main(["export", str(analysed_run), "--level", "2", "--out", str(out)]) == 0
    return out


def _export_copy(exported: Path, tmp_path: Path, **arch_changes) -> Path:
    folder = tmp_path / "exp"
    shutil.copytree(exported, folder)
    arch = json.loads((folder / "architecture.json").read_text())
    arch.update(arch_changes)
    (folder / "architecture.json").write_text(json.dumps(arch))
    return folder


def test_an_export_runs_no_code_and_ships_none(exported, tmp_path, monkeypatch):
    from prunescope.export_files import load_exported

    assert load_exported(exported) is not None  # a built-in model needs no trust
    folder = _export_copy(exported, tmp_path, name="os:abort")
    with pytest.raises(UserInputError, match=r"'os:abort'.*--trust-code"):
        load_exported(folder)
    marker = tmp_path / "imported.txt"
    (folder / "shipped_evil.py").write_text(EVIL.format(marker=str(marker)))
    folder2 = _export_copy(folder, tmp_path / "b", name="shipped_evil:make")
    monkeypatch.syspath_prepend(str(folder2))  # as if the export folder were the cwd
    with pytest.raises(UserInputError, match=r"inside .* which prunescope opened as data"):
        load_exported(folder2, trust_code=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    "modules, message",
    [
        ({"fc": {"type": "Linear", "in": 2_000_000, "out": 2_000_000, "bias": True}}, "disagree"),
        ({"fc": {"type": "Linear", "in": 10**12, "out": 1, "bias": True}}, "less than or equal"),
        ({"fc": {"type": "LSTM", "in": 3, "out": 1, "bias": True}}, "fc"),
        ({"fc": {"type": "Linear", "in": -3, "out": 1, "bias": True}}, "greater than"),
        ("not a dict", "modules"),
    ],
    ids=["huge", "absurd", "type", "negative", "shape"],
)
def test_a_hostile_architecture_allocates_nothing(exported, tmp_path, modules, message):
    """60 bytes declaring huge layers used to allocate 2.5-4.4 GB before any error: the
    widths are now checked against the safetensors header on the meta device first."""
    from prunescope.export_files import load_exported

    folder = _export_copy(exported, tmp_path, modules=modules)
    with pytest.raises(RunDirError, match=message):
        load_exported(folder)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "missing"])
def test_export_files_that_are_not_regular_are_never_read(exported, tmp_path, kind):
    from prunescope.export_files import load_exported

    folder = _export_copy(exported, tmp_path)
    target = folder / ("architecture.json" if kind != "missing" else "model.safetensors")
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev_zero":
        target.symlink_to("/dev/zero")
    with pytest.raises(RunDirError, match=r"not a regular file|cannot be read|no model"):
        load_exported(folder)


def test_a_killed_export_leaves_nothing_the_rerun_refuses(analysed_run, tmp_path, monkeypatch):
    out = tmp_path / "exp"

    def killed(*args):
        raise KeyboardInterrupt  # as a kill between writing the files and renaming them

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        from prunescope.runner import export_level

        export_level(analysed_run, 2, out)
    monkeypatch.undo()
    assert not out.exists() and not list(tmp_path.glob(".exp.partial-*"))
    assert main(["export", str(analysed_run), "--level", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "architecture.json",
        "export.json",
        "model.safetensors",
    ]


@pytest.mark.parametrize("where", ["/proc/x", "link"])
def test_export_out_that_cannot_be_written_or_is_a_link(analysed_run, tmp_path, where, capsys):
    out = Path(where) if where.startswith("/") else tmp_path / "link"
    if where == "link":
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    assert main(["export", str(analysed_run), "--level", "1", "--out", str(out)]) == 2
    one_error_line(capsys)
    assert where != "link" or not any((tmp_path / "elsewhere").iterdir())


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a run directory but its lock (which names its last holder's pid)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


REFUSED = {
    "runtime_without_onnxruntime": [
        "runtime",
        "{root}",
        "--levels",
        "1",
        "--formats",
        "dense,onnxruntime",
    ],
    "runtime_batch": ["runtime", "{root}", "--levels", "1", "--batch-sizes", "100000000"],
    "analyze_subset": ["analyze", "{root}", "--set", "analysis.zeroing.test_subset=100000"],
    "branch_levels": ["branch", "{root}", "random_mask", "--set", "imp.levels=5"],
    "run_changed": ["run", "--run-dir", "{root}", "--set", "imp.rate=0.5"],
}


@pytest.mark.parametrize("argv", list(REFUSED.values()), ids=list(REFUSED))
def test_a_command_that_fails_changes_nothing(damaged_copy, argv, monkeypatch, capsys):
    """Settings are recorded only with the results they produced (issue #25: a refused
    `runtime --formats dense,onnxruntime` had rewritten config.toml)."""
    root = damaged_copy()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    before = _files(root)
    assert main([a.format(root=root) for a in argv]) == 2
    one_error_line(capsys)
    assert _files(root) == before
