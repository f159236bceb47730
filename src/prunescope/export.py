"""Structured export: a pruned level as a physically smaller dense network that computes
the same function (the paper's future work 1).

A neuron (output channel) whose incoming weights are all zero still emits something: its
bias, and after a BatchNorm the constant β + γ(b − μ)/√(σ²+ε), and after a ReLU the
positive part of that. It can leave the network exactly when every layer that reads it
(:mod:`prunescope.structure`) can take that constant in:

* a constant of 0 (e.g. a negative one through a ReLU): the reader's input channel goes;
* a Linear reader, or a convolution without zero padding: the constant is folded into the
  reader's bias (Σ of the weights it meets);
* a zero-padded convolution reading a nonzero constant sees it only inside the image, so
  its borders would differ: the channel is kept, as it is when the channel feeds a residual
  sum (another branch writes the same channel), a concatenation, or a grouped convolution
  (removing one channel would unbalance the groups).

Every kept empty channel is reported with its reason. The export writes
``model.safetensors`` (the smaller network's state), ``architecture.json`` (the widths it
was built from) and ``export.json`` (per layer: neurons removed and kept and why;
parameters and FLOPs before and after; the largest output difference against the masked
network on the run's test images).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunescope.errors import RunDirError, Unsupported
from prunescope.export_files import ARCHITECTURE, EXPORT, MODEL, write_export_folder
from prunescope.graph import require_graph
from prunescope.models.probe import samples_independent
from prunescope.structure import ELEMENTWISE, Consumer, channel_flows


@dataclass
class LayerPlan:
    layer: str
    neurons: int
    empty: list[int]
    removed: list[int] = field(default_factory=list)
    kept: dict[int, str] = field(default_factory=dict)  # empty channel -> why it stays


def empty_channels(module: nn.Module) -> list[int]:
    w = module.weight.detach()
    return torch.nonzero(~w.reshape(w.shape[0], -1).ne(0).any(1)).flatten().tolist()


def channel_value(module: nn.Module, c: int) -> float:
    """What an empty neuron emits: its bias (0 without one)."""
    return float(module.bias[c]) if getattr(module, "bias", None) is not None else 0.0


def through(path: list[str], modules: dict[str, nn.Module], c: int, value: float) -> float:
    """The constant after the channel-wise modules of ``path`` (eval mode)."""
    for name in path:
        m = modules.get(name)
        if name == "relu" or isinstance(m, nn.ReLU):
            value = max(value, 0.0)
        elif isinstance(m, ELEMENTWISE):
            value = float(m(torch.tensor([value], dtype=torch.float64))[0])
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            scale = (m.weight[c] if m.weight is not None else 1.0) / torch.sqrt(
                m.running_var[c] + m.eps
            )
            value = float(
                (value - m.running_mean[c]) * scale + (m.bias[c] if m.bias is not None else 0.0)
            )
        # dropout (eval), identity and pooling leave a constant channel as it is
    return value


def _zero_padded(conv: nn.Conv2d) -> bool:
    """True when the convolution pads with zeros (a constant channel then differs at borders)."""
    if conv.padding_mode != "zeros":
        return False  # reflect/replicate/circular padding of a constant is the constant
    if isinstance(conv.padding, str):
        return conv.padding == "same" and any(k > 1 for k in conv.kernel_size)
    return any(p != 0 for p in conv.padding)


def _reader_problem(reader: nn.Module, value: float) -> str | None:
    if isinstance(reader, nn.Conv2d):
        if reader.groups != 1:
            return "read by a grouped convolution"
        if value != 0.0 and _zero_padded(reader):
            return "a nonzero constant into a zero-padded convolution"
    return None


def check_exportable(model: nn.Module, layers: list[str]) -> None:
    """The export resizes Conv2d and Linear layers along the graph torch.fx traces; anything
    else is :class:`Unsupported` (one line; the export analysis is skipped, saying why)."""
    modules = dict(model.named_modules())
    other = [layer for layer in layers if not isinstance(modules[layer], nn.Conv2d | nn.Linear)]
    if other:
        raise Unsupported(
            f"the export resizes nn.Conv2d and nn.Linear layers; {other[0]} is a "
            f"{type(modules[other[0]]).__name__}"
            + (f" (and {len(other) - 1} more layers)" if len(other) > 1 else "")
        )
    require_graph(model, "the export")


@torch.no_grad()
def plan_export(model: nn.Module, layers: list[str], example: torch.Tensor) -> dict[str, LayerPlan]:
    """Which empty channels of each layer can go, and why the others stay."""
    modules = dict(model.named_modules())
    flows = channel_flows(model, layers, example)
    plans = {}
    for layer in layers:
        m = modules[layer]
        plan = LayerPlan(layer, m.weight.shape[0], empty_channels(m))
        flow = flows.get(layer)
        for c in plan.empty:
            why = _channel_problem(m, flow, modules, c)
            if why:
                plan.kept[c] = why
            else:
                plan.removed.append(c)
        if plan.removed and len(plan.removed) == plan.neurons:  # a layer of width 0 is no layer
            plan.kept[plan.removed.pop(0)] = "a layer keeps at least one channel"
        plans[layer] = plan
    return plans


def _channel_problem(m: nn.Module, flow, modules: dict[str, nn.Module], c: int) -> str | None:
    if flow is None:
        return "not traced"
    if flow.blocked:
        return flow.blocked
    if not flow.consumers:
        return "its output is the network's output"
    if getattr(m, "groups", 1) != 1:
        return "a grouped convolution"
    for consumer in flow.consumers:
        value = through(consumer.path, modules, c, channel_value(m, c))
        if why := _reader_problem(modules[consumer.layer], value):
            return why
    return None


# -- building the smaller network --------------------------------------------------------------


def _keep(n: int, removed: list[int]) -> torch.Tensor:
    gone = set(removed)
    return torch.tensor([i for i in range(n) if i not in gone], dtype=torch.long)


def _input_columns(consumer: Consumer, reader: nn.Module, removed: list[int]) -> torch.Tensor:
    n_in = reader.in_features if isinstance(reader, nn.Linear) else reader.in_channels
    gone = {c * consumer.span + j for c in removed for j in range(consumer.span)}
    return torch.tensor([i for i in range(n_in) if i not in gone], dtype=torch.long)


@torch.no_grad()
def build_smaller(
    model: nn.Module, plans: dict[str, LayerPlan], example: torch.Tensor
) -> nn.Module:
    """A copy of ``model`` with every removable channel gone and its constant folded."""
    small = copy.deepcopy(model).eval()
    modules = dict(small.named_modules())
    flows = channel_flows(small, list(plans), example)
    for layer, plan in plans.items():
        if not plan.removed:
            continue
        producer = modules[layer]
        for consumer in flows[layer].consumers:
            reader = modules[consumer.layer]
            _fold(
                reader,
                consumer,
                [
                    (c, through(consumer.path, modules, c, channel_value(producer, c)))
                    for c in plan.removed
                ],
            )
        keep = _keep(plan.neurons, plan.removed)
        _slice_out(producer, keep)
        done = set()
        for consumer in flows[layer].consumers:
            for name in consumer.path:
                if (
                    name in modules
                    and name not in done
                    and isinstance(modules[name], nn.modules.batchnorm._BatchNorm)
                ):
                    _slice_bn(modules[name], keep)
                    done.add(name)
            reader = modules[consumer.layer]
            if id(reader) not in done:
                _slice_in(reader, _input_columns(consumer, reader, plan.removed))
                done.add(id(reader))
    return small


def _fold(reader: nn.Module, consumer: Consumer, constants: list[tuple[int, float]]) -> None:
    """Add what the removed channels' constants contribute to the reader's bias."""
    extra = _folded(reader, consumer, constants)
    if reader.bias is None:
        if not _any_nonzero(extra):
            return  # nothing to fold: no bias where the reader had none
        # the new bias lives where the reader's weight does, in its dtype
        reader.bias = nn.Parameter(reader.weight.new_zeros(reader.weight.shape[0]))
    # an existing bias takes the sum as it is (adding zeros changes no output, and asks
    # nothing of the device)
    reader.bias += extra.to(reader.bias.dtype)


def _folded(reader: nn.Module, consumer: Consumer, constants: list[tuple[int, float]]):
    """Σ over the removed channels of constant × the reader's weights that meet it, in
    float64 on the reader's device (a CUDA reader must not meet a CPU sum)."""
    w = reader.weight
    extra = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    for c, value in constants:
        if value == 0.0:
            continue
        if isinstance(reader, nn.Linear):
            cols = w[:, c * consumer.span : (c + 1) * consumer.span]
            extra += value * cols.double().sum(1)
        else:
            extra += value * w[:, c].double().sum((1, 2))
    return extra


