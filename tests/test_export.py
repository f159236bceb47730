"""Structured export (issue #14): the smaller network computes what the masked one does,
on hand-built networks whose answer is known and on every built-in model."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from hostile_helpers import one_error_line
from model_helpers import batches_of, classifier_of, model_and_input
from prunescope import build_model
from prunescope.cli import main
from prunescope.export import export_model
from prunescope.export_files import load_exported
from prunescope.models import model_names, prunable_layers


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


class Hand(nn.Module):
    """x (3) -> hidden Linear(3->3) -> BN1d -> ReLU -> out Linear(3->2)."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)
        self.relu = nn.ReLU()
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.relu(self.bn(self.hidden(x))))


def test_constants_are_folded_or_dropped_by_hand():
    """Neuron 0 is empty with bias 1: BN maps it to (1 - 0)/1 * 2 + 0.5 = 2.5 > 0, ReLU keeps
    2.5, so out.bias gains 2.5 * out.weight[:, 0]. Neuron 1 is empty with bias 0: BN gives
    (0 - 1)/1 * 1 - 0.5 = -1.5, ReLU makes it 0: it just goes. Neuron 2 is alive."""
    net = Hand().eval()
    with torch.no_grad():
        net.hidden.weight.copy_(torch.tensor([[0.0, 0, 0], [0, 0, 0], [1, 2, 3]]))
        net.hidden.bias.copy_(torch.tensor([1.0, 0.0, 0.5]))
        net.bn.running_mean.copy_(torch.tensor([0.0, 1.0, 0.0]))
        net.bn.running_var.copy_(torch.tensor([1.0, 1.0, 1.0]) - net.bn.eps)
        net.bn.weight.copy_(torch.tensor([2.0, 1.0, 1.0]))
        net.bn.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
        net.out.weight.copy_(torch.tensor([[1.0, 10.0, 1.0], [-1.0, 20.0, 2.0]]))
        net.out.bias.copy_(torch.tensor([0.0, 0.0]))
    x = torch.randn(5, 3)
    res = export_model(net, ["hidden"], [(x, None)])
    assert res.plans["hidden"].removed == [0, 1] and res.plans["hidden"].kept == {}
    small = res.small
    assert small.hidden.out_features == 1 and small.bn.num_features == 1
    assert small.out.in_features == 1
    assert small.out.bias.tolist() == pytest.approx([2.5 * 1.0, 2.5 * -1.0])
    assert torch.allclose(small(x), net(x), atol=1e-6)


class PaddedPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.relu = nn.ReLU()
        self.b = nn.Conv2d(2, 1, 3, padding=1, bias=False)

    def forward(self, x):
        return self.b(self.relu(self.bn(self.a(x))))


def test_a_positive_constant_into_a_padded_convolution_is_kept_with_its_reason():
    net = PaddedPair().eval()
    with torch.no_grad():
        net.a.weight[0] = 0  # empty; BN bias 0.7 makes it emit 0.7 > 0 into a padded conv
        net.bn.bias.copy_(torch.tensor([0.7, 0.0]))
    res = export_model(net, ["a"], [(torch.randn(2, 1, 6, 6), None)])
    assert res.plans["a"].removed == []
    assert res.plans["a"].kept == {0: "a nonzero constant into a zero-padded convolution"}
    with torch.no_grad():
        net.bn.bias.copy_(torch.tensor([-0.7, 0.0]))  # ReLU makes it 0: removable
    res = export_model(net, ["a"], [(torch.randn(2, 1, 6, 6), None)])
    assert res.plans["a"].removed == [0] and res.small.b.in_channels == 1
    assert res.max_abs_diff == 0.0


def iterate_masks(model, layers, method, fanout, levels=3, example=None):
    """IMP-like masks on trained-looking weights (different neuron scales, so neurons empty)."""
    from prunescope.config.schema import ImpSection
    from prunescope.pruning.masks import apply_masks, dense_masks
    from prunescope.pruning.registry import PruneInput, next_masks
    from prunescope.structure import channel_flows

    keys = [f"{layer}.weight" for layer in layers]
    modules = dict(model.named_modules())
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in layers:
            w = modules[layer].weight
            w.mul_(0.05 + torch.rand(w.shape[0], generator=g).pow(3).view(-1, *[1] * (w.dim() - 1)))
    example = torch.randn(2, 3, 32, 32) if example is None else example
    flows = channel_flows(model, layers, example)
    consumers = {
        f"{layer}.weight": [
            (f"{c.layer}.weight", c.span, getattr(modules[c.layer], "groups", 1))
            for c in f.consumers
        ]
        for layer, f in flows.items()
        if f.removable
    }
    settings = ImpSection.model_validate({"method": method, "prune_fanout": fanout})
    masks = dense_masks(model, keys)
    for _ in range(levels):
        masks = next_masks(
            PruneInput(model.state_dict(), masks, 0.5, settings=settings, consumers=consumers)
        )
        apply_masks(model, masks)


