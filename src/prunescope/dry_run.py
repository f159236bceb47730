"""``prunescope run --dry-run``: everything a run checks before it starts, and what it would
do, with a training time estimated from a few timed steps on this machine; nothing is
written (no run directory, no lock, no cache of compiled code).
"""

from __future__ import annotations

import time

import torch

from prunescope.config import Config
from prunescope.models.registry import count_parameters
from prunescope.pruning.masks import prunable_weight_keys
from prunescope.wording import format_seconds, plural

TIMED_STEPS = 3  # after one untimed step (allocations, autotuning)


def sparsity_sequence(rate: float, levels: int) -> list[float]:
    """Network sparsity after each level: 1 − (1 − rate)^k, up to rounding."""
    return [1 - (1 - rate) ** k for k in range(levels + 1)]


def seconds_per_step(cfg: Config, data, device: torch.device) -> tuple[float, int]:
    """(seconds per training step, steps per epoch), from a few real steps of the run's
    trainer on a throwaway model."""
    from prunescope.models.build import new_model
    from prunescope.training.trainer import Trainer

    train = cfg.train.model_copy(update={"compile": False})  # compiling would dominate
    cfg = cfg.model_copy(update={"train": train})
    trainer = Trainer(new_model(cfg, data.model_inputs()), cfg, data, device, total_epochs=1)
    optimizer = trainer.new_optimizer()
    batches = iter(trainer.train_loader.epoch(0))
    times = []
    for _ in range(TIMED_STEPS + 1):
        x, y = next(batches, (None, None))
        if x is None:
            break
        start = time.perf_counter()
        trainer._forward_backward(trainer.model, x, y)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    timed = times[1:] or times
    return sum(timed) / len(timed), trainer.steps_per_epoch


def describe(cfg: Config, data, model: torch.nn.Module, device: torch.device) -> str:
    """What the run would do: model, data, levels and their sparsities, epochs, time."""
    keys = prunable_weight_keys(model, cfg.imp.exclude)
    params = dict(model.named_parameters(remove_duplicate=False))
    prunable = sum(params[k].numel() for k in keys)
    step, per_epoch = seconds_per_step(cfg, data, device)
    epochs = cfg.imp.pretrain_epochs + (cfg.imp.levels + 1) * cfg.imp.train_epochs
    levels = sparsity_sequence(cfg.imp.rate, cfg.imp.levels)
    shown = ", ".join(f"{100 * s:.1f}%" for s in levels[:4]) + (
        f", ..., {100 * levels[-1]:.1f}%" if len(levels) > 4 else ""
    )
    return "\n".join(
        [
            f"model {cfg.model.name}: {count_parameters(model):,} parameters, {prunable:,} "
            f"prunable in {plural(len(keys), 'layer')} (dense: {', '.join(cfg.imp.exclude or []) or 'none'})",
            f"data {cfg.data.name}: {data.examples('train'):,} training and "
            f"{data.examples('test'):,} test examples, {per_epoch} steps per epoch",
            f"IMP: {cfg.imp.levels + 1} levels (0-{cfg.imp.levels}), {cfg.imp.method} pruning of "
            f"{cfg.imp.rate:g} a level, network sparsity {shown}",
            f"training: {cfg.imp.pretrain_epochs} pretraining + {cfg.imp.levels + 1} x "
            f"{cfg.imp.train_epochs} level epochs = {epochs} epochs on {device}",
            f"estimate: {format_seconds(step * per_epoch * epochs)} of training at "
            f"{1e3 * step:.1f} ms a step (timed here), then the analyses",
            "checked: the config, the data, the device and a forward pass of the model; "
            "nothing was written",
        ]
    )


def plan(run_dir, request) -> str:
    """The dry run of ``prunescope run``: a new run (nothing created) or the resume of an
    existing one (read, never locked or changed)."""
    from pathlib import Path

    from prunescope.api import model_for
    from prunescope.errors import RunDirError
    from prunescope.rundir.layout import RunDir
    from prunescope.rundir.session import levels_summary, open_run_dir
    from prunescope.runner import check_runnable
    from prunescope.training.device import resolve_device

    if RunDir(run_dir).exists():
        rd, stored = open_run_dir(run_dir)
        cfg = request.build(stored) if request is not None else stored
        header = f"would resume {Path(run_dir)}: {levels_summary(rd, cfg.imp.levels)}"
    elif request is None:
        raise RunDirError(
            f"{run_dir} is not a run directory yet; say what to run with --preset, --config "
            f"or --set"
        )
    else:
        cfg = request.build()
        header = f"would start a new run directory {Path(run_dir)} (not created)"
    data = check_runnable(cfg)
    device = resolve_device(cfg.device)
    return header + "\n" + describe(cfg, data, model_for(cfg), device)
