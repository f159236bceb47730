"""Findings a reviewer accepts (issue #13): random-mask controls, rewinding variants, linear
mode connectivity, replicates. Worked out by hand or by independent code."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
import torch

from hostile_helpers import one_error_line
from imp_helpers import tiny_config
from prunescope import load_level
from prunescope.cli import main
from prunescope.config import build_config
from prunescope.errors import UserInputError
from prunescope.pruning.random_masks import random_global_masks, random_layerwise_masks
from prunescope.runner import run


def template():
    g = torch.Generator().manual_seed(3)
    return {
        "a.weight": torch.rand(16, 8, 3, 3, generator=g) > 0.3,
        "b.weight": torch.rand(32, 16, generator=g) > 0.8,
        "c.weight": torch.rand(10, 32, generator=g) > 0.5,
    }


def test_random_masks_have_exactly_the_requested_sparsity_and_are_seeded():
    t = template()
    layer = random_layerwise_masks(t, seed=0, level=2)
    for k in t:  # exactly the template's count in every layer
        assert layer[k].shape == t[k].shape and int(layer[k].sum()) == int(t[k].sum())
    assert not all(torch.equal(layer[k], t[k]) for k in t)  # random, not the template
    glob = random_global_masks(t, seed=0, level=2)
    assert sum(int(m.sum()) for m in glob.values()) == sum(int(m.sum()) for m in t.values())
    for make in (random_layerwise_masks, random_global_masks):
        same = make(t, seed=0, level=2)
        assert all(torch.equal(same[k], make(t, 0, 2)[k]) for k in t)  # seeded
        other = make(t, seed=1, level=2)
        assert not all(torch.equal(same[k], other[k]) for k in t)
        later = make(t, seed=0, level=3)
        assert not all(torch.equal(same[k], later[k]) for k in t)


def test_global_random_masks_spread_uniformly_over_layers():
    """Uniform over all weights: a layer's share of the kept weights is its share of all weights
    (each layer's count is hypergeometric: mean n_k * keep / n, checked over 200 draws)."""
    t = template()
    sizes = {k: m.numel() for k, m in t.items()}
    n, keep = sum(sizes.values()), sum(int(m.sum()) for m in t.values())
    counts = {k: [] for k in t}
    for level in range(200):
        m = random_global_masks(t, seed=0, level=level)
        for k in t:
            counts[k].append(int(m[k].sum()))
    for k, c in counts.items():
        want = sizes[k] * keep / n
        var = keep * (sizes[k] / n) * (1 - sizes[k] / n) * (n - keep) / (n - 1)
        assert abs(sum(c) / len(c) - want) < 4 * math.sqrt(var / len(c)), k


# --- rewinding variants on a hand-made schedule ------------------------------------------


@pytest.mark.parametrize("rewind", ["lr", "finetune"])
def test_lr_and_finetune_rewinding_follow_their_definitions(rewind, tmp_path, monkeypatch):
    from prunescope.imp import IMP
    from prunescope.training.schedule import lr_factor

    starts = {}
    real = IMP.train_level

    def spy(self, level, start_state, masks):
        starts[level] = {k: v.clone() for k, v in start_state.items()}
        return real(self, level, start_state, masks)

    monkeypatch.setattr(IMP, "train_level", spy)
    cfg = tiny_config(
        "imp.levels=2",
        f"imp.rewind={rewind}",
        "imp.train_epochs=3",
        "train.schedule=step",
        "train.milestones=[2, 3]",
        "train.gamma=0.5",
    )
    root = tmp_path / "r"
    run(root, cfg, analyze=False)
    rewind_state = load_level_state(root, None)
    assert all(torch.equal(starts[0][k], rewind_state[k]) for k in rewind_state)  # level 0
    for level in (1, 2):  # levels k >= 1 start from level k-1's trained weights
        before = load_level_state(root, level - 1)
        assert all(torch.equal(starts[level][k], before[k]) for k in before)
    epochs = {lv: pd.read_csv(root / f"levels/0{lv}/epochs.csv") for lv in (0, 1, 2)}
    # schedule: 1 pretrain + 3 level epochs, lr 0.05, x0.5 at epochs 2 and 3
    assert epochs[0]["lr"].tolist() == pytest.approx([0.05, 0.025, 0.0125])
    if rewind == "lr":  # the schedule replayed from the rewind epoch at every level
        assert epochs[1]["lr"].tolist() == pytest.approx([0.05, 0.025, 0.0125])
    else:  # the schedule's final learning rate throughout
        steps = 4 * 4  # 4 epochs of 256/64 = 4 steps
        final = 0.05 * lr_factor(steps - 1, 4, 4, cfg.train)
        assert final == pytest.approx(0.0125)
        assert epochs[1]["lr"].tolist() == pytest.approx([final] * 3)


def load_level_state(root, level):
    from safetensors.torch import load_file

    rel = "rewind.safetensors" if level is None else f"levels/{level:02d}/model.safetensors"
    return load_file(root / rel)


# --- linear mode connectivity -------------------------------------------------------------


def test_connectivity_ends_are_the_levels_themselves_and_identical_nets_have_no_barrier(
    analysed_run,
):
    import numpy as np

    from prunescope.analysis.barriers import barriers
    from prunescope.analysis.connectivity import path
    from prunescope.api import model_for
    from prunescope.rundir.session import open_run_dir

    conn = pd.read_csv(analysed_run / "analysis/connectivity.csv")
    rd, cfg = open_run_dir(analysed_run)
    from prunescope.analysis.context import AnalysisContext

    ctx = AnalysisContext(rd, cfg, torch.device("cpu"))
    c = cfg.analysis.connectivity
    bn, test = ctx.train_batches(c.bn_images, c.batch_size), ctx.batches(c.test_subset, 250)
    for level in (1, 3):
        model, _ = load_level(analysed_run, level)
        # independent code: BN statistics as the plain average over the subset, then evaluate
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        bf16 = torch.autocast("cpu", dtype=torch.bfloat16, enabled=ctx.precision == "bf16")
        model.train()
        with torch.no_grad(), bf16:  # in the run's precision, as the analysis
            for x, _ in bn:
                model(x)
        model.eval()
        with torch.no_grad(), bf16:
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test)
        n = sum(len(y) for _, y in test)
        for reference in ("baseline", "previous"):
            end = conn[(conn["level"] == level) & (conn["reference"] == reference)]
            at_one = end[end["alpha"] == 1.0]
            assert float(at_one["test_accuracy"].iloc[0]) == pytest.approx(correct / n, abs=1e-9)
        ref = conn[(conn["level"] == 1) & (conn["reference"] == "previous")]
        zero = ref[ref["alpha"] == 0.0]
        level0 = conn[(conn["level"] == 1) & (conn["reference"] == "baseline")]
        assert float(zero["test_accuracy"].iloc[0]) == float(
            level0[level0["alpha"] == 0.0]["test_accuracy"].iloc[0]
        )  # level 1's previous is level 0, the baseline: the same network at alpha 0
    state = ctx.state(2)
    same = path(model_for(cfg), state, state, 5, bn, test)
    alpha = np.array([a for a, _, _ in same])
    frankle, linear, _ = barriers(alpha, np.array([loss for _, _, loss in same]))
    assert frankle == pytest.approx(0.0, abs=1e-6) and linear == pytest.approx(0.0, abs=1e-6)
    assert len({round(acc, 12) for _, acc, _ in same}) == 1
    assert sorted(conn["alpha"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_connectivity_points_below_two_is_one_line(tmp_path, capsys):
    argv = ["run", "--run-dir", str(tmp_path / "r"), "--preset", "quickstart"]
    assert main([*argv, "--set", "analysis.connectivity.points=1"]) == 2
    assert "analysis.connectivity.points = 1: Input should be greater than or equal to 2" in (
        one_error_line(capsys)
    )


# --- replicates ----------------------------------------------------------------------------


def test_replicate_grouping_refuses_runs_that_differ_in_more_than_the_seed():
    from pathlib import Path

    from prunescope.report.replicates import replicate_groups, require_replicates

    a = build_config(preset="cpu-resnet20-cifar10", overrides=["seed=0"])
    b = build_config(preset="cpu-resnet20-cifar10", overrides=["seed=1", "data.root=/else"])
    c = build_config(preset="cpu-resnet20-cifar10", overrides=["seed=2", "train.lr=0.1"])
    assert replicate_groups([a, b, c]) == [[0, 1], [2]]
    assert replicate_groups([a, a]) == [[0], [1]]  # the same run twice is not two seeds
    require_replicates([Path("a"), Path("b")], [a, b])  # data.root never matters
    with pytest.raises(UserInputError, match=r"c is not a replicate of a: .* differ in train.lr"):
        require_replicates([Path("a"), Path("b"), Path("c")], [a, b, c])


def test_t_interval_by_hand():
    from prunescope.report.replicates import t_interval

    # 0.80, 0.82, 0.84: mean 0.82, sd 0.02, t(0.975, 2) = 4.302653
    mean, low, high = t_interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82)
    assert high - mean == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)


