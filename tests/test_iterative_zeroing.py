"""Iterative zeroing with fine-tuning (issue #24): the fast path against its naive twin,
removed neurons that stay removed through fine-tuning, and the analysis end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from prunescope.analysis.iterative_zeroing import (
    removal_curve,
    removal_curve_naive,
    removal_masks,
    step_counts,
)
from prunescope.cli import main


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)
    ).eval()
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(20, 1, 4, 4, generator=g), torch.randint(0, 3, (20,), generator=g))
        for _ in range(3)
    ]
    return model, batches


def test_step_counts_are_cumulative_up_to_the_fraction():
    assert step_counts(10, 4, 0.5) == [1, 2, 4, 5]  # round(5 * k / 4) for k = 1..4
    assert step_counts(3, 4, 0.5) == [1, 2]


def test_the_curve_without_fine_tuning_equals_its_naive_twin():
    model, batches = _tiny()
    order = [("1", 3), ("1", 0), ("3", 5), ("1", 7), ("3", 2)]
    masks = {
        "1.weight": torch.ones(12, 16, dtype=torch.bool),
        "3.weight": torch.ones(8, 12, dtype=torch.bool),
    }
    fast = removal_curve(
        model, masks, order, [1, 3, 5], batches=batches, precision="fp32", tune=None
    )
    naive = removal_curve_naive(model, order, [1, 3, 5], batches)
    assert [(n, acc) for n, acc, _ in fast] == naive
    assert [n for n, _, _ in fast] == [0, 1, 3, 5]


def test_removed_neurons_stay_removed_through_fine_tuning():
    """The removal masks cover each removed neuron's incoming weights and its bias, so the
    masked training loop keeps them exactly 0, as it keeps pruned weights."""
    from prunescope.pruning.masks import Masker

    model, batches = _tiny()
    model.train()
    masks = {"1.weight": torch.rand(12, 16) > 0.5, "3.weight": torch.ones(8, 12, dtype=torch.bool)}
    removed = [("1", 2), ("3", 4)]
    current = removal_masks(model, masks, removed)
    with torch.no_grad():
        for key, m in current.items():
            dict(model.named_parameters())[key].mul_(m)
    masker = Masker(model, current)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    for x, y in batches * 3:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        masker.mask_grads()
        opt.step()
        masker.mask_weights()
    assert torch.equal(model[1].weight[2], torch.zeros(16)) and model[1].bias[2] == 0
    assert torch.equal(model[3].weight[4], torch.zeros(12)) and model[3].bias[4] == 0
    assert bool((model[1].weight[~masks["1.weight"]] == 0).all())


@pytest.mark.slow
def test_iterative_zeroing_end_to_end(damaged_copy):
    run = damaged_copy()
    settings = ["steps=2", "finetune_subset=128", "sample=2", "test_subset=60"]
    argv = ["analyze", str(run), "--only", "iterative_zeroing"]
    for s in settings:
        argv += ["--set", f"analysis.iterative_zeroing.{s}"]
    assert main(argv) == 0
    t = pd.read_csv(run / "analysis/iterative_zeroing.csv")
    assert set(t["order"]) == {"importance", "random"} and set(t["finetuned"]) == {True, False}
    assert set(t["level"]) == {3}  # the last level by default
    stem = t[(t["stage"] == "stem") & (t["order"] == "importance") & (~t["finetuned"])]
    assert stem["neurons_removed"].tolist() == [0, 2, 4]  # resnet8's 8-channel stem, half by step 2
    neurons = pd.read_csv(run / "analysis/iterative_zeroing_neurons.csv")
    assert len(neurons) == 2 * t["stage"].nunique()
    summary = json.loads((run / "report/summary.json").read_text())["findings"]
    assert summary["iterative_zeroing"]["level"] == 3
    assert (run / "report/figures/iterative_zeroing.png").exists()


def test_the_sentence_gives_both_orders_and_calls_the_start_the_levels_own():
    """The level measured is pruned: its accuracy before removal is not 'dense', and the
    random order without retraining is given too (it beat the importance order in one
    stage of the showcase run)."""
    from prunescope.analysis.iterative_zeroing import sentences
    from prunescope.analysis.registry import SentenceInputs

    stage = {
        "fraction_removed": 0.5,
        "accuracy_before": 0.7105,
        "importance_oneshot": 0.138,
        "importance_finetuned": 0.5985,
        "random_oneshot": 0.182,
        "random_finetuned": 0.47,
    }
    summary = {"iterative_zeroing": {"level": 8, "per_stage": {"stage1": stage}}}
    [(head, text)] = sentences(SentenceInputs(summary, [1, 8], True))
    assert head == "Iterative zeroing with fine-tuning:"
    assert "At level 8 (71.05% before any removal)" in text
    assert "stage1 (50% of its neurons): 13.8% without retraining and 59.9% fine-tuned" in text
    assert "against 18.2% and 47.0% in a random order" in text
    assert "dense" not in text
