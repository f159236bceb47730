"""Learning-rate schedules as pure functions of the global step.

A schedule spans pretraining and level training; a level that starts at the
rewind point simply starts at that step, and a resumed level at its own.
"""

from __future__ import annotations

import bisect
import math

import torch

from prunescope.config.schema import TrainSection


def lr_factor(step: int, steps_per_epoch: int, total_epochs: int, cfg: TrainSection) -> float:
    """Multiplier of ``cfg.lr`` at global optimizer step ``step`` (0-based)."""
    epoch = step / steps_per_epoch
    if cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / total_epochs, 1.0)))
    elif cfg.schedule == "step":
        factor = cfg.gamma ** bisect.bisect_right(cfg.milestones, int(epoch))
    else:
        factor = 1.0
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    start_step: int,
    steps_per_epoch: int,
    total_epochs: int,
    cfg: TrainSection,
    hold_at: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler positioned at ``start_step`` of the whole schedule, or held at
    the factor of step ``hold_at`` (fine-tuning at the final learning rate)."""
    for group in optimizer.param_groups:
        # a restored optimizer carries the last step's lr; the schedule is always relative to cfg.lr
        group["initial_lr"] = cfg.lr
    if hold_at is not None:
        held = lr_factor(hold_at, steps_per_epoch, total_epochs, cfg)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: held)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda k: lr_factor(start_step + k, steps_per_epoch, total_epochs, cfg),
    )


def make_optimizer(
    model: torch.nn.Module, cfg: TrainSection, *, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD (the paper's) or AdamW (what transformers are trained with). A pruned weight
    stays 0 under both: its gradient is masked, so its momentum or Adam moments stay 0,
    and the mask is applied again after every step. ``fused``: torch's fused kernels, which
    read a learning rate held in a device tensor without a host sync (what a CUDA graph of
    the step needs; the foreach kernels read it with ``.item()``)."""
    extra = {"fused": True} if fused else {}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(),
            lr=cfg.lr,
            betas=(0.9, 0.999),
            weight_decay=cfg.weight_decay,
            **extra,
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        **extra,
    )
