"""The analyses on real runs: pinned tables, consistency with metrics.json, incremental updates."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from imp_helpers import tiny_config
from prunescope import load_level, load_test_set
from prunescope.analysis.tables import COLUMNS
from prunescope.config import build_config
from prunescope.runner import analyze, run

TABLES = [
    "accuracy",
    "sparsity_layers",
    "sparsity_stages",
    "neuron_sparsity",
    "dead_neurons",
    "weight_hist",
    "zeroing",
    "similarity",
]


def check_run_tables(root, levels: int, zeroing_on_the_full_test_set: bool = True):
    tables = {name: pd.read_csv(root / f"analysis/{name}.csv") for name in TABLES}
    for name, df in tables.items():
        assert list(df.columns) == COLUMNS[name], name
    metrics = {
        k: json.loads((root / f"levels/{k:02d}/metrics.json").read_text())
        for k in range(levels + 1)
    }
    layers = tables["sparsity_layers"]
    for k, m in metrics.items():
        rows = layers[layers["level"] == k]
        assert (rows["network_sparsity"] == m["network_sparsity"]).all()
        pruned = rows[rows["layer"] != "fc"]  # the classifier is excluded
        assert pruned["zeros"].sum() / pruned["weights"].sum() == pytest.approx(
            m["network_sparsity"], abs=1e-12
        )
        assert (rows[rows["layer"] == "fc"]["zeros"] == 0).all()
        z = tables["zeroing"][tables["zeroing"]["level"] == k]
        if zeroing_on_the_full_test_set:
            # the unablated network on the same (whole) test set is the level's own evaluation
            assert (z["base_accuracy"] == m["test_accuracy"]).all()
            assert z["base_loss"].iloc[0] == pytest.approx(m["test_loss"], rel=1e-6)
    neurons = tables["neuron_sparsity"]
    # every neuron of every prunable layer is zeroed once; the excluded classifier never
    for k in metrics:
        z = tables["zeroing"][tables["zeroing"]["level"] == k]
        n = neurons[(neurons["level"] == k) & (neurons["layer"] != "fc")]
        assert z[["layer", "neuron"]].values.tolist() == n[["layer", "neuron"]].values.tolist()
    assert neurons["sparsity"].between(0, 1).all()
    # the stage table is the sum of its layers
    by_stage = layers.groupby(["level", "stage"])[["weights", "zeros"]].sum()
    stages = tables["sparsity_stages"].set_index(["level", "stage"])
    assert (by_stage["zeros"] == stages.loc[by_stage.index, "zeros"]).all()
    hist = tables["weight_hist"]
    surviving = (
        layers.assign(alive=layers["weights"] - layers["zeros"])
        .groupby(["level", "stage"])["alive"]
        .sum()
    )
    assert (
        hist.groupby(["level", "stage"])["count"].sum()
        == surviving.loc[hist.groupby(["level", "stage"]).size().index]
    ).all()
    sim = tables["similarity"]
    assert sorted(sim["level"].unique()) == list(range(1, levels + 1))
    assert set(sim["layer"]) == set(layers["layer"]) - {"fc"}
    assert set(sim["reference"]) == {"baseline", "previous"}
    assert set(sim["metric"]) == {"cosine", "cosine_per_neuron", "cka"}
    assert sim["value"].between(-1 - 1e-9, 1 + 1e-9).all()
    prev = sim[(sim["reference"] == "previous")]
    assert (prev["reference_level"] == prev["level"] - 1).all()
    return tables


@pytest.mark.slow
def test_analyses_of_a_real_cifar10_run(cifar10_root, tmp_path):
    cfg = build_config(
        preset="cpu-resnet20-cifar10",
        overrides=[
            f"data.root={str(cifar10_root)!r}",
            "model.name=resnet8",
            "data.train_subset=600",
            "data.test_subset=200",
            "imp.levels=2",
            "imp.pretrain_epochs=1",
            "imp.train_epochs=2",
            "analysis.zeroing.test_subset=100",
            "analysis.similarity.test_subset=200",
            "train.precision=fp32",  # the check below evaluates in fp32 (bf16 flips 1 of 100)
        ],
    )
    root = tmp_path / "c"
    run(root, cfg, analyze=True)
    check_run_tables(root, 2, zeroing_on_the_full_test_set=False)
    tables = {name: pd.read_csv(root / f"analysis/{name}.csv") for name in TABLES}
    z = tables["zeroing"]
    x, y = load_test_set(root, subset=100)
    for k in range(3):
        model, _ = load_level(root, k)
        with torch.no_grad():
            acc = (model(x).argmax(1) == y).double().mean().item()
        assert (z[z["level"] == k]["base_accuracy"] == acc).all()
    assert z["delta_accuracy"].abs().max() > 0
    sim = tables["similarity"]
    assert len(sim) == 2 * 2 * 9 * 3  # levels 1-2, two references, 9 pruned layers, 3 metrics


@pytest.mark.slow
def test_analyses_of_a_tiny_run_and_incremental_updates(tmp_path):
    root = tmp_path / "r"
    run(root, tiny_config(), analyze=True)
    check_run_tables(root, 3)
    files = {p.name: p.read_bytes() for p in (root / "analysis").iterdir()}
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["analyses"]["zeroing"]["levels"] == [0, 1, 2, 3]
    # nothing to do: the tables stay byte for byte
    analyze(root, [], None, None, False)
    assert {p.name: p.read_bytes() for p in (root / "analysis").iterdir()} == files
    # forced recomputation of one level gives the same bytes (deterministic)
    analyze(root, [], ["zeroing", "similarity"], [2], True)
    assert {p.name: p.read_bytes() for p in (root / "analysis").iterdir()} == files
    # changed settings: zeroing on a subset is redone for every level
    analyze(root, ["analysis.zeroing.test_subset=50"], ["zeroing"], None, False)
    z = pd.read_csv(root / "analysis/zeroing.csv")
    assert sorted(z["level"].unique()) == [0, 1, 2, 3]
    assert z["base_accuracy"].mul(50).round(9).mod(1).eq(0).all()  # fractions of 50 images
    assert "test_subset = 50" in (root / "config.toml").read_text()


def test_analyze_refuses_to_change_training_settings(tmp_path, capsys):
    from prunescope.cli import main

    root = tmp_path / "r"
    run(root, tiny_config("imp.levels=1"), analyze=False)
    assert main(["analyze", str(root), "--set", "imp.rate=0.5"]) == 2
    assert (
        "analyze may change analysis.*, report.*, device and threads only"
        in capsys.readouterr().err
    )
    assert main(["analyze", str(root), "--only", "zeroing,bogus"]) == 2
    assert main(["analyze", str(root), "--levels", "5"]) == 2


def test_zeroing_in_both_modes_beside_the_batchnorm_constants(analysed_run, tmp_path):
    import shutil

    from prunescope.analysis.bn_constant import bn_constants

    root = tmp_path / "r"
    shutil.copytree(analysed_run, root)
    before = pd.read_csv(root / "analysis/zeroing.csv")
    analyze(root, ["analysis.zeroing.mode=both"], ["zeroing"], None, False)
    after = pd.read_csv(root / "analysis/zeroing.csv")
    pd.testing.assert_frame_equal(before, after)  # zeroing.csv stays the paper's definition
    out = pd.read_csv(root / "analysis/zeroing_output.csv")
    assert len(out) == len(after) and (out["delta_accuracy"] != after["delta_accuracy"]).any()
    bn = pd.read_csv(root / "analysis/bn_constants.csv")
    model, _ = load_level(root, 2)
    want = bn_constants(model, ["layer1.0.conv1"])["layer1.0.conv1"]
    got = bn[(bn["level"] == 2) & (bn["layer"] == "layer1.0.conv1")]["constant"].to_numpy()
    assert got == pytest.approx(want.double().numpy())
    summary = json.loads((root / "report/summary.json").read_text())  # rebuilt by analyze
    modes = summary["findings"]["zeroing_modes"]
    same = (out["delta_accuracy"] - after["delta_accuracy"]).abs() < 1e-12
    assert modes == {"neurons": len(out), "same_change": int(same.sum()), "rho": modes["rho"]}
    assert "zeroing_output" in {f["name"] for f in summary["figures"]}
