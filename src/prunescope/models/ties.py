"""Tied and shared parameters: one tensor under several state-dict keys.

GPT-2's default config ties the token embedding to the output layer
(``lm_head.weight`` is ``transformer.wte.weight``), and any language model may write
``self.head.weight = self.emb.weight``. ``state_dict()`` lists the tensor under both keys,
``named_parameters()`` only under the first. safetensors refuses to save shared memory
("Some tensors share memory"), and a mask per key would prune the tensor twice.

So a tied tensor is saved once, under its first key (the model's own state-dict order),
and pruned once: one mask, under the key of the first prunable layer that holds it. On
reading, the model (built from code, never from the file) says which keys are aliases,
and they are filled in from the saved one.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def _identity(t: torch.Tensor) -> tuple:
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride())


def aliases(model: nn.Module) -> dict[str, str]:
    """State-dict key -> the first key holding the same tensor, for every repeated key."""
    first: dict[tuple, str] = {}
    out = {}
    for key, t in model.state_dict(keep_vars=True).items():
        ident = _identity(t)
        if ident in first:
            out[key] = first[ident]
        else:
            first[ident] = key
    return out


def deduplicated(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the keys that repeat a tensor already listed (saved once)."""
    seen: set[tuple] = set()
    out = {}
    for key, t in state.items():
        ident = _identity(t)
        if ident not in seen:
            seen.add(ident)
            out[key] = t
    return out


def expanded(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` with the model's alias keys filled in from the keys they repeat."""
    for alias, key in aliases(model).items():
        if alias not in state and key in state:
            state[alias] = state[key]
    return state


def cloned(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``state`` that keeps its ties (one copy per shared tensor)."""
    copies: dict[tuple, torch.Tensor] = {}
    out = {}
    for key, t in state.items():
        ident = _identity(t)
        if ident not in copies:
            copies[ident] = t.detach().to("cpu", copy=True)
        out[key] = copies[ident]
    return out


def parameters_by_key(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter under every key that names it (an alias included)."""
    return dict(model.named_parameters(remove_duplicate=False))
