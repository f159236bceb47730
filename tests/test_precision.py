"""Precision, compile and threads (issue #12): the settings are honoured, pruned weights stay
exactly 0 in bf16, a failing compile falls back with one line, bad values are one line."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from hostile_helpers import one_error_line
from imp_helpers import tiny_config
from prunescope.cli import main
from prunescope.data import prepare_from_config
from prunescope.pruning.magnitude import prune_masks
from prunescope.pruning.masks import Masker, apply_masks, dense_masks, prunable_weight_keys
from prunescope.training import compile as compile_mod
from prunescope.training import precision as precision_mod
from prunescope.training.trainer import Trainer


def trainer_for(*overrides: str) -> Trainer:
    cfg = tiny_config(*overrides)
    data = prepare_from_config(cfg)
    torch.manual_seed(0)
    from prunescope.models import build_model

    model = build_model(cfg.model.name, 10, 1, data.image_size)
    return Trainer(model, cfg, data, torch.device("cpu"), total_epochs=4)


def forward_dtype(trainer: Trainer) -> torch.dtype:
    """The dtype the first convolution computes in during a training step."""
    seen = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d))
    handle = conv.register_forward_hook(lambda _m, _i, o: seen.append(o.dtype))
    try:
        trainer.train_epoch(0, opt := trainer.new_optimizer(), trainer.scheduler(opt, 0))
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize(("setting", "want"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_the_precision_setting_is_honoured(setting, want):
    trainer = trainer_for(f"train.precision={setting}", "data.train_subset=128")
    assert forward_dtype(trainer) == want
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay fp32


@pytest.mark.parametrize(("fast", "want"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_is_bf16_only_where_bf16_is_fast(monkeypatch, fast, want):
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: fast)
    trainer = trainer_for("train.precision=auto", "data.train_subset=128")
    assert trainer.precision == ("bf16" if fast else "fp32")
    assert forward_dtype(trainer) == want


def test_evaluation_follows_the_precision():
    from prunescope.training.trainer import evaluate

    trainer = trainer_for("train.precision=bf16", "data.train_subset=128")
    seen = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda _m, _i, o: seen.append(o.dtype))
    evaluate(trainer.model, trainer.test_loader, trainer.precision)
    assert set(seen) == {torch.bfloat16}


def test_pruned_weights_stay_exactly_zero_after_bf16_steps():
    trainer = trainer_for("train.precision=bf16", "data.train_subset=256")
    model = trainer.model
    keys = prunable_weight_keys(model, ["fc"])
    masks = prune_masks(model.state_dict(), dense_masks(model, keys), 0.6)
    apply_masks(model, masks)
    opt = trainer.new_optimizer()
    sched = trainer.scheduler(opt, 0)
    for epoch in range(2):
        trainer.train_epoch(epoch, opt, sched, Masker(model, masks))
    state = model.state_dict()
    for k, m in masks.items():
        w = state[k]
        assert w.dtype == torch.float32
        assert torch.equal(w[~m], torch.zeros_like(w[~m]))  # exactly +0.0
        assert not torch.signbit(w[~m]).any()
        assert (w[m] != 0).float().mean() > 0.99  # the alive ones trained


def test_a_failing_compile_falls_back_to_eager_with_one_line(monkeypatch, caplog):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("backend exploded\nsecond line of a long compiler message")

    monkeypatch.setattr(compile_mod, "compile_model", lambda model: Broken())
    monkeypatch.setattr("prunescope.training.trainer.compile_model", lambda model: Broken())
    caplog.set_level(logging.INFO, logger="prunescope")
    trainer = trainer_for("train.compile=true", "data.train_subset=128")
    assert trainer.forward.active
    result = trainer.train_epoch(0, opt := trainer.new_optimizer(), trainer.scheduler(opt, 0))
    assert result.nonfinite_step < 0 and result.train_loss > 0
    warnings = [r.message for r in caplog.records if "torch.compile failed" in r.message]
    assert warnings == [
        "torch.compile failed (RuntimeError: backend exploded); training eagerly instead"
    ]
    assert not trainer.forward.active


def test_compile_auto_is_on_for_cuda_and_off_on_a_cpu():
    cpu = torch.device("cpu")
    assert not compile_mod.compile_wanted("auto", cpu, 7_000)  # the CPU study: 7,100 steps
    assert not compile_mod.compile_wanted("auto", cpu, 1_100_000)  # no steady-state gain measured
    assert compile_mod.compile_wanted("auto", torch.device("cuda"), 10)
    assert compile_mod.compile_wanted(True, cpu, 1)
    assert not compile_mod.compile_wanted(False, torch.device("cuda"), 10**9)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "train.precision=fp8",
            "train.precision = 'fp8': Input should be 'fp32', 'bf16' or 'auto'",
        ),
        ("threads=0", "threads = 0: Input should be greater than 0"),
        ("train.compile=sometimes", "train.compile = 'sometimes'"),
    ],
)
def test_bad_values_are_one_line(item, message, tmp_path, capsys):
    assert (
        main(["run", "--run-dir", str(tmp_path / "r"), "--preset", "quickstart", "--set", item])
        == 2
    )
    assert message in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_threads_are_applied_and_recorded(tmp_path):
    import json

    from prunescope.runner import run

    before = torch.get_num_threads()
    try:
        run(tmp_path / "r", tiny_config("imp.levels=0", "threads=1"), analyze=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    manifest = json.loads((tmp_path / "r/manifest.json").read_text())
    session = manifest["sessions"][-1]
    assert session["threads"] == 1 and session["precision"] in ("fp32", "bf16")
    level = manifest["levels"]["00"]
    assert level["precision"] == session["precision"] and level["compiled"] is False


def test_threads_never_exceed_the_cores(monkeypatch, caplog):
    """More threads than cores crashed torch 2.13's CPU training here (see apply_threads)."""
    import logging

    monkeypatch.setattr(precision_mod, "available_cores", lambda: 2)
    before = torch.get_num_threads()
    caplog.set_level(logging.WARNING, logger="prunescope")
    try:
        assert precision_mod.apply_threads(3) == 2
        assert torch.get_num_threads() == 2
        assert "threads = 3: more than the 2 cores this process may use; using 2" in caplog.text
        caplog.clear()
        assert precision_mod.apply_threads(1) == 1 and torch.get_num_threads() == 1
        assert not caplog.text
    finally:
        torch.set_num_threads(before)


def test_legacy_bf16_configs_still_load():
    from prunescope.config.load import validate

    assert validate({"train": {"bf16": True}}).train.precision == "fp32"  # CPU: it meant fp32
    assert validate({"device": "cuda", "train": {"bf16": True}}).train.precision == "bf16"
