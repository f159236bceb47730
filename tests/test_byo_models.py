"""Models researchers bring (issue #21): layer adapters, tied weights, the model check, the
classifier found by a forward, analyses without torch.fx, and every model of
``tests/byo_models.py`` through run, export and runtime.

Numbers are worked out here from the layers' own weights and outputs, never from the
code under test.
"""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from torch import nn

import byo_models
from hostile_helpers import one_error_line
from prunescope import load_level
from prunescope.analysis.ablation import AblationEngine
from prunescope.analysis.similarity import capture
from prunescope.analysis.zeroing import zeroing_fast, zeroing_naive
from prunescope.cli import main
from prunescope.errors import UserInputError
from prunescope.models.layers import IN_OUT, adapter_for
from prunescope.models.probe import output_layer, samples_independent
from prunescope.models.ties import aliases, deduplicated

transformers = pytest.importorskip("transformers")
Conv1D = transformers.pytorch_utils.Conv1D


# -- adapters -------------------------------------------------------------------------------


def test_a_conv1d_neuron_is_a_column_of_its_weight():
    torch.manual_seed(0)
    layer = Conv1D(nf=5, nx=3)  # 3 inputs, 5 output neurons, weight [3, 5]
    a = adapter_for(layer)
    assert a is IN_OUT and a.neurons(layer) == 5 and a.fan_in(layer) == 3
    with torch.no_grad():
        layer.weight[:, 2] = 0.0
        layer.weight[0, 4] = 0.0
    zeros = (a.rows(layer.weight) == 0).sum(1).tolist()
    assert zeros == [0, 0, 3, 0, 1]  # by hand: column 2 is empty, column 4 has one zero
    x = torch.randn(7, 3)
    before = layer(x)
    saved = a.zero(layer, 1)
    after = layer(x)
    assert torch.equal(after[:, 1], torch.zeros(7))  # exactly that neuron's output column
    others = [0, 2, 3, 4]
    assert torch.equal(after[:, others], before[:, others])
    a.restore(layer, 1, saved)
    assert torch.equal(layer(x), before)


# -- ties -----------------------------------------------------------------------------------


def test_tied_weights_are_one_tensor_under_their_first_key():
    model = byo_models.tied_lm(num_classes=11, context=8)
    assert aliases(model) == {"head.weight": "emb.weight"}
    assert list(deduplicated(model.state_dict())) == [
        k for k in model.state_dict() if k != "head.weight"
    ]


# -- the model check ------------------------------------------------------------------------


class _Head(nn.Module):
    """The output layer registered first, run last: registration order is not the graph."""

    def __init__(self, num_classes, in_channels, image_size):
        super().__init__()
        self.head = nn.Linear(16, num_classes)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, 16))

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_the_output_layer_is_found_by_running_the_model():
    model = _Head(10, 1, 8)
    assert output_layer(model.eval(), torch.randn(4, 1, 8, 8)) == ["head"]


def test_sample_independence_is_measured():
    mlp = nn.Sequential(nn.Linear(4, 3))

    class Mixing(nn.Module):  # each row sees the batch mean, as a graph's nodes see others
        def forward(self, x):
            return x - x.mean(0, keepdim=True)

    x = torch.randn(6, 4)
    assert samples_independent(mlp, x) and not samples_independent(Mixing(), x)


