"""Layer, stage and neuron sparsity and weight histograms on a hand-made state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from prunescope.analysis.sparsity import sparsity_tables
from prunescope.analysis.weights import weight_hist_table


class FakeContext:
    """What the sparsity and weight analyses read, built by hand."""

    def __init__(self, states, sparsities):
        from prunescope.config import build_config

        self.cfg = build_config(
            overrides=[
                "analysis.weights.bins=4",
                "analysis.weights.min=0.01",
                "analysis.weights.max=100",
            ]
        )
        self._states = states
        self._sparsity = sparsities
        self.stages = {"early": ["conv"], "late": ["fc"]}
        self.stage_of = {"conv": "early", "fc": "late"}
        self.layers = ["conv", "fc"]
        self.groups = {"everything": ["conv", "fc"], "just_fc": ["fc"]}  # groups cross stages
        from prunescope.models.layers import CONV, LINEAR

        self.adapters = {"conv": CONV, "fc": LINEAR}  # neurons on axis 0 of both weights

    def state(self, level):
        return self._states[level]

    def network_sparsity(self, level):
        return self._sparsity[level]


def hand_state():
    conv = torch.ones(3, 2, 2, 2)  # 3 filters, fan-in 8
    conv[0].view(-1)[:2] = 0  # filter 0: 2 of 8 zero
    conv[2] = 0  # filter 2 fully pruned
    fc = torch.tensor([[0.0, 0.5, 0.0, 50.0], [0.02, 0.0, 0.0, 0.0]])  # fan-in 4
    return {"conv.weight": conv, "fc.weight": fc, "fc.bias": torch.zeros(2)}


def test_neuron_and_layer_sparsity_by_hand():
    t = sparsity_tables(FakeContext({3: hand_state()}, {3: 0.5}), [3])
    n = t["neuron_sparsity"]
    assert n["sparsity"].tolist() == [0.25, 0.0, 1.0, 0.5, 0.75]
    assert n["zeros"].tolist() == [2, 0, 8, 2, 3]
    assert n["fan_in"].tolist() == [8, 8, 8, 4, 4]
    assert (n["level"] == 3).all() and (n["network_sparsity"] == 0.5).all()
    layers = t["sparsity_layers"].set_index("layer")
    assert layers.loc["conv", ["weights", "zeros"]].tolist() == [24, 10]
    assert layers.loc["fc", "sparsity"] == pytest.approx(5 / 8)
    stages = t["sparsity_stages"].set_index("stage")
    assert stages.loc["late", "zeros"] == 5 and stages.loc["early", "sparsity"] == pytest.approx(
        10 / 24
    )
    dead = t["dead_neurons"].set_index("layer")
    assert dead.loc["conv", "fully_pruned"] == 1 and dead.loc["fc", "fully_pruned"] == 0
    assert dead.loc["conv", "neurons"] == 3
    groups = t["sparsity_groups"].set_index("group")
    assert groups.loc["everything", ["weights", "zeros"]].tolist() == [24 + 8, 10 + 5]
    assert groups.loc["just_fc", "sparsity"] == pytest.approx(5 / 8)


def test_weight_histogram_counts_surviving_weights_on_shared_bins():
    df = weight_hist_table(FakeContext({0: hand_state()}, {0: 0.0}), [0])
    edges = np.geomspace(0.01, 100, 5)
    late = df[df["stage"] == "late"]
    assert late["bin_low"].tolist() == pytest.approx(edges[:-1].tolist())
    # surviving |w| in fc: .5 (bin [.1, 1)), 50 (bin [10, 100)), .02 (bin [.01, .1))
    assert late["count"].tolist() == [1, 1, 0, 1]
    early = df[df["stage"] == "early"]
    assert early["count"].tolist() == [0, 0, 14, 0]  # the 14 surviving ones of 1.0
    assert isinstance(df, pd.DataFrame) and int(df["count"].sum()) == 17
