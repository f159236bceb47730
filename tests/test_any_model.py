"""Beyond CNNs (DESIGN §13): a user's own model through the whole study, bad user input in
one line, token-shaped analyses against their formulas, and the built-in non-CNN models."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hostile_helpers import write_planetoid
from prunescope import build_model
from prunescope.analysis.similarity import as_rows, materialised_metrics
from prunescope.analysis.zeroing import zeroing_fast, zeroing_naive
from prunescope.cli import main
from prunescope.models.registry import count_parameters, prunable_layers, stage_of_layer

USER_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, num_classes, in_channels, image_size):
            super().__init__()
            self.flat = nn.Flatten()
            self.body = nn.Sequential(
                nn.Linear(in_channels * image_size * image_size, 48), nn.ReLU(),
                nn.Linear(48, 32), nn.ReLU(),
            )
            self.head = nn.Linear(32, num_classes)

        def forward(self, x):
            return self.head(self.body(self.flat(x)))


    def make(num_classes, in_channels, image_size):
        return Net(num_classes, in_channels, image_size)


    def not_a_model(num_classes):
        return "a string"
    """
)

STAGES = """
[model.stages]
first = ["body.0"]
second = ["body.2"]
head = ["head"]
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usernets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def user_config(folder, model_name="usernets:make", stages=STAGES):
    path = folder / "user.toml"
    path.write_text(f'[model]\nname = "{model_name}"\n{stages}')
    return path


TINY = [
    "data.train_subset=256",
    "data.test_subset=120",
    "imp.levels=2",
    "imp.rate=0.3",
    "imp.pretrain_epochs=1",
    "imp.train_epochs=1",
    "analysis.zeroing.test_subset=60",
    "analysis.similarity.test_subset=60",
]


def cli(*args: str, extra=TINY) -> int:
    sets = [a for item in extra for a in ("--set", item)]
    return main([*args, *sets])


@pytest.mark.slow
def test_a_user_factory_runs_the_whole_study(user_module, tmp_path):
    run_dir = tmp_path / "run"
    cfg = user_config(user_module)
    assert (
        cli("run", "--preset", "quickstart", "--config", str(cfg), "--run-dir", str(run_dir)) == 0
    )
    layers = pd.read_csv(run_dir / "analysis/sparsity_layers.csv")
    assert set(layers["layer"]) == {"body.0", "body.2", "head"}
    # the last prunable layer is the classifier: excluded from pruning by default
    last = layers[layers["level"] == 2].set_index("layer")["sparsity"]
    assert last["head"] == 0 and last["body.0"] > 0.4
    zeroing = pd.read_csv(run_dir / "analysis/zeroing.csv")
    assert set(zeroing["layer"]) == {"body.0", "body.2"}
    assert len(zeroing[zeroing["level"] == 0]) == 48 + 32
    summary = json.loads((run_dir / "report/summary.json").read_text())
    assert summary["findings"]["later_stages_pruned_more"]
    assert main(["report", str(run_dir)]) == 0


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("name", "stages", "says"),
    [
        ("usernets:nothing_here", STAGES, "usernets has no attribute 'nothing_here'"),
        ("no_such_pkg.mod:make", STAGES, "cannot import no_such_pkg.mod"),
        ("usernets:not_a_model", STAGES, "returned a str, not a torch.nn.Module"),
        ("usernets:make", STAGES.replace('["body.2"]', '["body.9"]'), "body.9"),
        ("usernets:make", STAGES.replace('second = ["body.2"]\n', ""), "body.2"),
        ("usernets:make", STAGES.replace('["head"]', '["head", "body.*"]'), "body.0"),
    ],
)
def test_bad_user_models_are_refused_in_one_line(user_module, tmp_path, capsys, name, stages, says):
    cfg = user_config(user_module, name, stages)
    run_dir = tmp_path / "refused"
    code = cli("run", "--preset", "quickstart", "--config", str(cfg), "--run-dir", str(run_dir))
    assert code == 2
    line = one_line_error(capsys)
    assert says in line, line
    assert not run_dir.exists()


def test_stage_errors_name_the_module(user_module, tmp_path, capsys):
    cfg = user_config(user_module, stages=STAGES.replace('second = ["body.2"]\n', ""))
    assert cli("run", "--preset", "quickstart", "--config", str(cfg), "--run-dir", "x") == 2
    line = one_line_error(capsys)
    assert "body.2" in line and "no stage" in line, line
    cfg = user_config(user_module, stages=STAGES + 'again = ["body.0"]\n')
    assert cli("run", "--preset", "quickstart", "--config", str(cfg), "--run-dir", "x") == 2
    line = one_line_error(capsys)
    assert "body.0" in line and "first" in line and "again" in line, line


def test_fused_attention_is_refused_with_how_to_declare_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "attnnet.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            class Attn(nn.Module):
                def __init__(self, num_classes):
                    super().__init__()
                    self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
                    self.fc = nn.Linear(8, num_classes)
                    self.stages = {"fc": ["fc"]}

                def forward(self, x):
                    return self.fc(self.attn(x, x, x)[0].mean(1))

            def make(num_classes):
                return Attn(num_classes)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "a.toml"
    cfg.write_text('[model]\nname = "attnnet:make"\n')
    assert cli("run", "--preset", "quickstart", "--config", str(cfg), "--run-dir", "x") == 2
    line = one_line_error(capsys)
    assert "attn" in line and "MultiheadAttention" in line and "imp.exclude" in line, line


def test_token_shaped_similarity_is_the_materialised_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 4, generator=g)  # [batch, tokens, features]
    b = a + 0.5 * torch.randn(3, 5, 4, generator=g)
    ra, rb = as_rows(a, -1), as_rows(b, -1)
    assert ra.shape == (15, 4)
    assert torch.equal(ra[7], a[1, 2])  # row b·T + t is token t of sample b
    got = materialised_metrics(ra, rb)
    # the formulas, on [batch·tokens, features] built by loops
    x = np.array([a[i, t].numpy() for i in range(3) for t in range(5)], dtype=np.float64)
    y = np.array([b[i, t].numpy() for i in range(3) for t in range(5)], dtype=np.float64)
    cos = (x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())
    per = np.mean(
        [x[:, j] @ y[:, j] / np.linalg.norm(x[:, j]) / np.linalg.norm(y[:, j]) for j in range(4)]
    )
    xc, yc = x - x.mean(0), y - y.mean(0)
    cka = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert got["cosine"] == pytest.approx(cos, abs=1e-12)
    assert got["cosine_per_neuron"] == pytest.approx(per, abs=1e-12)
    assert got["cka"] == pytest.approx(cka, abs=1e-12)


class Untraceable(nn.Module):
    """A data-dependent branch: torch.fx cannot trace it, so zeroing takes the naive loop."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 4)
        self.stages = {"a": ["a"], "b": ["b"]}

    def forward(self, x):
        h = torch.relu(self.a(x))
        if h.sum() > 0:
            h = h * 2
        return self.b(h)


