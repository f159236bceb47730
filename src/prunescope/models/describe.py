"""What the report needs to know of a model, recorded in the manifest when the run starts,
so that drawing a run's figures never needs its model's code (a user model's code runs only
when vouched for: :mod:`prunescope.trust`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunescope.models.inventory import inventory
from prunescope.models.probe import output_layer
from prunescope.models.registry import stage_of_layer


def layer_kind(m: nn.Module) -> str | None:
    """A prunable layer's kind as the run-time findings group layers."""
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.Conv2d):
        k = f"{m.kernel_size[0]}x{m.kernel_size[1]}"
        if m.groups > 1:
            return "grouped conv"
        return f"{k} conv" if k in ("3x3", "1x1") else "other"
    return None


def describe(model: nn.Module) -> dict[str, Any]:
    """The manifest's ``layer_order``: stages and layers in network order, each layer's
    kind, and whether the network has BatchNorm."""
    kinds = {name: kind for name, m in model.named_modules() if (kind := layer_kind(m))}
    return {
        "stages": list(model.stages),
        "layers": list(stage_of_layer(model)),
        "layer_types": kinds,
        "batchnorm": any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()),
    }


def dense_record(model: nn.Module, exclude: list[str], example: torch.Tensor) -> dict[str, Any]:
    """What stays dense (:mod:`.inventory`); ``example`` is a batch the model runs on, to
    find the layer that produces its output."""
    was_training = model.training
    try:
        device = next(model.parameters()).device
        output = output_layer(model.eval(), example.to(device))
    finally:
        model.train(was_training)
    return inventory(model, list(exclude), output).record()
