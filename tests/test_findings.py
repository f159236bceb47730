"""Findings computed from tables built by hand, where each value is known."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from prunescope.report.findings import (
    all_findings,
    critical_sparsity,
    dead_neuron_finding,
    similarity_finding,
    spearman,
    stage_order_finding,
    zeroing_spread_finding,
)

STAGES = ["stem", "stage1", "stage2", "fc"]


def accuracy(values):
    return pd.DataFrame(
        {
            "level": range(len(values)),
            "network_sparsity": [1 - 0.8**k for k in range(len(values))],
            "test_accuracy": values,
            "test_loss": [1.0] * len(values),
        }
    )


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): 1 - 6*(0+1+1)/(3*8) = 0.5
    assert spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))


def test_critical_sparsity():
    c = critical_sparsity(accuracy([0.90, 0.91, 0.895, 0.885, 0.80]), margin=0.01)
    assert c["level"] == 3 and c["drop"] == pytest.approx(0.015)
    assert c["network_sparsity"] == pytest.approx(1 - 0.8**3)
    assert c["last_level_within_margin"] == 2
    none = critical_sparsity(accuracy([0.90, 0.91, 0.90]), margin=0.01)
    assert none["level"] is None and none["last_level_within_margin"] == 2


def layers_table():
    # level 1: stem 10%, stage1 20%, stage2 30%; level 2: stem 40%, stage1 30%, stage2 50%; fc excluded
    rows = []
    for level, sparsities in ((0, (0, 0, 0)), (1, (0.1, 0.2, 0.3)), (2, (0.4, 0.3, 0.5))):
        for stage, s in zip(STAGES[:3], sparsities, strict=True):
            rows.append((level, 0.1 * level, stage, f"{stage}.conv", 100, round(100 * s), s))
        rows.append((level, 0.1 * level, "fc", "fc", 50, 0, 0.0))
    return pd.DataFrame(
        rows,
        columns=["level", "network_sparsity", "stage", "layer", "weights", "zeros", "sparsity"],
    )


def test_stage_order_finding():
    f = stage_order_finding(layers_table(), STAGES, exclude=["fc"])
    assert f["stages"] == ["stem", "stage1", "stage2"]  # fc holds only the excluded classifier
    by_level = {p["level"]: p for p in f["per_level"]}
    assert by_level[1]["rho"] == pytest.approx(1.0) and by_level[1]["monotone_increasing"]
    assert by_level[2]["rho"] == pytest.approx(0.5) and not by_level[2]["monotone_increasing"]
    assert f["levels_later_stages_pruned_more"] == 2 and f["levels_strictly_increasing"] == 1
    assert f["mean_rho"] == pytest.approx(0.75)
    # with the critical level at 2, only level 1 counts
    assert (
        stage_order_finding(layers_table(), STAGES, ["fc"], critical_level=2)["levels_considered"]
        == 1
    )
    # including the never-pruned classifier changes the answer, which is why it is left out
    assert stage_order_finding(layers_table(), STAGES, exclude=[])["per_level"][0]["rho"] < 1


def test_dead_neuron_finding():
    dead = pd.DataFrame(
        {
            "level": [1, 1, 2, 2],
            "network_sparsity": [0.2, 0.2, 0.36, 0.36],
            "stage": ["a", "b"] * 2,
            "layer": ["x", "fc"] * 2,
            "neurons": [8, 10] * 2,
            "fully_pruned": [0, 3, 2, 5],
        }
    )
    neurons = pd.DataFrame(
        {
            "level": [1, 1, 2, 2],
            "network_sparsity": [0.2, 0.2, 0.36, 0.36],
            "stage": "a",
            "layer": "x",
            "neuron": [0, 1, 0, 1],
            "fan_in": 4,
            "zeros": [1, 2, 4, 4],
            "sparsity": [0.25, 0.5, 1.0, 1.0],
        }
    )
    f = dead_neuron_finding(dead, neurons, exclude=["fc"])
    assert [p["fully_pruned"] for p in f["per_level"]] == [0, 2]
    assert f["total_fully_pruned"] == 2 and f["first_level_with_fully_pruned"] == 2
    assert f["per_level"][0]["max_neuron_sparsity"] == 0.5
    assert f["per_level"][1]["layers_with_fully_pruned"] == ["x"]


def test_zeroing_spread_finding():
    rows = []
    for level, deltas in ((0, [0.0, -0.02]), (1, [0.01, -0.03]), (2, [0.02, -0.06])):
        for i, d in enumerate(deltas):
            rows.append((level, 0.3 * level, "s", "l", i, 0.9, 0.9 + d, d, 0.3, 0.3))
    z = pd.DataFrame(
        rows,
        columns=[
            "level",
            "network_sparsity",
            "stage",
            "layer",
            "neuron",
            "base_accuracy",
            "accuracy",
            "delta_accuracy",
            "base_loss",
            "loss",
        ],
    )
    f = zeroing_spread_finding(z)
    assert [p["std"] for p in f["per_level"]] == pytest.approx([0.01, 0.02, 0.04])
    assert f["rho_sparsity_std"] == pytest.approx(1.0)
    assert f["first_std"] == pytest.approx(0.01) and f["last_std"] == pytest.approx(0.04)
    assert f["per_level"][2]["min"] == pytest.approx(-0.06)


def similarity_table():
    rows = []
    for level in (1, 2):
        for stage, layer, value in (
            ("stem", "c1", 0.95),
            ("stage1", "c2", 0.9 - 0.1 * level),
            ("stage1", "c3", 0.8 - 0.1 * level),
            ("stage2", "c4", 0.5),
        ):
            rows.append((level, 0.2 * level, "baseline", 0, stage, layer, "cosine", value))
            rows.append((level, 0.2 * level, "previous", level - 1, stage, layer, "cosine", 1.0))
    return pd.DataFrame(
        rows,
        columns=[
            "level",
            "network_sparsity",
            "reference",
            "reference_level",
            "stage",
            "layer",
            "metric",
            "value",
        ],
    )


def test_similarity_finding():
    f = similarity_finding(similarity_table(), STAGES, "cosine")
    by_level = {p["level"]: p for p in f["per_level"]}
    assert by_level[1]["stage_mean"] == pytest.approx({"stem": 0.95, "stage1": 0.75, "stage2": 0.5})
    assert by_level[1]["rho_stage_similarity"] == pytest.approx(-1.0)
    assert f["levels_later_stages_less_similar"] == 2
    assert f["lowest_level"] == 2 and f["lowest_mean"] == pytest.approx(
        (0.95 + 0.7 + 0.6 + 0.5) / 4
    )


def test_all_findings_is_json_ready():
    import json

    tables = {
        "accuracy": accuracy([0.9, 0.9, 0.7]),
        "sparsity_layers": layers_table(),
        "similarity": similarity_table(),
    }
    f = all_findings(tables, STAGES, ["fc"], margin=0.02)
    assert f["critical_sparsity"]["level"] == 2
    assert f["later_stages_pruned_more"]["levels_considered"] == 1
    json.dumps(f, allow_nan=False)
