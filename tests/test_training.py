"""Schedules, evaluation, masked training, and a real (short) CIFAR-10 run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from imp_helpers import tiny_config
from prunescope.config import build_config
from prunescope.config.schema import TrainSection
from prunescope.data import DeviceLoader, prepare_from_config
from prunescope.models import ModelInputs
from prunescope.models.build import new_model
from prunescope.pruning.masks import Masker, apply_masks
from prunescope.training.schedule import lr_factor
from prunescope.training.trainer import Trainer, evaluate


def test_cosine_schedule():
    cfg = TrainSection(schedule="cosine")
    assert lr_factor(0, 10, 4, cfg) == 1.0
    assert lr_factor(20, 10, 4, cfg) == pytest.approx(0.5)  # half way: epoch 2 of 4
    assert lr_factor(30, 10, 4, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))


def test_step_schedule_and_warmup():
    cfg = TrainSection(schedule="step", milestones=[2, 3], gamma=0.1, warmup_epochs=1)
    assert lr_factor(0, 10, 5, cfg) == pytest.approx(0.1)  # warmup step 1 of 10
    assert lr_factor(9, 10, 5, cfg) == pytest.approx(1.0)
    assert lr_factor(19, 10, 5, cfg) == pytest.approx(1.0)
    assert lr_factor(20, 10, 5, cfg) == pytest.approx(0.1)
    assert lr_factor(35, 10, 5, cfg) == pytest.approx(0.01)


class ConstantClass(nn.Module):
    def __init__(self, cls: int):
        super().__init__()
        self.cls = cls
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), 10)
        out[:, self.cls] = 1.0
        return out


def test_evaluate_covers_the_whole_test_set_with_a_ragged_last_batch():
    y = torch.tensor([3] * 7 + [1] * 6)
    x = torch.zeros(13, 1, 2, 2, dtype=torch.uint8)
    loader = DeviceLoader(x, y, 5, (0.0,), (1.0,), torch.device("cpu"))
    acc, loss = evaluate(ConstantClass(3), loader)
    assert acc == 7 / 13
    # logits (1 at class 3, 0 elsewhere): loss = log(e + 9) - [y == 3]
    want = (7 * (math.log(math.e + 9) - 1) + 6 * math.log(math.e + 9)) / 13
    assert loss == pytest.approx(want, rel=1e-6)


def test_masked_training_keeps_pruned_weights_and_momentum_at_zero():
    cfg = build_config(
        preset="quickstart", overrides=["train.weight_decay=0.01", "train.nesterov=true"]
    )
    data = prepare_from_config(cfg)
    model = new_model(cfg, data.model_inputs())
    g = torch.Generator().manual_seed(0)
    masks = {
        k: torch.rand(p.shape, generator=g) > 0.5
        for k, p in model.named_parameters()
        if k.endswith("weight") and p.dim() > 1
    }
    apply_masks(model, masks)
    trainer = Trainer(model, cfg, data, torch.device("cpu"), 2)
    opt = trainer.new_optimizer()
    trainer.fit(0, 1, opt, Masker(model, masks))
    params = dict(model.named_parameters())
    for key, mask in masks.items():
        w = params[key].detach()
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
        assert not torch.signbit(w[~mask]).any()  # +0.0, not -0.0
        buf = opt.state[params[key]]["momentum_buffer"]
        assert torch.count_nonzero(buf[~mask]) == 0
        assert torch.count_nonzero(w[mask]) == int(mask.sum())


@pytest.mark.slow
def test_short_training_on_real_cifar10_lowers_the_loss(cifar10_root):
    cfg = build_config(
        overrides=[
            f"data.root={str(cifar10_root)!r}",
            "model.name=resnet8",
            "data.train_subset=2000",
            "data.test_subset=500",
            "train.epochs=3",
            "train.batch_size=64",
            "train.lr=0.05",
        ]
    )
    data = prepare_from_config(cfg)
    trainer = Trainer(new_model(cfg, ModelInputs(10, 3, 32)), cfg, data, torch.device("cpu"), 3)
    _acc0, loss0 = trainer.evaluate()
    results = trainer.fit(0, 3, trainer.new_optimizer())
    acc, loss = trainer.evaluate()
    assert results[-1].train_loss < results[0].train_loss - 0.1
    assert loss < loss0 - 0.1 and loss < math.log(10)
    assert acc > 0.2  # chance is 0.1


def test_the_device_step_trains_the_same_weights_as_the_eager_loop():
    """train.capture runs the whole step on the device (a CUDA graph on CUDA); on a CPU the
    same function runs as it is, and must give the eager loop's weights bit for bit."""
    from prunescope.models.build import new_model
    from prunescope.pruning.masks import Masker, apply_masks, dense_masks, prunable_weight_keys

    def train(capture: str):
        cfg = tiny_config(f"train.capture={capture}", "train.precision=fp32", "seed=3")
        data = prepare_from_config(cfg)
        model = new_model(cfg, data.model_inputs())
        masks = dense_masks(model, prunable_weight_keys(model, cfg.imp.exclude))
        for m in masks.values():
            m.view(-1)[::3] = False
        apply_masks(model, masks)
        trainer = Trainer(model, cfg, data, torch.device("cpu"), total_epochs=4)
        results = trainer.fit(1, 3, trainer.new_optimizer(), Masker(model, masks))
        return model.state_dict(), [(r.lr, r.train_loss, r.train_accuracy) for r in results]

    (eager, eager_rows), (device, device_rows) = train("false"), train("true")
    assert eager_rows == device_rows
    assert all(torch.equal(eager[k], device[k]) for k in eager)


def test_masks_take_their_weights_layout():
    """A contiguous mask beside a channels_last weight makes torch's foreach multiply fall
    back to one kernel per tensor: the masker's masks (and a restored optimizer state) take
    each weight's strides."""
    from prunescope.models import build_model
    from prunescope.pruning.masks import Masker, relayout_state

    model = build_model("resnet8", 10, 1, 16).to(memory_format=torch.channels_last)
    params = {k: p for k, p in model.named_parameters() if p.dim() == 4}
    keys = list(params)
    masks = {k: torch.ones(p.shape, dtype=torch.bool) for k, p in params.items()}  # as read
    for m in masks.values():
        m.view(-1)[0] = False
    masker = Masker(model, masks)
    for p, m in zip(masker.params, masker.masks, strict=True):
        assert m.stride() == p.stride() and m.dtype == p.dtype
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    weight = dict(model.named_parameters())[keys[1]]
    optimizer.state[weight]["momentum_buffer"] = torch.ones(weight.shape)  # as restored
    relayout_state(optimizer)
    assert optimizer.state[weight]["momentum_buffer"].stride() == weight.stride()


def test_augmenting_many_batches_at_once_gives_the_same_batches(monkeypatch):
    from prunescope.data import loader as loader_mod

    cfg = tiny_config()
    data = prepare_from_config(cfg)

    def epoch(images_at_once: int) -> list[torch.Tensor]:
        monkeypatch.setattr(loader_mod, "AUGMENT_IMAGES", images_at_once)
        loader = data.loader(data.train_x, data.train_y, 32, torch.device("cpu"), train=True)
        return [torch.cat([x.flatten(), y.float()]) for x, y in loader.epoch(2)]

    one, many = epoch(1), epoch(2048)
    assert len(one) == len(many) and all(torch.equal(a, b) for a, b in zip(one, many, strict=True))
