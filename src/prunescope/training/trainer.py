"""The training loop and evaluation, shared by dense training and every IMP level.

One epoch is one pass of a :class:`DeviceLoader`; losses and accuracy are
accumulated on the device and read once per epoch, so there is no host sync per
batch. A non-finite loss is remembered (its step) and reported at the epoch's end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from prunescope.config.schema import Config
from prunescope.data import PreparedData
from prunescope.distributed import average_gradients, reduce_across, world
from prunescope.errors import NonFiniteLossError
from prunescope.pruning.masks import Masker
from prunescope.seeding import derive_seed
from prunescope.training import objective
from prunescope.training.compile import GuardedForward, compile_model, compile_wanted
from prunescope.training.device import use_channels_last
from prunescope.training.device_step import DeviceStep, capture_wanted
from prunescope.training.precision import autocast, resolve_precision
from prunescope.training.schedule import lr_factor, make_optimizer, make_scheduler


@dataclass
class EpochResult:
    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    nonfinite_step: int  # -1 when every loss was finite
    seconds: float

    def row(self) -> dict[str, float | int]:
        """The deterministic part, for the per-epoch CSV (no timings)."""
        d = asdict(self)
        d.pop("seconds")
        d.pop("nonfinite_step")
        return d


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Iterable, precision: str = "fp32") -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over every scored example of ``batches`` (a loader or
    a list of (inputs, labels) on one device: images, tokens or a graph's nodes); the
    forward pass in ``precision``, the loss and the counts in float32/float64, summed on
    the device (one read at the end). The one evaluation loop: training, connectivity."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in batches:
        with autocast(x.device, precision):
            out = model(x)
        loss_sum += objective.loss_sum(out, y).double()
        c, scored = objective.correct_count(out, y)
        correct += c
        n += scored
    model.train(was_training)
    return int(correct) / int(n), float(loss_sum) / int(n)


class Trainer:
    """Trains one model on one dataset under one config; IMP calls it once per level."""

    def __init__(
        self,
        model: nn.Module,
        cfg: Config,
        data: PreparedData,
        device: torch.device,
        total_epochs: int,
        planned_epochs: int | None = None,
    ):
        """``planned_epochs``: every epoch this trainer will run (all levels of an IMP run),
        which decides whether ``train.compile = "auto"`` pays."""
        self.cfg = cfg
        self.device = device
        self.total_epochs = total_epochs
        self.precision = resolve_precision(cfg.train.precision, device)
        if device.type == "cuda":  # fixed shapes every step: let cuDNN time its algorithms once
            torch.backends.cudnn.benchmark = True
        channels_last = use_channels_last(device, cfg.train.channels_last)
        self.model = model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_loader = data.loader(
            data.train_x,
            data.train_y,
            cfg.train.batch_size,
            device,
            train=True,
            seed=cfg.seed,
            channels_last=channels_last,
        )
        self.test_loader = data.loader(
            data.test_x,
            data.test_y,
            cfg.train.eval_batch_size,
            device,
            channels_last=channels_last,
        )
        self.steps_per_epoch = len(self.train_loader)
        steps = self.steps_per_epoch * (planned_epochs or total_epochs)
        self.compiled = compile_wanted(cfg.train.compile, device, steps)
        # The compiled module shares parameters with self.model; state dicts, masks and
        # evaluation all go through the plain module.
        self.forward = GuardedForward(
            self.model, compile_model(self.model) if self.compiled else None
        )
        self.captured = capture_wanted(cfg.train.capture, device, world().distributed)

    def device_step(
        self, optimizer: torch.optim.Optimizer, masker: Masker | None, start_epoch: int, hold: bool
    ) -> DeviceStep:
        """The device-resident step for one phase, its learning rates precomputed exactly as
        the eager scheduler computes them (``cfg.lr * lr_factor(step)``)."""
        first, spe, total = (
            start_epoch * self.steps_per_epoch,
            self.steps_per_epoch,
            self.total_epochs,
        )
        held = total * spe - 1 if hold else None
        steps = range(first, max(total * spe, first + 1))
        table = [
            self.cfg.train.lr * lr_factor(held if hold else k, spe, total, self.cfg.train)
            for k in steps
        ]
        return DeviceStep(
            model=self.model,
            forward=lambda x: self.forward.run(lambda m: m(x)),
            optimizer=optimizer,
            masker=masker,
            lr_table=table,
            precision=self.precision,
            label_smoothing=self.cfg.train.label_smoothing,
            device=self.device,
        )

    def new_optimizer(self) -> torch.optim.Optimizer:
        # a captured step needs an update that reads its learning rate on the device
        fused = self.captured and self.device.type == "cuda"
        return make_optimizer(self.model, self.cfg.train, fused=fused)

    def scheduler(self, optimizer: torch.optim.Optimizer, epoch: int, final_lr: bool = False):
        """The schedule positioned at ``epoch``; ``final_lr`` holds it at its last step's value."""
        return make_scheduler(
            optimizer,
            epoch * self.steps_per_epoch,
            self.steps_per_epoch,
            self.total_epochs,
            self.cfg.train,
            hold_at=self.total_epochs * self.steps_per_epoch - 1 if final_lr else None,
        )

    def train_epoch(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        masker: Masker | None = None,
        desc: str = "",
        device_step: DeviceStep | None = None,
    ) -> EpochResult:
        model, cfg = self.model, self.cfg
        model.train()
        # Dropout draws depend only on (seed, epoch): identical at every level and on resume.
        torch.manual_seed(derive_seed(cfg.seed, "torch", epoch))
        dev = self.device
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        bad_step = torch.full((), -1, dtype=torch.int64, device=dev)
        n = torch.zeros((), dtype=torch.int64, device=dev)
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        batches = tqdm(
            self.train_loader.epoch(epoch),
            total=self.steps_per_epoch,
            desc=desc or f"epoch {epoch}",
            leave=False,
            disable=None,
            unit="batch",
        )
        if device_step is not None:
            lr = float(device_step.lr)
            device_step.begin_epoch()
            for x, y in batches:
                device_step(x, y)
            return self._result(epoch, lr, device_step.epoch_stats(), start)
        for step, (x, y) in enumerate(batches):
            out, loss = self.forward.run(lambda m, x=x, y=y: self._forward_backward(m, x, y))
            if masker:
                masker.mask_grads()
            optimizer.step()
            scheduler.step()
            if masker:
                masker.mask_weights()
            detached = loss.detach()
            c, scored = objective.correct_count(out.detach(), y)
            loss_sum += detached.double() * scored
            correct += c
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(detached), step, bad_step)
            n += scored
        if world().distributed:  # every shard's statistics, identical on every rank
            loss_sum, correct, n = reduce_across(
                torch.stack([loss_sum, correct.double(), n.double()])
            )
            bad_step = reduce_across(bad_step, "max")
        return self._result(
            epoch, lr, (float(loss_sum), int(correct), int(n), int(bad_step)), start
        )

    @staticmethod
    def _result(
        epoch: int, lr: float, stats: tuple[float, int, int, int], start: float
    ) -> EpochResult:
        loss_sum, correct, n, bad_step = stats
        scored_total = max(n, 1)
        return EpochResult(
            epoch=epoch,
            lr=lr,
            train_loss=loss_sum / scored_total,
            train_accuracy=correct / scored_total,
            nonfinite_step=bad_step,
            seconds=time.perf_counter() - start,
        )

    def _forward_backward(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.zero_grad(set_to_none=True)  # here: a failed compiled attempt leaves none
        with autocast(self.device, self.precision):
            out = module(x)
            loss = objective.loss(out, y, label_smoothing=self.cfg.train.label_smoothing)
        loss.backward()
        # under torchrun: the step sees the global batch, each shard weighted by its size
        average_gradients(self.model, objective.scored(y))
        return out, loss

    def evaluate(self) -> tuple[float, float]:
        return evaluate(self.model, self.test_loader, self.precision)

    def fit(
        self,
        start_epoch: int,
        end_epoch: int,
        optimizer: torch.optim.Optimizer,
        masker: Masker | None = None,
        on_epoch: Callable[[EpochResult], None] | None = None,
        desc: str = "",
        first_epoch: int | None = None,
        final_lr: bool = False,
    ) -> list[EpochResult]:
        """Train epochs ``start_epoch .. end_epoch-1`` of the schedule.

        ``first_epoch`` (default ``start_epoch``) is where the phase began: epochs are
        numbered from it in the bar and in messages. ``final_lr``: at the schedule's last
        learning rate throughout (fine-tuning).
        """
        origin = start_epoch if first_epoch is None else first_epoch
        step = self.device_step(optimizer, masker, start_epoch, final_lr) if self.captured else None
        scheduler = None if step else self.scheduler(optimizer, start_epoch, final_lr)
        results = []
        for epoch in range(start_epoch, end_epoch):
            number = f"epoch {epoch + 1 - origin} of {end_epoch - origin}"
            result = self.train_epoch(
                epoch, optimizer, scheduler, masker, f"{desc}{number}", device_step=step
            )
            results.append(result)
            if result.nonfinite_step >= 0:
                raise NonFiniteLossError(
                    f"non-finite training loss at {number}, step {result.nonfinite_step + 1} "
                    f"(lr {result.lr:g}); lower train.lr or check the data"
                )
            if on_epoch:
                on_epoch(result)
        return results
