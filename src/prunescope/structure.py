"""How a layer's output channels flow to the layers that read them.

Fan-out pruning and the structured export need the same fact about a network: for
each Conv2d/Linear layer, which later Conv2d/Linear layers read its output
channels one for one (through BatchNorm, element-wise activations, dropout,
pooling and flattening, which keep channels apart; not LayerNorm, which mixes them), or why they do not (a residual sum or a
concatenation mixes a channel with another branch's). It is read off the traced
graph (torch.fx) with the shapes of one forward pass, so it holds for any model
built from standard modules, not just the built-in ones.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from prunescope.graph import trace

# Modules that act on each channel separately (in eval mode): a channel stays a channel.
CHANNELWISE = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.Dropout,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ELU,
)
# Of those, the ones that map a value to a value (a constant channel to a constant)
ELEMENTWISE = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU)
_RELU = (F.relu, torch.relu)
_FLATTEN = (torch.flatten,)
_MIXING = {operator.add: "a sum", torch.add: "a sum", torch.cat: "a concatenation"}


@dataclass
class Consumer:
    """A layer that reads the producer's channels: channel c is its input features
    ``c * span .. (c + 1) * span - 1`` (span 1 for a convolution, H·W after flattening)."""

    layer: str
    span: int
    path: list[str] = field(default_factory=list)  # channel-wise modules in between, in order


@dataclass
class ChannelFlow:
    layer: str
    consumers: list[Consumer] = field(default_factory=list)
    blocked: str | None = None  # why its channels cannot be removed one by one

    @property
    def removable(self) -> bool:
        return self.blocked is None and bool(self.consumers)


def _describe(node: fx.Node) -> str:
    target = (
        node.target
        if isinstance(node.target, str)
        else getattr(node.target, "__name__", node.target)
    )
    return f"{node.op} {target}"


def channel_flows(
    model: nn.Module, layers: list[str], example: torch.Tensor
) -> dict[str, ChannelFlow]:
    """For each named Conv2d/Linear layer: the layers that read its channels, or why none may."""
    gm = trace(model)
    gm.eval()
    ShapeProp(gm).propagate(example)
    modules = dict(gm.named_modules())
    nodes = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    return {layer: _follow(nodes[layer], modules, layer) for layer in layers if layer in nodes}


def _follow(start: fx.Node, modules: dict[str, nn.Module], layer: str) -> ChannelFlow:
    flow = ChannelFlow(layer)
    stack: list[tuple[fx.Node, list[str], int]] = [(user, [], 1) for user in start.users]
    while stack:
        node, path, span = stack.pop()
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, nn.Conv2d | nn.Linear):
                flow.consumers.append(Consumer(node.target, span, path))
                continue
            if isinstance(m, CHANNELWISE):
                stack += [(u, [*path, node.target], span) for u in node.users]
                continue
            flow.blocked = f"its output goes through {type(m).__name__} {node.target}"
            return flow
        if node.op == "call_function" and node.target in _RELU:
            stack += [(u, [*path, "relu"], span) for u in node.users]
            continue
        if (node.op == "call_function" and node.target in _FLATTEN) or (
            node.op == "call_method" and node.target == "flatten"
        ):
            shape = node.args[0].meta["tensor_meta"].shape
            stack += [(u, path, span * int(torch.Size(shape[2:]).numel())) for u in node.users]
            continue
        why = _MIXING.get(node.target)
        flow.blocked = (
            f"it feeds {why} with another branch"
            if why
            else f"its output goes to {_describe(node)}"
        )
        return flow
    return flow
