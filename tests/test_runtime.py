"""Runtime formats (issue #15): every format computes what the dense network does, the hybrid
follows the measurements it is given, and the table is reproducible apart from timings."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from hostile_helpers import one_error_line
from model_helpers import classifier_of, model_and_input
from prunescope.cli import main
from prunescope.export import export_model
from prunescope.models import model_names, prunable_layers
from prunescope.runtime.analysis import synthetic_state
from prunescope.runtime.formats import choose_hybrid
from prunescope.runtime.measure import TOLERANCE, Settings, measure_batch
from prunescope.runtime.sparse_layers import SparseConv2d, SparseLinear, semi_structured_fits


def randomise_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n for n in sorted(model_names())],
)
def test_every_format_agrees_with_dense_at_several_sparsities(name):
    torch.manual_seed(0)
    model, x = model_and_input(name, 2)
    model = randomise_bn(model)
    classifier = classifier_of(name)
    layers = [layer for layer in prunable_layers(model) if layer != classifier]
    keys = [f"{layer}.weight" for layer in layers]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    stage_of = {layer: s for s, ls in model.stages.items() for layer in ls}
    s = Settings(
        batch_sizes=(2,),
        repetitions=3,
        warmup=1,
        formats=("dense", "sparse", "exported", "hybrid", "onnxruntime"),
    )
    sparsities = (0.5, 0.98) if name in ("resnet8", "resnet20") else (0.98,)
    for sparsity in sparsities:
        model.load_state_dict(synthetic_state(state, keys, sparsity))
        exported = export_model(model, layers, [(x, None)]).small
        rows, layer_ms = measure_batch(model, exported, layers, stage_of, x, s)
        with torch.no_grad():
            scale = float(model(x).abs().max())
        for r in rows:
            assert r["max_abs_diff"] <= TOLERANCE * scale, (name, sparsity, r["format"])
            assert r["latency_ms"] > 0 and r["repetitions"] == 3  # right, so timed
        # ONNX has no sparse matmul: a GCN's sparse adjacency does not export (said once)
        left_out = {"onnxruntime"} if name == "gcn" else set()
        assert {r["format"] for r in rows} == set(s.formats) - left_out
        assert set(layer_ms) == set(layers)


def test_sparse_layers_equal_their_dense_ones():
    torch.manual_seed(1)
    for conv in (
        nn.Conv2d(8, 16, 3, padding=1),
        nn.Conv2d(8, 16, 1, stride=2, bias=False),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4),
    ):
        with torch.no_grad():
            conv.weight[torch.rand_like(conv.weight) < 0.8] = 0
        x = torch.randn(3, 8, 9, 9)
        for layout in ("csr", "bsr"):
            if layout == "bsr" and conv.groups > 1:
                continue
            sparse = SparseConv2d(conv, layout)
            assert torch.allclose(sparse(x), conv(x), atol=1e-5), (conv, layout)
    lin = nn.Linear(24, 16)
    with torch.no_grad():
        lin.weight[torch.rand_like(lin.weight) < 0.9] = 0
    x = torch.randn(5, 7, 24)  # [batch, tokens, features] works too
    assert torch.allclose(SparseLinear(lin)(x), lin(x), atol=1e-5)


def test_the_hybrid_follows_the_measurements_it_is_given():
    stage_of = {"a": "early", "b": "early", "c": "late", "d": "late"}
    times = {
        "a": {"dense": 1.0, "sparse": 3.0},
        "b": {"dense": 1.0, "sparse": 0.5},  # early: dense 2.0 < sparse 3.5
        "c": {"dense": 2.0, "sparse": 0.5},
        "d": {"dense": 2.0, "sparse": 2.5},  # late: sparse 3.0 < dense 4.0
    }
    assert choose_hybrid(times, stage_of) == {
        "a": "dense",
        "b": "dense",
        "c": "sparse",
        "d": "sparse",
    }
    tie = {"a": {"dense": 1.0, "sparse": 1.0}}
    assert choose_hybrid(tie, {"a": "s"}) == {"a": "dense"}


def test_semi_structured_compatibility():
    ok = torch.tensor([[1.0, 0, 2, 0, 0, 0, 3, 4]])
    bad = torch.tensor([[1.0, 2, 3, 0, 0, 0, 0, 4]])
    assert semi_structured_fits(ok) and not semi_structured_fits(bad)


TIMING = ["latency_ms", "latency_ms_p90", "energy_j"]


@pytest.mark.slow
def test_a_level_analysed_twice_gives_the_same_table_but_for_timings(analysed_run, tmp_path):
    import shutil

    root = tmp_path / "r"
    shutil.copytree(analysed_run, root)
    argv = [
        "runtime",
        str(root),
        "--levels",
        "3",
        "--batch-sizes",
        "1,4",
        "--set",
        "analysis.runtime.repetitions=3",
    ]
    assert main(argv) == 0
    first = pd.read_csv(root / "analysis/runtime.csv")
    assert main([*argv, "--force"]) == 0
    again = pd.read_csv(root / "analysis/runtime.csv")
    # the hybrid's make-up follows the timings (the faster format per stage), so its size and
    # its rounding do too; every other column of every row is the same
    for df in (first, again):
        df.loc[df["format"] == "hybrid", ["weight_bytes", "peak_memory_bytes", "max_abs_diff"]] = -1
    pd.testing.assert_frame_equal(first.drop(columns=TIMING), again.drop(columns=TIMING))
    assert set(first["format"]) >= {"dense", "sparse", "exported", "hybrid"}
    assert (first["max_abs_diff"] < 1e-3).all() and first["latency_ms"].notna().all()
    layers = pd.read_csv(root / "analysis/runtime_layers.csv")
    assert set(layers["format"]) >= {"dense", "sparse"}
    assert "runtime" in (root / "report/summary.json").read_text()  # the report was rebuilt


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formats", "dense,turbo"], "unknown format 'turbo'; choose auto or dense"),
        (["--batch-sizes", "0,4"], "batch sizes must be positive"),
        (["--device", "cuda"], "no CUDA GPU"),
    ],
)
def test_bad_runtime_input_is_one_line(analysed_run, args, message, capsys):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["runtime", str(analysed_run), *args]) == 2
    assert message in one_error_line(capsys)


def test_more_threads_than_cores_warns(analysed_run, tmp_path, caplog):
    import logging
    import shutil

    from prunescope.training.precision import available_cores

    root = tmp_path / "r"
    shutil.copytree(analysed_run, root)
    caplog.set_level(logging.WARNING, logger="prunescope")
    argv = [
        "runtime",
        str(root),
        "--levels",
        "0",
        "--batch-sizes",
        "1",
        "--formats",
        "dense",
        "--threads",
        str(available_cores() + 1),
        "--set",
        "analysis.runtime.repetitions=3",
    ]
    before = torch.get_num_threads()
    try:
        assert main(argv) == 0
        assert torch.get_num_threads() == available_cores()  # never more (see apply_threads)
    finally:
        torch.set_num_threads(before)
    assert "more than the" in caplog.text and "cores this process may use" in caplog.text
    assert set(pd.read_csv(root / "analysis/runtime.csv")["threads"]) == {available_cores()}
    cond = pd.read_csv(root / "analysis/runtime_conditions.csv")
    assert cond[["level", "cores", "threads"]].values.tolist() == [
        [0, available_cores(), available_cores()]
    ]
    assert cond["load_average"].iloc[0] >= 0


def test_timings_under_load_say_so(monkeypatch):
    from prunescope import machine_load
    from prunescope.report.sentences import load_caveat

    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    monkeypatch.setattr(machine_load, "available_cores", lambda: 2)
    assert machine_load.busy().startswith("this machine is busy (load 5.0 on 2 cores)")
    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (1.5, 4.0, 3.0))
    assert machine_load.busy() is None
    assert load_caveat({"max_load": 5.0, "cores": 2, "under_load": True}).startswith(
        " These timings were taken on a busy machine (load up to 5.0 on 2 cores)"
    )
    assert load_caveat({"max_load": 1.0, "cores": 2, "under_load": False}) == ""
    assert load_caveat(None) == ""


def test_a_refused_setting_is_not_recorded(analysed_run, capsys):
    before = (analysed_run / "config.toml").read_bytes()
    assert main(["runtime", str(analysed_run), "--batch-sizes", "1", "--set", "device=cuda:7"]) == 2
    one_error_line(capsys)
    assert (analysed_run / "config.toml").read_bytes() == before