@pytest.mark.slow
def test_replicates_in_the_report(analysed_run, tmp_path):
    other = tmp_path / "seed1"
    run(other, tiny_config("seed=1"), analyze=True)
    out = tmp_path / "rep"
    assert main(["report", str(analysed_run), str(other), "--replicates", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["runs"][0]["replicates"] == 2
        and "mean of seeds 0, 1" in summary["runs"][0]["label"]
    )
    assert [r["seed"] for r in summary["per_run"]] == [0, 1]
    assert "Findings per run" in (out / "index.html").read_text()


# --- control branches -----------------------------------------------------------------------


def test_branch_bad_input_is_one_line(analysed_run, tmp_path, capsys):
    assert main(["branch", str(analysed_run), "random_masks"]) == 2
    assert "unknown branch kind 'random_masks' (did you mean 'random_mask'?)" in one_error_line(
        capsys
    )
    partial = tmp_path / "p"
    run(partial, tiny_config("imp.levels=1"), analyze=False)
    (partial / "config.toml").read_text()
    manifest = json.loads((partial / "manifest.json").read_text())
    manifest["levels"].pop("01")
    (partial / "manifest.json").write_text(json.dumps(manifest))
    assert main(["branch", str(partial), "random_mask"]) == 2
    assert "is not complete (levels 1 are not trained)" in one_error_line(capsys)


@pytest.mark.slow
def test_a_branch_trains_the_controls_at_the_runs_sparsities(analysed_run, tmp_path, caplog):
    import logging

    root = tmp_path / "r"
    shutil.copytree(analysed_run, root)
    caplog.set_level(logging.INFO, logger="prunescope")
    for kind in ("random_global", "random_reinit"):
        assert main(["branch", str(root), kind]) == 0
    # random_global's level 0 is the run's (not trained, 0 s): no estimate until level 1
    said = [r.message for r in caplog.records]
    first_estimate = next(i for i, m in enumerate(said) if m.startswith("estimate:"))
    assert first_estimate > next(i for i, m in enumerate(said) if m.startswith("level 1 of"))
    for kind in ("random_global", "random_reinit"):
        b = root / "branches" / kind
        imp_acc = pd.read_csv(root / "analysis/accuracy.csv")
        acc = pd.read_csv(b / "analysis/accuracy.csv")
        assert acc["network_sparsity"].tolist() == pytest.approx(
            imp_acc["network_sparsity"].tolist()
        )
        _, imp_masks = load_level(root, 2)
        _, masks = load_level(b, 2)
        same = all(torch.equal(masks[k], imp_masks[k]) for k in masks)
        assert same == (kind == "random_reinit")
    # the dense level of a mask control is the run's own, byte for byte
    g = root / "branches/random_global/levels/00/model.safetensors"
    assert g.read_bytes() == (root / "levels/00/model.safetensors").read_bytes()
    r = root / "branches/random_reinit/levels/00/model.safetensors"
    assert r.read_bytes() != (root / "levels/00/model.safetensors").read_bytes()
    summary = json.loads((root / "report/summary.json").read_text())  # rebuilt with controls
    assert set(summary["findings"]["controls"]) == {"random_global", "random_reinit"}
    assert "controls" in {f["name"] for f in summary["figures"]}


def test_finetune_at_a_vanishing_final_learning_rate_is_said():
    """imp.rewind = "finetune" trains at the schedule's last rate: under cosine that is
    lr * (1 + cos(pi * (T*S - 1) / (T*S))) / 2, next to nothing (worked out here)."""
    import math

    from prunescope.config import build_config
    from prunescope.imp import finetune_rate_warning

    cfg = build_config(preset="cpu-resnet20-cifar10", overrides=["imp.rewind=finetune"])
    steps, epochs = 40, cfg.imp.pretrain_epochs + cfg.imp.train_epochs
    final = cfg.train.lr * (1 + math.cos(math.pi * (epochs * steps - 1) / (epochs * steps))) / 2
    warning = finetune_rate_warning(cfg, steps)
    assert warning is not None and f"{final:.2g}" in warning
    step = build_config(preset="paper-resnet20-cifar10", overrides=["imp.rewind=finetune"])
    assert finetune_rate_warning(step, 391) is None  # a step schedule ends at lr/100
    assert finetune_rate_warning(build_config(preset="cpu-resnet20-cifar10"), steps) is None


def test_costly_on_request_analyses_stay_with_the_run_not_its_controls(monkeypatch, tmp_path):
    """`runtime RUN` on the showcase run went on to time its three branches (about 4x the
    command's time) although the controls' report reads only their accuracy and sparsity:
    an analysis registered with on_branches=False is measured on the run alone."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    import prunescope.analysis.runner as analysis_runner
    import prunescope.branch as branch_module
    from prunescope import runner
    from prunescope.analysis.registry import analyses

    assert not analyses()["runtime"].on_branches
    assert not analyses()["iterative_zeroing"].on_branches
    assert analyses()["sparsity"].on_branches
    calls = []
    branch = tmp_path / "branches" / "random_mask"

    @contextmanager
    def session(root, request, create):
        yield SimpleNamespace(rd=SimpleNamespace(root=root), cfg=None)

    monkeypatch.setattr(branch_module, "branch_dirs", lambda root: [branch])
    monkeypatch.setattr(runner, "WriteSession", session)
    monkeypatch.setattr(
        analysis_runner, "analyze_run", lambda rd, cfg, device, only, **kw: calls.append(only)
    )
    run = SimpleNamespace(root=tmp_path)
    for only, expected in [
        (["runtime"], []),
        (["iterative_zeroing", "sparsity"], [["sparsity"]]),
        (None, [["sparsity", "weights", "zeroing", "similarity", "connectivity", "export"]]),
    ]:
        calls.clear()
        runner.analyze_branches(run, None, "cpu", only, plugins=[], levels=None, force=False)
        assert calls == expected, only