def token_batches(vocab: int, context: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (6, context + 1), generator=g)
    return [(x[:4, :-1], x[:4, 1:]), (x[4:, :-1], x[4:, 1:])]


def assert_same_zeroing(fast, naive, layers, count):
    assert fast.images == naive.images == count
    assert fast.base_correct == naive.base_correct
    for layer in layers:
        assert torch.equal(fast.correct[layer], naive.correct[layer]), layer
        assert torch.allclose(fast.loss_sum[layer], naive.loss_sum[layer], atol=1e-3), layer


def test_zeroing_an_untraceable_model_is_the_naive_loop(caplog):
    torch.manual_seed(0)
    model = Untraceable().eval()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, 6, generator=g), torch.randint(0, 4, (30,), generator=g)
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]
    naive = zeroing_naive(model, ["a"], batches, "weights")
    with caplog.at_level("INFO", logger="prunescope"):
        fast = zeroing_fast(model, ["a"], batches, "weights")
    assert_same_zeroing(fast, naive, ["a"], 30)
    assert any("naive" in r.getMessage() for r in caplog.records)


@pytest.fixture
def one_thread():
    """Hundreds of tiny forward passes: measured 1.5 s on one thread alone, but minutes on
    two threads when another process holds a core (the threads wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("mode", ["weights", "output"])
def test_fast_zeroing_of_a_char_transformer_equals_the_naive_loop(mode, one_thread):
    torch.manual_seed(0)
    model = build_model("gpt_char", num_classes=20, context=8).eval()
    layers = ["blocks.0.q", "blocks.3.proj"]
    batches = token_batches(20, 8)
    naive = zeroing_naive(model, layers, batches, mode)
    fast = zeroing_fast(model, layers, batches, mode, max_ablations=7)
    # every position is scored: 6 sequences of 8 tokens
    assert_same_zeroing(fast, naive, layers, 48)


@pytest.mark.parametrize(
    ("name", "inputs", "x", "out", "params"),
    [
        ("mlp", dict(num_classes=10, in_channels=1, image_size=8), (2, 1, 8, 8), (2, 10), None),
        ("vit_tiny", dict(num_classes=10), (2, 3, 32, 32), (2, 10), 311_146),
        ("gpt_char", dict(num_classes=82, context=64), None, (2, 64, 82), None),
    ],
)
def test_built_in_models_shapes_parameters_and_stages(name, inputs, x, out, params):
    model = build_model(name, **inputs).eval()
    example = torch.randn(x) if x else torch.randint(0, 82, (2, 64))
    assert tuple(model(example).shape) == out
    if params is not None:
        assert count_parameters(model) == params
    # every prunable layer is in exactly one stage (stage_of_layer refuses a repeat)
    assert sorted(stage_of_layer(model)) == sorted(prunable_layers(model))


def test_parameter_counts_by_hand():
    mlp = build_model("mlp", num_classes=10, in_channels=1, image_size=8)
    assert count_parameters(mlp) == (64 * 256 + 256) + (256 * 256 + 256) + (256 * 128 + 128) + (
        128 * 10 + 10
    )
    gpt = build_model("gpt_char", num_classes=82, context=64)
    d, depth = 96, 4
    block = 2 * (2 * d) + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    embeddings = 82 * d + 64 * d
    assert count_parameters(gpt) == embeddings + depth * block + 2 * d + (d * 82 + 82)


def test_transformer_stages_and_groups():
    vit = build_model("vit_tiny", num_classes=10)
    assert list(vit.stages) == ["embed", "block1", "block2", "block3", "block4", "head"]
    groups = vit.layer_groups
    assert set(groups) == {"attention", "mlp"}
    assert "blocks.2.k" in groups["attention"] and "blocks.2.fc2" in groups["mlp"]
    assert not set(groups["attention"]) & set(groups["mlp"])
    assert len(groups["attention"]) == 4 * 4 and len(groups["mlp"]) == 4 * 2


def test_gcn_forward_on_a_graph():
    from prunescope.data.graph import normalised_adjacency

    edges = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])
    adj = normalised_adjacency(edges, 3)
    dense = adj.to_dense().numpy()
    # D^-1/2 (A+I) D^-1/2 with degrees (2, 3, 2) by hand
    want = np.array(
        [[1 / 2, 1 / 6**0.5, 0], [1 / 6**0.5, 1 / 3, 1 / 6**0.5], [0, 1 / 6**0.5, 1 / 2]]
    )
    np.testing.assert_allclose(dense, want, rtol=1e-6)
    model = build_model("gcn", num_classes=2, features=5, graph=adj).eval()
    assert tuple(model(torch.randn(3, 5)).shape) == (3, 2)
    assert sorted(stage_of_layer(model)) == sorted(prunable_layers(model))


def test_text_split_is_seeded_and_disjoint():
    from prunescope.data.text import BLOCK, split_windows

    train, test = split_windows(1000)
    again_train, again_test = split_windows(1000)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert not np.intersect1d(train, test).size
    assert len(train) + len(test) == 1000
    # whole blocks of windows are test, so no test window has a train window inside its block
    assert set(np.unique(test // BLOCK)).isdisjoint(np.unique(train // BLOCK))
    assert 0.07 < len(test) / 1000 < 0.13
    assert not np.array_equal(test, split_windows(1000, seed=1)[1])


def test_shakespeare_corpus_from_the_package():
    from prunescope.data import prepare_data

    data = prepare_data("shakespeare_char", "", context=64)
    assert data.examples("train") == 70_146 and data.examples("test") == 7_792
    assert data.model_inputs().num_classes == 82


def test_planetoid_layout_loads_as_kipf_processes_it(tmp_path):
    from prunescope.data.graph import load_planetoid

    labels, feats = write_planetoid(tmp_path / "raw")
    g = load_planetoid(tmp_path, download=False)
    assert g.features.shape == (12, 4)
    assert list(g.train_nodes) == [0, 1, 2] and list(g.test_nodes) == [6, 7, 8, 9, 11]
    assert not np.intersect1d(g.train_nodes, g.test_nodes).size
    # node 10 lies inside test.index's span but has no row: zero features, in neither set
    assert not g.features[10].any()
    for node in (0, 4, 9, 11):
        np.testing.assert_allclose(g.features[node], feats[node] / feats[node].sum(), rtol=1e-6)
        assert g.labels[node] == labels[node]
    assert g.edges.shape == (2, 24)


def test_a_tampered_planetoid_file_runs_no_code(tmp_path):
    import pickle

    from prunescope.data.graph import load_planetoid
    from prunescope.errors import DataError

    write_planetoid(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "ind.toy.ally").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        load_planetoid(tmp_path, download=False)


def test_synthetic_graph_masks_are_disjoint_and_stratified():
    from prunescope.data.graph import SBM_CLASSES, SBM_TEST, SBM_TRAIN_PER_CLASS, planted_partition

    g = planted_partition()
    again = planted_partition()
    assert np.array_equal(g.edges, again.edges) and np.array_equal(g.test_nodes, again.test_nodes)
    assert not np.intersect1d(g.train_nodes, g.test_nodes).size
    assert np.bincount(g.labels[g.train_nodes]).tolist() == [SBM_TRAIN_PER_CLASS] * SBM_CLASSES
    assert np.bincount(g.labels[g.test_nodes]).tolist() == [SBM_TEST // SBM_CLASSES] * SBM_CLASSES
    # edges are symmetric, and a block holds more of a node's neighbours than the rest
    pairs = set(map(tuple, g.edges.T))
    assert all((v, u) in pairs for u, v in pairs)
    same = (g.labels[g.edges[0]] == g.labels[g.edges[1]]).mean()
    assert same > 0.5