USER = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tuple(nn.Module):
        def __init__(self, num_classes, in_channels, image_size):
            super().__init__()
            self.fc = nn.Linear(in_channels * image_size ** 2, num_classes)
            self.hidden = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x.flatten(1))
            return y, y

    class Short(Tuple):
        def forward(self, x):
            return self.fc(x.flatten(1))[:, :3]

    def tuple_out(num_classes, in_channels, image_size):
        return Tuple(num_classes, in_channels, image_size)

    def short_out(num_classes, in_channels, image_size):
        return Short(num_classes, in_channels, image_size)

    def lstm(num_classes, in_channels, image_size):
        m = Tuple(num_classes, in_channels, image_size)
        m.rnn = nn.LSTM(4, 4)
        return m
    """
)


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    (tmp_path / "checked_nets.py").write_text(USER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    "factory, extra, message",
    [
        ("tuple_out", [], "returns a tuple, not a tensor of logits"),
        ("short_out", [], "logits of shape (8, 3)"),
        (
            "lstm",
            ["imp.prunable_types=['torch.nn.LSTM']"],
            "torch.nn.modules.rnn.LSTM ('rnn') has no `weight` tensor",
        ),
    ],
)
def test_a_model_that_cannot_work_is_refused_before_training(
    user_models, tmp_path, factory, extra, message, capsys
):
    args = ["run", "--preset", "quickstart", "--run-dir", str(tmp_path / "run")]
    sets = [f"model.name=checked_nets:{factory}", "model.stages={a=['fc', 'hidden']}", *extra]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


# -- analyses without torch.fx --------------------------------------------------------------


def _batches(n=3, size=16):
    g = torch.Generator().manual_seed(1)
    return [
        (torch.rand(size, 1, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g))
        for _ in range(n)
    ]


def test_in_place_relu_is_replayed_by_the_engine_exactly():
    torch.manual_seed(0)
    model = byo_models.inplace_relu_mlp(10, 1, 8).eval()
    layers = ["net.1", "net.3"]
    engine = AblationEngine(model, layers)
    assert engine.unsupported == {}  # before: every layer went to the naive loop
    batches = _batches()
    fast, slow = zeroing_fast(model, layers, batches), zeroing_naive(model, layers, batches)
    for layer in layers:
        assert torch.equal(fast.correct[layer], slow.correct[layer])
        torch.testing.assert_close(fast.loss_sum[layer], slow.loss_sum[layer], rtol=1e-6, atol=1e-6)


def test_similarity_sees_a_layers_own_output_before_an_in_place_relu():
    torch.manual_seed(0)
    model = byo_models.inplace_relu_mlp(10, 1, 8).eval()
    x = torch.randn(5, 1, 8, 8)
    out = capture(model, ["net.1"], x)["net.1"]
    with torch.no_grad():
        assert torch.equal(out, model.net[1](x.flatten(1)))
    assert bool((out < 0).any())  # not the values after the ReLU


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_zeroing_an_untraceable_model_ablates_every_neuron(precision):
    """The naive loop, also when an outer bf16 autocast would have cached the weights
    (measured before the fix: every neuron got the unablated loss)."""
    torch.manual_seed(0)
    model = byo_models.control_flow_mlp(10, 1, 8).eval()
    res = zeroing_fast(model, ["fc1", "fc2"], _batches(), precision=precision)
    ref = zeroing_naive(model, ["fc1", "fc2"], _batches(), precision=precision)
    for layer in ("fc1", "fc2"):
        assert len(set(res.loss_sum[layer].tolist())) > 32  # neurons differ
        assert torch.equal(res.correct[layer], ref.correct[layer])


# -- every model, end to end ----------------------------------------------------------------


def _write_config(tmp_path, name: str):
    path = tmp_path / f"{name}.toml"
    path.write_text((byo_models.CONFIGS | byo_models.VARIANTS)[name])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", list(byo_models.CONFIGS))
def test_a_model_researchers_bring_goes_through_the_study(name, tmp_path, capsys):
    pytest.importorskip("torch_geometric") if name.startswith("pyg") else None
    run = tmp_path / "run"
    assert main(["run", "--config", str(_write_config(tmp_path, name)), "--run-dir", str(run)]) == 0
    summary = json.loads((run / "report/summary.json").read_text())
    assert summary["dense"]["total_parameters"] > 0
    manifest = json.loads((run / "manifest.json").read_text())
    failed = {
        k: v for k, v in manifest.get("skipped_analyses", {}).items() if v.startswith("failed")
    }
    assert not failed
    capsys.readouterr()
    export = main(
        ["export", str(run), "--level", "1", "--out", str(tmp_path / "exp"), "--trust-code"]
    )
    assert export in (0, 2)
    if export == 2:
        assert "export" in one_error_line(capsys)
    argv = ["runtime", str(run), "--levels", "1", "--formats", "dense,sparse", "--trust-code"]
    assert main(argv) == 0


@pytest.mark.slow
def test_gpt2_neuron_table_counts_along_the_output_axis(tmp_path):
    run = tmp_path / "run"
    cfg = _write_config(tmp_path, "hf_gpt2")
    assert main(["run", "--config", str(cfg), "--run-dir", str(run), "--no-analyze"]) == 0
    assert main(["analyze", str(run), "--only", "sparsity", "--trust-code"]) == 0
    table = pd.read_csv(run / "analysis/neuron_sparsity.csv")
    with safe_open(run / "levels/01/model.safetensors", "pt") as f:
        for layer in ("transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_proj"):
            w = f.get_tensor(f"{layer}.weight")  # [in, out]: neurons are columns
            rows = table[(table["level"] == 1) & (table["layer"] == layer)]
            assert len(rows) == w.shape[1]
            assert rows["zeros"].tolist() == (w == 0).sum(0).tolist()
            assert set(rows["fan_in"]) == {w.shape[0]}


@pytest.mark.slow
def test_a_tied_model_saves_and_prunes_its_shared_tensor_once(tmp_path):
    run = tmp_path / "run"
    cfg = _write_config(tmp_path, "tied_lm")
    argv = ["run", "--config", str(cfg), "--run-dir", str(run), "--no-analyze"]
    assert main([*argv, "--set", "imp.exclude=[]"]) == 0  # the tied head pruned too
    with safe_open(run / "levels/01/model.safetensors", "pt") as f:
        saved = set(f.keys())
    assert "emb.weight" in saved and "head.weight" not in saved
    with safe_open(run / "levels/01/mask.safetensors", "pt") as f:
        keys = list(f.keys())
        mask = f.get_tensor("head.weight")
    assert keys.count("head.weight") == 1 and "emb.weight" not in keys
    model, masks = load_level(run, 1, trust_code=True)
    assert model.head.weight is model.emb.weight
    assert torch.equal(model.emb.weight == 0, ~mask.bool())
    assert torch.equal(masks["head.weight"], mask.bool())


def test_load_test_set_gives_token_ids_an_embedding_takes(tmp_path):
    from prunescope import load_test_set

    run = tmp_path / "run"
    args = ["run", "--preset", "cpu-gpt-char-shakespeare", "--run-dir", str(run), "--no-analyze"]
    for s in (
        "imp.levels=0",
        "imp.pretrain_epochs=0",
        "imp.train_epochs=1",
        "data.train_subset=64",
        "data.test_subset=256",
    ):
        args += ["--set", s]
    assert main(args) == 0
    x, _ = load_test_set(run)
    assert x.dtype == torch.int64
    nn.Embedding(200, 4)(x)  # raises on uint8


def test_layers_prints_what_is_pruned_and_what_stays_dense(tmp_path, capsys):
    cfg = _write_config(tmp_path, "tied_lm")
    assert main(["layers", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "blocks.0.q" in out and "head" in out and "the output layer" in out
    assert "tied: emb's weight is head's (one tensor" in out
    with pytest.raises(UserInputError):
        from prunescope.models.layers import check_prunable

        check_prunable("rnn", nn.LSTM(2, 2))


INOUT = textwrap.dedent(
    """
    import torch
    from torch import nn

    class InOut(nn.Module):  # a user's layer that stores its weight as [in, out]
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.1)
            self.bias = nn.Parameter(torch.zeros(n_out))

        def forward(self, x):
            return x @ self.weight + self.bias

    class Net(nn.Module):
        def __init__(self, num_classes, in_channels, image_size):
            super().__init__()
            self.hidden = InOut(in_channels * image_size ** 2, 12)
            self.out = InOut(12, num_classes)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x.flatten(1))))

    def make(num_classes, in_channels, image_size):
        return Net(num_classes, in_channels, image_size)
    """
)


def test_a_declared_neuron_axis_is_read_as_declared(tmp_path, monkeypatch, capsys):
    (tmp_path / "inout_nets.py").write_text(INOUT)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[model]\nname = "inout_nets:make"\n[model.stages]\nall = ["hidden", "out"]\n'
        '[imp]\nprunable_types = ["inout_nets.InOut"]\n'
        '[imp.neuron_axes]\n"inout_nets.InOut" = {weight = 1, output = -1}\n'
        '[data]\nname = "digits"\n'
    )
    assert main(["layers", "--config", str(cfg)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hidden"))
    # 12 neurons (the columns) of 256 inputs (digits as 1x16x16 images)
    assert row.split()[3:5] == ["12", "256"]


def test_group_pruning_removes_whole_conv1d_neurons_not_inputs():
    """IMP hands the methods every weight neuron-first (imp.py: neuron_major), so group
    pruning of an [in, out] layer empties output columns. By hand: column 2 holds the
    smallest weights, so it is the neuron the group share removes."""
    from prunescope.config.schema import ImpSection
    from prunescope.models.layers import neuron_major, stored_layout
    from prunescope.pruning.registry import PruneInput, next_masks

    w = torch.full((4, 6), 1.0)  # [in, out]: 4 inputs, 6 neurons
    w[:, 2] = 0.01
    w[1, :] += torch.arange(6) * 0.1  # distinct magnitudes elsewhere
    key, axes = "c.weight", {"c.weight": 1}
    masks = {key: torch.ones(4, 6, dtype=torch.bool)}
    settings = ImpSection.model_validate({"method": "group", "group": {"share": 1.0}})
    inp = PruneInput(
        neuron_major({key: w}, axes), neuron_major(masks, axes), 0.2, settings=settings
    )
    new = next_masks(inp)
    out = stored_layout(new, axes)[key]
    assert out.shape == (4, 6)
    # the budget is round(0.2 * 24) = 5: column 2 (4 weights), then one single weight
    assert not out[:, 2].any() and int((~out).sum()) == 5
    assert int((~out[:, [0, 1, 3, 4, 5]]).sum(0).max()) == 1  # no other column emptied
