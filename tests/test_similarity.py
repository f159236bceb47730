"""Activation similarity: streamed float64 sums equal the materialised formulas; CKA's properties."""

from __future__ import annotations

import math

import pytest
import torch

from prunescope.analysis.similarity import (
    CrossStats,
    SelfStats,
    as_rows,
    materialised_metrics,
    similarity_metrics,
)


def streamed(a: torch.Tensor, b: torch.Tensor, batch: int = 7) -> dict[str, float]:
    sa, sb = SelfStats(a.shape[1], a.device), SelfStats(b.shape[1], b.device)
    ab = CrossStats(a.shape[1], b.shape[1], a.device)
    for lo in range(0, len(a), batch):
        sa.update(a[lo : lo + batch])
        sb.update(b[lo : lo + batch])
        ab.update(a[lo : lo + batch], b[lo : lo + batch])
    return similarity_metrics(sa, sb, ab)


def pair(seed=0, n=200, ca=6, cb=5):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, ca, generator=g) + 0.5
    mix = torch.randn(ca, cb, generator=g)
    b = torch.relu(a @ mix + 0.3 * torch.randn(n, cb, generator=g))
    return a, b


def test_streamed_equals_materialised():
    a, b = pair(ca=6, cb=6)
    s, m = streamed(a, b), materialised_metrics(a, b)
    for metric in ("cosine", "cosine_per_neuron", "cka"):
        assert s[metric] == pytest.approx(m[metric], abs=1e-6), metric


def test_cosine_definitions_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    s = streamed(a, b, batch=1)
    # flattened: <a,b> = 1 + 1 = 2, |a| = sqrt 2, |b| = sqrt 3
    assert s["cosine"] == pytest.approx(2 / math.sqrt(6))
    # channel 0: a=(1,0), b=(1,1): 1/sqrt2; channel 1: a=(0,1), b=(0,1): 1
    assert s["cosine_per_neuron"] == pytest.approx((1 / math.sqrt(2) + 1) / 2)


def test_dead_channels_are_left_out_of_the_per_neuron_mean():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[1.0, 3.0], [2.0, 1.0]])
    assert streamed(a, b)["cosine_per_neuron"] == pytest.approx(1.0)


def test_cka_of_a_layer_with_itself_is_one():
    a, _ = pair()
    assert streamed(a, a)["cka"] == pytest.approx(1.0, abs=1e-12)
    assert streamed(a, a)["cosine"] == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling():
    a, b = pair(seed=3, n=300, ca=5, cb=4)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(9)))
    base = streamed(a, b)["cka"]
    assert streamed(a, b @ q)["cka"] == pytest.approx(base, abs=1e-6)
    assert streamed(a * 7.5, b)["cka"] == pytest.approx(base, abs=1e-6)
    assert streamed(a, b * 0.01)["cka"] == pytest.approx(base, abs=1e-6)
    # ...but not to an arbitrary invertible map
    m = torch.tensor([[5.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.2, 0], [1, 0, 0, 1]])
    assert abs(streamed(a, b @ m)["cka"] - base) > 1e-3


def test_rows_are_channels_last():
    act = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    rows = as_rows(act)
    assert rows.shape == (8, 3)
    assert rows[1].tolist() == act[0, :, 0, 1].tolist()
    assert rows[4].tolist() == act[1, :, 0, 0].tolist()