# Every built-in model once (the big ones would make the suite slow twice), the two method
# and fan-out settings alternating between them, resnet8 with both.
COMBOS = [("complete", False), ("group", True)]
CASES = [(name, *COMBOS[i % 2]) for i, name in enumerate(sorted(model_names()))] + [
    ("resnet8", *COMBOS[(sorted(model_names()).index("resnet8") + 1) % 2])
]


BIG = {"vgg16"}  # measured: 22.7 s of a 10-minute fast lane; the full suite keeps it


def test_the_cases_cover_every_model_and_both_settings():
    assert {c[0] for c in CASES} == set(model_names())
    assert {c[1:] for c in CASES} == set(COMBOS)


@pytest.mark.parametrize(
    ("name", "method", "fanout"),
    [pytest.param(*c, marks=pytest.mark.slow) if c[0] in BIG else c for c in CASES],
)
def test_every_built_in_model_exports_exactly(name, method, fanout):
    torch.manual_seed(0)
    model, x = model_and_input(name, 16)
    model = randomise_bn(model)
    classifier = classifier_of(name)
    layers = [layer for layer in prunable_layers(model) if layer != classifier]
    iterate_masks(model, layers, method, fanout, example=batches_of(name, x, 8)[0][0])
    res = export_model(model, layers, batches_of(name, x, 2))
    with torch.no_grad():
        ref = model(x)
    assert res.max_rel_diff <= 1e-5, res.max_rel_diff
    with torch.no_grad():
        assert float((res.small(x) - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    removed = sum(len(p.removed) for p in res.plans.values())
    kept = {why for p in res.plans.values() for why in p.kept.values()}
    if name == "gcn":
        # an empty neuron's bias is not a constant after the graph mixes the nodes
        # (A @ (b·1) differs per node): it is kept, and the reason says so
        assert any("propagate" in why for why in kept), kept
    elif name.startswith("regnetx_200mf") and name != "regnetx_200mf_nogroups":
        assert "read by a grouped convolution" in kept or "a grouped convolution" in kept
    else:
        assert removed > 0, name
    assert res.totals()["params_after"] <= res.totals()["params_before"]
    if "resnet" in name:
        assert "it feeds a sum with another branch" in kept


def test_export_command_and_load_exported(analysed_run, tmp_path, capsys):
    from prunescope import load_level, load_test_set

    out = tmp_path / "exp"
    assert main(["export", str(analysed_run), "--level", "3", "--out", str(out)]) == 0
    meta = json.loads((out / "export.json").read_text())
    assert meta["level"] == 3 and meta["max_rel_diff"] <= 1e-5
    assert set(meta["layers"]) == set(prunable_layers(build_model("resnet8", 10, 1, 16))) - {"fc"}
    small = load_exported(out)
    ref, _ = load_level(analysed_run, 3)
    x, _ = load_test_set(analysed_run)
    with torch.no_grad():
        assert float((small(x) - ref(x)).abs().max()) <= 1e-5 * float(ref(x).abs().max())
    # bad input: one line, exit 2, nothing written
    assert main(["export", str(analysed_run), "--level", "9", "--out", str(tmp_path / "n")]) == 2
    assert "level 9" in one_error_line(capsys) and not (tmp_path / "n").exists()
    assert main(["export", str(analysed_run), "--level", "3", "--out", str(out)]) == 2
    assert "exists and is not an empty folder" in one_error_line(capsys)


def test_export_of_a_damaged_level_is_refused(damaged_copy, tmp_path, capsys):
    root = damaged_copy()
    data = bytearray((root / "levels/02/model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "levels/02/model.safetensors").write_bytes(bytes(data))
    assert main(["export", str(root), "--level", "2", "--out", str(tmp_path / "e")]) == 2
    assert "damaged" in one_error_line(capsys) and not (tmp_path / "e").exists()


def test_the_export_analysis_table(analysed_run):
    import pandas as pd

    e = pd.read_csv(analysed_run / "analysis/export.csv")
    assert sorted(e["level"].unique()) == [0, 1, 2, 3]
    assert (e["params_after"] <= e["params_before"]).all()
    assert (e["removed"] + e["kept_constant"] <= e["neurons"]).all()
    assert e["max_abs_diff"].max() < 1e-4
    dense = e[e["level"] == 0]
    assert (dense["removed"] == 0).all() and (dense["params_after"] == dense["params_before"]).all()


def test_sequential_model_export_keeps_module_names():
    model = nn.Sequential(OrderedDict(a=nn.Linear(4, 3), r=nn.ReLU(), b=nn.Linear(3, 2))).eval()
    with torch.no_grad():
        model.a.weight[1] = 0
        model.a.bias[1] = -1.0  # ReLU(-1) = 0: removable
    res = export_model(model, ["a"], [(torch.randn(3, 4), None)])
    assert res.plans["a"].removed == [1] and res.small.b.in_features == 2
