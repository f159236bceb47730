"""Masks: which weights are prunable, how sparse a network is, and keeping pruned weights at 0.

A mask is a dict from a weight's state-dict key to a bool tensor of its shape
(True = alive). Only prunable weights (Conv2d/Linear weights outside
``imp.exclude``) have masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.models.registry import prunable_layers
from prunescope.models.ties import parameters_by_key

Masks = dict[str, torch.Tensor]


def prunable_weight_keys(model: nn.Module, exclude: Iterable[str]) -> list[str]:
    """State-dict keys of the prunable weights, in network order."""
    exclude = list(exclude)
    layers = prunable_layers(model)
    fused = {n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    unknown = [e for e in exclude if e not in layers and e not in fused]
    if unknown:
        raise UserInputError(
            f"imp.exclude names {unknown} that are not prunable modules of this model; "
            f"its layers are {', '.join(layers)}"
        )
    keys = [f"{name}.weight" for name in layers if name not in exclude]
    if not keys:
        raise UserInputError(
            f"imp.exclude names every prunable layer of this model ({len(layers)}): "
            f"nothing is left to prune"
        )
    return keys


def flat(tensors: Mapping[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    """The tensors of ``keys`` as one vector (on their device), in network order (the order
    every global ranking breaks ties in)."""
    return torch.cat([tensors[k].detach().reshape(-1) for k in keys])


def unflat(vector: torch.Tensor, like: Mapping[str, torch.Tensor], keys: list[str]) -> Masks:
    """:func:`flat`'s inverse: ``vector`` cut into tensors shaped as ``like``'s."""
    out, start = {}, 0
    for k in keys:
        size = like[k].numel()
        out[k] = vector[start : start + size].view(like[k].shape).clone()
        start += size
    return out


def dense_masks(model: nn.Module, keys: Iterable[str]) -> Masks:
    params = parameters_by_key(model)
    return {k: torch.ones_like(params[k], dtype=torch.bool, device="cpu") for k in keys}


def count_alive(masks: Mapping[str, torch.Tensor]) -> int:
    return int(sum(int(m.sum()) for m in masks.values()))


def count_total(masks: Mapping[str, torch.Tensor]) -> int:
    return int(sum(m.numel() for m in masks.values()))


def network_sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Pruned fraction of the prunable weights."""
    total = count_total(masks)
    return 1.0 - count_alive(masks) / total if total else 0.0


def parameter_sparsity(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> float:
    """Pruned fraction of all parameters (biases, normalisation and excluded layers included)."""
    total = sum(p.numel() for p in model.parameters())
    pruned = count_total(masks) - count_alive(masks)
    return pruned / total


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Set pruned weights to +0.0 (masked_fill, so no -0.0 sneaks in)."""
    params = parameters_by_key(model)
    for key, mask in masks.items():
        p = params[key]
        p.masked_fill_(~mask.to(p.device), 0.0)


def like(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``t``'s values on ``p``'s device, in ``p``'s dtype and memory layout (strides)."""
    return torch.empty_like(p).copy_(t)


def relayout_state(optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state (momentum, Adam moments) in the layout of its parameter: a state
    restored from a checkpoint is contiguous while a channels_last weight is not."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for name, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    state[name] = like(p, value) if value.dtype == p.dtype else value


class Masker:
    """Keeps pruned weights at exactly 0.0 during training.

    The gradient is masked before the optimizer step, so momentum and weight
    decay see zeros for pruned entries; the weight is masked after it as well.
    Both are single foreach calls over the tensors that have pruned entries.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]):
        params = parameters_by_key(model)
        sparse = [k for k, m in masks.items() if not bool(m.all())]
        self.params = [params[k] for k in sparse]
        # each mask in its weight's layout (channels_last convolutions included): torch's
        # foreach multiply takes one kernel for the whole list only when every pair of
        # tensors shares strides, and one kernel per tensor otherwise
        self.masks = [like(params[k], masks[k]) for k in sparse]

    def __bool__(self) -> bool:
        return bool(self.params)

    @torch.no_grad()
    def mask_grads(self) -> None:
        pairs = [
            (p.grad, m) for p, m in zip(self.params, self.masks, strict=True) if p.grad is not None
        ]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    @torch.no_grad()
    def mask_weights(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.masks)
