"""What a zeroed neuron still emits: the BatchNorm constant.

Zeroing a neuron as the paper defines it (incoming weights and bias set to 0)
makes the layer's output channel 0, but a BatchNorm in eval mode right after it
maps 0 to ``beta - gamma * mu / sqrt(var + eps)`` at every pixel: the neuron is
not silenced, it is replaced by a constant. This module computes that constant
per channel from the BatchNorm parameters (:func:`bn_constants`) and, as its
naive twin, by running the network with the neuron's weights zeroed
(:func:`bn_constants_naive`); tests compare the two.
"""

from __future__ import annotations

import torch
from torch import nn

from prunescope.analysis.ablation import ablation_nodes
from prunescope.graph import trace


def following_batchnorm(
    model: nn.Module, layers: list[str], example: torch.Tensor | None = None
) -> dict[str, str]:
    """Layer -> the BatchNorm module its output goes to directly (layers without one left
    out). From the traced graph; a model torch.fx cannot trace is run once on ``example``
    and a BatchNorm whose input *is* a layer's output follows it (none without an example)."""
    try:
        gm = trace(model)
    except Exception:
        return {} if example is None else _following_by_hooks(model, layers, example)
    modules = dict(gm.named_modules())
    out = {}
    for layer, node in ablation_nodes(gm, layers, "output").items():
        is_bn = node.op == "call_module" and isinstance(
            modules[node.target], nn.modules.batchnorm._BatchNorm
        )
        if is_bn and node.target != layer:
            out[layer] = node.target
    return out


@torch.no_grad()
def _following_by_hooks(
    model: nn.Module, layers: list[str], example: torch.Tensor
) -> dict[str, str]:
    modules = dict(model.named_modules())
    outputs: list[tuple[str, torch.Tensor]] = []
    found: dict[str, str] = {}

    def record(name: str):
        return lambda _m, _i, o: outputs.append((name, o))

    def match(name: str):
        def hook(_m, inputs):
            for layer, out in outputs:
                if inputs and inputs[0] is out:
                    found.setdefault(layer, name)

        return hook

    handles = [modules[n].register_forward_hook(record(n)) for n in layers]
    handles += [
        m.register_forward_pre_hook(match(n))
        for n, m in modules.items()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    return found


def bn_constant(bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """BatchNorm (eval mode) of an all-zero input channel: beta - gamma*mu/sqrt(var+eps)."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    return (beta - gamma * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).detach()


def bn_constants(
    model: nn.Module, layers: list[str], example: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per prunable layer followed by a BatchNorm: the constant each zeroed neuron emits."""
    modules = dict(model.named_modules())
    return {
        layer: bn_constant(modules[bn]).cpu()
        for layer, bn in following_batchnorm(model, layers, example).items()
    }


@torch.no_grad()
def bn_constants_naive(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The definition: zero every neuron of ``layer`` (weights and bias), run the network,
    and read what the following BatchNorm emits per channel (the same at every pixel)."""
    model.eval()
    modules = dict(model.named_modules())
    bn = modules[following_batchnorm(model, [layer])[layer]]
    conv = modules[layer]
    saved = conv.weight.clone(), None if conv.bias is None else conv.bias.clone()
    seen: dict[str, torch.Tensor] = {}
    handle = bn.register_forward_hook(lambda _m, _i, o: seen.__setitem__("out", o.detach()))
    try:
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()
        model(x)
    finally:
        handle.remove()
        conv.weight.copy_(saved[0])
        if saved[1] is not None:
            conv.bias.copy_(saved[1])
    out = seen["out"]
    return out.transpose(0, 1).reshape(out.shape[1], -1)  # [channels, batch·pixels]
