"""Magnitude pruning worked out by hand on a tiny network, plus properties on real models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunescope import build_model
from prunescope.errors import UserInputError
from prunescope.pruning.magnitude import n_to_prune, prune_masks
from prunescope.pruning.masks import (
    count_alive,
    dense_masks,
    network_sparsity,
    prunable_weight_keys,
)


class TwoLayer(nn.Module):
    """hidden: Linear(3→2), fc: Linear(2→2), with weights chosen by hand."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 2)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([[0.5, -0.1, 0.3], [-0.2, 0.05, 0.4]]))
            self.fc.weight.copy_(torch.tensor([[0.01, -0.6], [0.7, 0.02]]))
        self.stages = {"hidden": ["hidden"], "fc": ["fc"]}

    def forward(self, x):
        return self.fc(torch.relu(self.hidden(x)))


def weights_of(model):
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_rounding_of_the_number_pruned():
    assert n_to_prune(10, 0.2) == 2
    assert n_to_prune(7, 0.2) == 1  # 1.4
    assert n_to_prune(8, 0.2) == 2  # 1.6
    assert n_to_prune(5, 0.5) == 3  # 2.5: halves go up, never to the even neighbour
    assert n_to_prune(1, 0.2) == 0
    assert n_to_prune(3, 0.99) == 3


def test_global_pruning_by_hand_with_the_classifier_excluded():
    model = TwoLayer()
    keys = prunable_weight_keys(model, exclude=["fc"])
    assert keys == ["hidden.weight"]
    masks = dense_masks(model, keys)
    # |w| = .5 .1 .3 / .2 .05 .4; rate 0.5 of 6 alive = 3: remove .05, .1, .2
    m1 = prune_masks(weights_of(model), masks, 0.5)
    assert m1["hidden.weight"].tolist() == [[True, False, True], [False, False, True]]
    # next level: 3 alive (.5 .3 .4), round(1.5) = 2: remove .3 and .4
    m2 = prune_masks(weights_of(model), m1, 0.5)
    assert m2["hidden.weight"].tolist() == [[True, False, False], [False, False, False]]


def test_global_pruning_ranks_all_layers_together():
    model = TwoLayer()
    keys = prunable_weight_keys(model, exclude=[])
    assert keys == ["hidden.weight", "fc.weight"]
    m = prune_masks(weights_of(model), dense_masks(model, keys), 0.4)
    # 10 alive, remove 4: .01 (fc), .02 (fc), .05 (hidden), .1 (hidden)
    assert m["hidden.weight"].tolist() == [[True, False, True], [True, False, True]]
    assert m["fc.weight"].tolist() == [[False, True], [True, False]]
    assert count_alive(m) == 6 and network_sparsity(m) == pytest.approx(0.4)


def test_layerwise_pruning_takes_the_rate_from_each_layer():
    model = TwoLayer()
    keys = prunable_weight_keys(model, exclude=[])
    m = prune_masks(weights_of(model), dense_masks(model, keys), 0.5, scope="layerwise")
    # hidden: remove 3 of 6 (.05 .1 .2); fc: remove 2 of 4 (.01 .02)
    assert m["hidden.weight"].tolist() == [[True, False, True], [False, False, True]]
    assert m["fc.weight"].tolist() == [[False, True], [True, False]]
    g = prune_masks(weights_of(model), dense_masks(model, keys), 0.5, scope="global")
    # globally the 5 smallest are .01 .02 .05 .1 .2: same here, but counted over 10
    assert count_alive(g) == 5
    assert g["fc.weight"].tolist() == [[False, True], [True, False]]
    assert g["hidden.weight"].tolist() == [[True, False, True], [False, False, True]]


def test_ties_are_broken_by_flat_index():
    w = {"a": torch.tensor([0.3, 0.1, 0.1, 0.2]), "b": torch.tensor([0.1, -0.1])}
    masks = {k: torch.ones_like(v, dtype=torch.bool) for k, v in w.items()}
    # 6 alive, rate .5: remove 3 of the four 0.1s, in flat order: a[1], a[2], b[0]
    m = prune_masks(w, masks, 0.5)
    assert m["a"].tolist() == [True, False, False, True]
    assert m["b"].tolist() == [False, True]


def test_already_pruned_weights_are_not_counted_again():
    w = {"a": torch.tensor([0.0, 0.0, 0.5, 0.4, 0.3])}
    masks = {"a": torch.tensor([False, False, True, True, True])}
    m = prune_masks(w, masks, 0.34)  # round(0.34 * 3) = 1 of the 3 alive
    assert m["a"].tolist() == [False, False, True, True, False]


def test_unknown_exclude_is_a_user_error():
    with pytest.raises(UserInputError, match=r"imp\.exclude names \['fc9'\]"):
        prunable_weight_keys(TwoLayer(), exclude=["fc9"])


@pytest.mark.parametrize("name", ["resnet20", "regnetx_200mf"])
def test_iterated_pruning_properties_on_real_models(name):
    torch.manual_seed(0)
    model = build_model(name)
    keys = prunable_weight_keys(model, exclude=["fc"])
    total = sum(dict(model.named_parameters())[k].numel() for k in keys)
    masks = dense_masks(model, keys)
    g = torch.Generator().manual_seed(1)
    for level in range(1, 9):
        # fresh "trained" weights each level, zero where pruned (as IMP leaves them)
        weights = {k: torch.randn(masks[k].shape, generator=g) * masks[k] for k in keys}
        new = prune_masks(weights, masks, 0.2)
        for k in keys:
            assert not (new[k] & ~masks[k]).any(), "masks must be nested"
        removed = torch.cat([weights[k][masks[k] & ~new[k]].abs() for k in keys])
        kept = torch.cat([weights[k][new[k]].abs() for k in keys])
        assert removed.max() <= kept.min(), (
            "global: every removed weight is no larger than any kept one"
        )
        masks = new
        alive = count_alive(masks)
        assert abs(alive - total * 0.8**level) <= level, (level, alive, total * 0.8**level)
    assert network_sparsity(masks) == pytest.approx(1 - 0.8**8, abs=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
    alive_bits=st.lists(st.booleans(), min_size=40, max_size=40),
    rate=st.floats(0.01, 0.99),
)
def test_pruning_properties_with_many_ties(values, alive_bits, rate):
    w = torch.tensor(values, dtype=torch.float32) / 4
    alive = torch.tensor(alive_bits[: len(values)])
    new = prune_masks({"w": w}, {"w": alive}, rate)["w"]
    n_alive = int(alive.sum())
    assert not (new & ~alive).any()
    assert int(alive.sum() - new.sum()) == n_to_prune(n_alive, rate)
    removed = (alive & ~new).nonzero().flatten().tolist()
    kept = new.nonzero().flatten().tolist()
    for r in removed:
        for k in kept:
            # smaller magnitude goes first; among equals, the lower index goes first
            assert (w[r].abs(), r) < (w[k].abs(), k)