def _any_nonzero(t: torch.Tensor) -> bool:
    return bool(t.any())


def _slice_out(m: nn.Module, keep: torch.Tensor) -> None:
    m.weight = nn.Parameter(m.weight[keep].clone())
    if m.bias is not None:
        m.bias = nn.Parameter(m.bias[keep].clone())
    if isinstance(m, nn.Linear):
        m.out_features = len(keep)
    else:
        m.out_channels = len(keep)


def _slice_in(m: nn.Module, keep: torch.Tensor) -> None:
    m.weight = nn.Parameter(m.weight[:, keep].clone())
    if isinstance(m, nn.Linear):
        m.in_features = len(keep)
    else:
        m.in_channels = len(keep)


def _slice_bn(bn: nn.modules.batchnorm._BatchNorm, keep: torch.Tensor) -> None:
    for name in ("weight", "bias"):
        p = getattr(bn, name)
        if p is not None:
            setattr(bn, name, nn.Parameter(p[keep].clone()))
    bn.running_mean = bn.running_mean[keep].clone()
    bn.running_var = bn.running_var[keep].clone()
    bn.num_features = len(keep)


# -- architecture, size and cost ----------------------------------------------------------------


def architecture(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The widths a network is built from (every Conv2d, Linear and BatchNorm)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = {
                "type": "Conv2d",
                "in": m.in_channels,
                "out": m.out_channels,
                "bias": m.bias is not None,
            }
        elif isinstance(m, nn.Linear):
            out[name] = {
                "type": "Linear",
                "in": m.in_features,
                "out": m.out_features,
                "bias": m.bias is not None,
            }
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            out[name] = {"type": type(m).__name__, "features": m.num_features}
    return out


def resize(model: nn.Module, arch: dict[str, dict[str, Any]]) -> None:
    """Give ``model``'s modules the widths of ``arch`` (same kernels, strides, groups)."""
    modules = dict(model.named_modules())
    for name, spec in arch.items():
        m = modules.get(name)
        if m is None:
            raise RunDirError(f"{ARCHITECTURE} names {name!r}, which this model does not have")
        new = _resized(m, spec)
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, new)


