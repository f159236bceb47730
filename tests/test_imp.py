"""IMP end to end on a tiny model: the pinned run directory, masks, rewinding, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imp_helpers import run_command, tiny_cli_args, tiny_config
from prunescope import load_level, load_test_set
from prunescope.cli import main
from prunescope.config import build_config
from prunescope.errors import RunDirError
from prunescope.models import ModelInputs
from prunescope.models.build import new_model
from prunescope.rundir.atomic import sha256_file
from prunescope.runner import run
from prunescope.status import status_text
from prunescope.training.trainer import Trainer

LEVEL_FILES = ["model.safetensors", "mask.safetensors", "metrics.json", "epochs.csv"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("imp") / "run"
    starts = []
    real_fit = Trainer.fit

    def spy(self, start_epoch, end_epoch, optimizer, masker=None, **kw):
        starts.append(
            (
                start_epoch,
                {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                [dict(s) for s in optimizer.state.values()],
            )
        )
        return real_fit(self, start_epoch, end_epoch, optimizer, masker, **kw)

    Trainer.fit = spy
    try:
        run(root, tiny_config(), analyze=False)
    finally:
        Trainer.fit = real_fit
    return root, starts


def levels_of(root):
    return [load_file(root / f"levels/{k:02d}/model.safetensors") for k in range(4)], [
        {k: v.bool() for k, v in load_file(root / f"levels/{k:02d}/mask.safetensors").items()}
        for k in range(4)
    ]


def test_run_directory_layout_is_exactly_the_pinned_one(tiny_run):
    root, _ = tiny_run
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    want = ["analysis/accuracy.csv", "config.toml", "manifest.json", "rewind.safetensors"]
    want += [f"levels/{k:02d}/{f}" for k in range(4) for f in LEVEL_FILES]
    assert [f for f in files if f != ".lock"] == sorted(want)
    manifest = json.loads((root / "manifest.json").read_text())
    for rel, rec in manifest["files"].items():
        assert sha256_file(root / rel) == rec["sha256"], rel
    assert set(manifest["files"]) == set(want) - {"manifest.json"}
    assert [manifest["levels"][f"{k:02d}"]["status"] for k in range(4)] == ["complete"] * 4
    # the hardware actually used, not just the configured "auto"
    env = manifest["environment"]
    n = torch.get_num_threads()
    assert env["device"] == f"cpu ({n} thread{'s' if n > 1 else ''})"
    assert env["device_setting"] in ("auto", "cpu")
    assert manifest["sessions"][-1]["device"] == env["device"]
    # nothing in a run directory is a pickle
    for p in root.rglob("*"):
        if p.is_file():
            assert not p.read_bytes().startswith(b"\x80"), p


def test_metrics_and_accuracy_table(tiny_run):
    root, _ = tiny_run
    rows = (root / "analysis/accuracy.csv").read_text().splitlines()
    assert rows[0] == "level,network_sparsity,test_accuracy,test_loss"
    assert len(rows) == 5
    for k in range(4):
        m = json.loads((root / f"levels/{k:02d}/metrics.json").read_text())
        assert m["level"] == k
        assert 0 <= m["test_accuracy"] <= 1 and m["test_loss"] > 0
        assert m["test_images"] == 120
        level, sparsity, acc, loss = rows[k + 1].split(",")
        assert (int(level), float(sparsity), float(acc), float(loss)) == (
            k,
            m["network_sparsity"],
            m["test_accuracy"],
            m["test_loss"],
        )


def test_masks_nested_sparsity_sequence_and_exact_zeros(tiny_run):
    root, _ = tiny_run
    states, masks = levels_of(root)
    keys = list(masks[0])
    assert "fc.weight" not in keys  # the classifier is excluded by default
    total = sum(masks[0][k].numel() for k in keys)
    for k in range(4):
        alive = sum(int(masks[k][key].sum()) for key in keys)
        assert abs(alive - total * 0.8**k) <= k  # within one weight per level
        for key in keys:
            w = states[k][key]
            assert torch.equal(w[~masks[k][key]], torch.zeros_like(w[~masks[k][key]]))
            if k:
                assert not (masks[k][key] & ~masks[k - 1][key]).any()
        m = json.loads((root / f"levels/{k:02d}/metrics.json").read_text())
        assert m["network_sparsity"] == pytest.approx(1 - alive / total, abs=1e-12)
        assert m["remaining_weights"] == alive and m["prunable_weights"] == total
        # global magnitude: removed weights were no larger than kept ones, in the previous level's weights
        if k:
            prev = states[k - 1]
            removed = torch.cat(
                [prev[key][masks[k - 1][key] & ~masks[k][key]].abs() for key in keys]
            )
            kept = torch.cat([prev[key][masks[k][key]].abs() for key in keys])
            assert removed.max() <= kept.min()
    assert torch.equal(
        states[3]["fc.weight"] != 0, torch.ones_like(states[3]["fc.weight"], dtype=torch.bool)
    )


def test_each_level_starts_from_the_rewind_state_times_its_mask(tiny_run):
    root, starts = tiny_run
    rewind = load_file(root / "rewind.safetensors")
    _, masks = levels_of(root)
    assert len(starts) == 5  # pretraining, then levels 0..3
    assert starts[0][0] == 0
    for k in range(4):
        epoch, state, opt_state = starts[k + 1]
        assert epoch == 1  # the rewind point: after 1 pretraining epoch
        assert opt_state == []  # a fresh optimizer (no momentum) at every level
        for key, value in rewind.items():
            want = value * masks[k][key] if key in masks[k] else value
            assert torch.equal(state[key].contiguous(), want), (k, key)
    # BN running statistics are part of the rewind state and were trained in pretraining
    assert not torch.equal(rewind["bn1.running_mean"], torch.zeros_like(rewind["bn1.running_mean"]))
    assert int(rewind["bn1.num_batches_tracked"]) == 4  # 256 images / 64 per batch


def test_public_api(tiny_run):
    root, _ = tiny_run
    model, masks = load_level(root, 2)
    assert not model.training
    state = load_file(root / "levels/02/model.safetensors")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert list(model.stages) == ["stem", "stage1", "stage2", "stage3", "fc"]
    assert set(masks) == {k for k in state if k.endswith("weight") and state[k].dim() > 1} - {
        "fc.weight"
    }
    x, y = load_test_set(root)
    assert x.shape == (120, 1, 16, 16) and x.dtype == torch.float32 and len(y) == 120
    xs, ys = load_test_set(root, subset=30)
    assert xs.shape == (30, 1, 16, 16) and torch.bincount(ys).tolist() == [3] * 10
    # the subset is a subset of the run's test images
    assert all(any(torch.equal(a, b) for b in x) for a in xs[:5])
    # the test set is what the run evaluated on: level accuracy is reproducible from it
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).double().mean().item()
    assert acc == pytest.approx(
        json.loads((root / "levels/02/metrics.json").read_text())["test_accuracy"]
    )
    with pytest.raises(RunDirError, match=r"^level 7 is not a level of .* \(0-3\)$"):
        load_level(root, 7)


def test_status_reports_complete(tiny_run):
    text = status_text(tiny_run[0])
    assert "all levels complete" in text
    assert "damaged files: none" in text
    assert text.count("complete") >= 4


def test_resume_of_a_finished_run_changes_nothing(tiny_run, tmp_path):
    root, _ = tiny_run
    before = {p: p.read_bytes() for p in root.rglob("*.safetensors")}
    run(root, None, analyze=False)
    assert {p: p.read_bytes() for p in root.rglob("*.safetensors")} == before


def test_a_different_config_is_refused_with_the_differing_keys(tiny_run, capsys):
    root, _ = tiny_run
    code = main(
        ["run", "--run-dir", str(root), "--no-analyze", *tiny_cli_args("imp.rate=0.3", "seed=4")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "different config (imp.rate, seed differ)" in err[0]


def test_extending_a_run_to_more_levels(tmp_path):
    root = tmp_path / "run"
    run(root, tiny_config("imp.levels=1"), analyze=False)
    first = (root / "levels/01/model.safetensors").read_bytes()
    run(root, tiny_config("imp.levels=2"), analyze=False)
    assert (root / "levels/01/model.safetensors").read_bytes() == first
    assert json.loads((root / "levels/02/metrics.json").read_text())["level"] == 2
    other = tmp_path / "other"
    run(other, tiny_config("imp.levels=2"), analyze=False)
    assert (other / "levels/02/model.safetensors").read_bytes() == (
        root / "levels/02/model.safetensors"
    ).read_bytes()


def test_rewind_to_init_and_layerwise_scope(tmp_path):
    cfg = tiny_config(
        "imp.rewind=init", "imp.scope=layerwise", "imp.levels=1", 'imp.exclude=["fc", "conv1"]'
    )
    run(tmp_path / "r", cfg, analyze=False)
    rewind = load_file(tmp_path / "r/rewind.safetensors")
    init = new_model(cfg, ModelInputs(10, 1, 16)).state_dict()
    assert all(torch.equal(rewind[k], init[k]) for k in init)
    m = json.loads((tmp_path / "r/levels/01/metrics.json").read_text())
    assert m["rewind_epoch"] == 0 and m["epochs"] == 3  # init: the whole schedule, every level
    masks = load_file(tmp_path / "r/levels/01/mask.safetensors")
    assert "conv1.weight" not in masks
    for k, mask in masks.items():  # layerwise: each tensor loses round(0.2 x its size)
        assert int((~mask.bool()).sum()) == int(0.2 * mask.numel() + 0.5), k


@pytest.mark.slow
def test_real_cifar10_run(cifar10_root, tmp_path):
    cfg = build_config(
        preset="cpu-resnet20-cifar10",
        overrides=[
            f"data.root={str(cifar10_root)!r}",
            "data.train_subset=500",
            "data.test_subset=200",
            "analysis.zeroing.test_subset=100",
            "analysis.similarity.test_subset=200",
            "imp.levels=2",
            "imp.pretrain_epochs=1",
            "imp.train_epochs=1",
        ],
    )
    run(tmp_path / "c", cfg, analyze=False)
    root = tmp_path / "c"
    for k in range(3):
        for f in LEVEL_FILES:
            assert (root / f"levels/{k:02d}/{f}").exists()
    m = json.loads((root / "levels/02/metrics.json").read_text())
    assert m["network_sparsity"] == pytest.approx(0.36, abs=1e-5)
    assert m["test_images"] == 200 and 0.0 < m["test_accuracy"] <= 1.0
    assert "all levels complete" in status_text(root)


def _cli(run_dir: Path) -> list[str]:
    return run_command(run_dir, analyze=False)


@pytest.mark.slow
def test_killed_between_levels_resumes_to_identical_files(tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(_cli(ref), check=True, capture_output=True, timeout=300)
    victim = tmp_path / "victim"
    proc = subprocess.Popen(_cli(victim), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    manifest = victim / "manifest.json"
    while time.time() < deadline:
        try:
            levels = json.loads(manifest.read_text()).get("levels", {})
        except (OSError, ValueError):
            levels = {}
        if levels.get("01", {}).get("status") == "complete":
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(manifest.read_text())["levels"]
    assert "03" not in done or done["03"].get("status") != "complete", (
        "killed too late to test anything"
    )
    subprocess.run(_cli(victim), check=True, capture_output=True, timeout=300)
    ref_files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert ref_files == sorted(p.relative_to(victim) for p in victim.rglob("*") if p.is_file())
    for rel in ref_files:
        if rel.name not in ("manifest.json", ".lock"):
            assert (ref / rel).read_bytes() == (victim / rel).read_bytes(), rel


def test_a_missing_level_says_whether_it_is_untrained_or_beyond_the_run():
    from types import SimpleNamespace

    from prunescope.rundir.session import why_missing

    rd = SimpleNamespace(root="runs/r", completed_levels=lambda: [0, 1, 2, 3, 4])
    assert why_missing(rd, 8, [6, 7, 8]) == (
        "levels 6-8 of runs/r are not trained yet (levels 0-4 of 0-8 complete)"
    )
    assert why_missing(rd, 8, [5]) == (
        "level 5 of runs/r is not trained yet (levels 0-4 of 0-8 complete)"
    )
    assert why_missing(rd, 8, [9, 5]) == "level 9 is not a level of runs/r (0-8)"
