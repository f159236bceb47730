"""Prunable layers and their neurons (docs/guide.md, "Bring your own model"): one adapter per kind of layer says where
its weight and bias are and which axis of the weight, and of the output, is the neuron.

A neuron is an output unit. ``nn.Linear`` and ``nn.Conv1d/2d/3d`` keep it on axis 0 of
the weight ([out, in, ...]); a Linear's output has it last, a convolution's on axis 1.
``transformers.pytorch_utils.Conv1D`` (the GPT-2 family's attention and MLP layers) stores
its weight as [in, out]: taking its rows as neurons would name input units (measured on
GPT-2: a "fully pruned neuron" that was an input, 63 of 64 inputs of ``attn.c_proj``
emptied by group pruning). Every analysis, pruning method, the export and the run-time
formats read neurons through :func:`adapter_for`, so a new kind of layer is one entry here
(or, for a user's type, ``imp.neuron_axes`` in the config).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunescope.errors import UserInputError


@dataclass(frozen=True)
class LayerAdapter:
    """How to read the neurons of one kind of layer."""

    name: str
    weight_axis: int = 0  # the axis of ``weight`` that indexes output neurons
    output_axis: int = -1  # the axis of the layer's output that does
    bias: str = "bias"  # the attribute holding one bias per neuron (may be None)

    def neurons(self, module: nn.Module) -> int:
        return int(module.weight.shape[self.weight_axis])

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (the weight, or its mask) as [neurons, fan-in]. For a 2-D tensor or one whose
        neuron axis is 0 this is a view, so writing into a row writes into ``t``."""
        moved = t.movedim(self.weight_axis, 0)
        return moved.reshape(moved.shape[0], -1)

    def fan_in(self, module: nn.Module) -> int:
        return int(module.weight.numel() // self.neurons(module))

    def neuron(self, t: torch.Tensor, i: int) -> torch.Tensor:
        """The incoming weights of neuron ``i`` (a view)."""
        return t.select(self.weight_axis, i)

    def bias_of(self, module: nn.Module) -> torch.Tensor | None:
        b = getattr(module, self.bias, None)
        return b if isinstance(b, torch.Tensor) else None

    def output(self, out: torch.Tensor, i: int) -> torch.Tensor:
        """Neuron ``i``'s values in the layer's output (a view)."""
        return out.select(self.output_axis, i)

    @torch.no_grad()
    def zero(self, module: nn.Module, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Alg. 2's ablation: neuron ``i``'s incoming weights and bias set to 0. Returns what
        :meth:`restore` puts back."""
        w, b = self.neuron(module.weight, i), self.bias_of(module)
        saved = (w.clone(), None if b is None else b[i].clone())
        w.zero_()
        if b is not None:
            b[i] = 0
        return saved

    @torch.no_grad()
    def restore(self, module: nn.Module, i: int, saved) -> None:
        self.neuron(module.weight, i).copy_(saved[0])
        if saved[1] is not None:
            self.bias_of(module)[i] = saved[1]


LINEAR = LayerAdapter("linear", weight_axis=0, output_axis=-1)
CONV = LayerAdapter("convolution", weight_axis=0, output_axis=1)
# GPT-2's Conv1D: weight [in, out] (nx, nf), output [..., nf]
IN_OUT = LayerAdapter("[in, out] linear (transformers Conv1D)", weight_axis=1, output_axis=-1)

# A user's own types from ``imp.neuron_axes``; kept per process, as the prunable types are.
_DECLARED: dict[type, LayerAdapter] = {}


def _is_hf_conv1d(module: nn.Module) -> bool:
    """``transformers.pytorch_utils.Conv1D``, recognised without importing transformers."""
    t = type(module)
    return any(
        c.__name__ == "Conv1D" and c.__module__.startswith("transformers.") for c in t.__mro__
    )


def declare(layer_type: type, *, weight_axis: int, output_axis: int) -> None:
    """``imp.neuron_axes``: where a user's type keeps its neurons."""
    _DECLARED[layer_type] = LayerAdapter(
        f"{layer_type.__name__} (declared)", weight_axis=weight_axis, output_axis=output_axis
    )


def adapter_for(module: nn.Module) -> LayerAdapter:
    """The adapter of a prunable layer: declared types first, then the built-in kinds; any
    other type with a weight is read as a Linear ([out, in], neurons last in the output)."""
    for t in type(module).__mro__:
        if t in _DECLARED:
            return _DECLARED[t]
    if isinstance(module, nn.modules.conv._ConvNd):
        return CONV
    if _is_hf_conv1d(module):
        return IN_OUT
    return LINEAR


def weight_axes(model: nn.Module, layers: list[str]) -> dict[str, int]:
    """``layer.weight`` key -> the axis of that weight that indexes its neurons."""
    modules = dict(model.named_modules())
    return {f"{layer}.weight": adapter_for(modules[layer]).weight_axis for layer in layers}


def neuron_major(tensors: dict[str, torch.Tensor], axes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Each tensor with its neuron axis first (the layout the pruning methods read rows of);
    a tensor already so (every Linear and convolution) is passed as it is."""
    return {
        k: t if axes.get(k, 0) == 0 else t.movedim(axes[k], 0).contiguous()
        for k, t in tensors.items()
    }


def stored_layout(
    tensors: dict[str, torch.Tensor], axes: dict[str, int]
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`neuron_major`."""
    return {
        k: t if axes.get(k, 0) == 0 else t.movedim(0, axes[k]).contiguous()
        for k, t in tensors.items()
    }


def check_prunable(name: str, module: nn.Module) -> None:
    """A layer named prunable must hold one weight tensor of at least 2 dimensions whose
    neuron axis the adapter can read (an LSTM keeps four gates in weight_ih_l0...)."""
    w = getattr(module, "weight", None)
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    if not isinstance(w, torch.Tensor):
        held = [n for n, _ in module.named_parameters(recurse=False)][:4]
        raise UserInputError(
            f"imp.prunable_types: {kind} ({name!r}) has no `weight` tensor"
            + (f" (it holds {', '.join(held)})" if held else "")
            + "; prunescope prunes layers with one weight whose rows are output units: "
            "remove it from imp.prunable_types to leave it dense"
        )
    a = adapter_for(module)
    if w.dim() < 2 or not -w.dim() <= a.weight_axis < w.dim():
        raise UserInputError(
            f"{kind} ({name!r}) has a weight of shape {tuple(w.shape)}: no axis "
            f"{a.weight_axis} of at least 2 dimensions to read neurons from"
        )


__all__ = [
    "CONV",
    "IN_OUT",
    "LINEAR",
    "LayerAdapter",
    "adapter_for",
    "check_prunable",
    "declare",
]