def _resized(m: nn.Module, spec: dict[str, Any]) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(
            spec["in"],
            spec["out"],
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
            bias=spec["bias"],
            padding_mode=m.padding_mode,
        )
    if isinstance(m, nn.Linear):
        return nn.Linear(spec["in"], spec["out"], bias=spec["bias"])
    return type(m)(spec["features"], eps=m.eps, momentum=m.momentum, affine=m.affine)


def flops(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Multiply-adds × 2 of every Conv2d and Linear for the first example of ``example``
    (an image, a sequence, a graph's node; BatchNorm etc. and a graph's aggregation left
    out)."""
    out: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):

            def conv_hook(mod, _i, o, name=name):
                per = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
                out[name] = 2 * per * o[0].numel()

            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):

            def lin_hook(mod, _i, o, name=name):
                out[name] = 2 * mod.in_features * o[0].numel()

            hooks.append(m.register_forward_hook(lin_hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return out


def layer_params(model: nn.Module, layer: str, bn: str | None) -> int:
    modules = dict(model.named_modules())
    n = sum(p.numel() for p in modules[layer].parameters())
    return n + (sum(p.numel() for p in modules[bn].parameters()) if bn else 0)


@torch.no_grad()
def largest_difference(a: nn.Module, b: nn.Module, batches) -> tuple[float, float]:
    """(largest absolute, largest relative to the largest |output|) difference of outputs."""
    diff, scale = 0.0, 0.0
    for x, _ in batches:
        ya, yb = a(x).double(), b(x).double()
        diff = max(diff, float((ya - yb).abs().max()))
        scale = max(scale, float(ya.abs().max()))
    return diff, diff / scale if scale else 0.0


@dataclass
class ExportResult:
    small: nn.Module
    plans: dict[str, LayerPlan]
    bn_of: dict[str, str | None]  # layer -> the BatchNorm right after it
    params_before: dict[str, int]
    params_after: dict[str, int]
    flops_before: dict[str, int]
    flops_after: dict[str, int]
    max_abs_diff: float
    max_rel_diff: float

    def totals(self) -> dict[str, int]:
        return {
            "params_before": sum(self.params_before.values()),
            "params_after": sum(self.params_after.values()),
            "flops_before": sum(self.flops_before.values()),
            "flops_after": sum(self.flops_after.values()),
        }


def export_model(model: nn.Module, layers: list[str], batches) -> ExportResult:
    """The smaller network of a masked model, checked against it on ``batches`` (fp32)."""
    model = model.eval().float()
    check_exportable(model, layers)
    # a model whose samples are not independent (a graph's nodes) is traced on all of them
    whole = not samples_independent(model, batches[0][0])
    example = batches[0][0] if whole else batches[0][0][:2]
    plans = plan_export(model, layers, example)
    small = build_smaller(model, plans, example)
    from prunescope.analysis.bn_constant import (
        following_batchnorm,
    )  # (the analysis package imports this one)

    following = following_batchnorm(model, layers)
    bn_of = {layer: following.get(layer) for layer in layers}
    first = example if whole else example[:1]
    before, after = flops(model, first), flops(small, first)
    diff, rel = largest_difference(model, small, batches)
    return ExportResult(
        small,
        plans,
        bn_of,
        {lay: layer_params(model, lay, bn_of[lay]) for lay in layers},
        {lay: layer_params(small, lay, bn_of[lay]) for lay in layers},
        {lay: before[lay] for lay in layers},
        {lay: after[lay] for lay in layers},
        diff,
        rel,
    )


def reasons(plan: LayerPlan) -> dict[str, int]:
    return dict(Counter(plan.kept.values()))


def write_export(
    out: Path, small: nn.Module, plans: dict[str, LayerPlan], meta: dict[str, Any]
) -> None:
    """The three files of an export, as one folder written whole or not at all; ``out`` must
    be new or empty."""
    from prunescope.rundir.atomic import json_bytes, safetensors_payload

    write_export_folder(
        out,
        {
            MODEL: safetensors_payload(small.state_dict()),
            ARCHITECTURE: json_bytes({**meta["model"], "modules": architecture(small)}),
            EXPORT: json_bytes({k: v for k, v in meta.items() if k != "model"}),
        },
    )
