"""Batched, exact neuron ablation on a traced model (the engine behind neuron zeroing).

Zeroing neuron ``i`` of a layer (its incoming weights and bias, Alg. 2) makes
output channel ``i`` of that layer exactly 0 and leaves every other channel as
it was. So instead of re-running the whole network once per neuron, the engine

1. runs the unablated network once per batch and keeps every intermediate value
   (the prefix up to any layer is shared by all of its ablations);
2. replays only the nodes downstream of the ablated layer, for K neurons at
   once, on a batch of K×B images;
3. while the change is still confined to one channel (through BatchNorm, ReLU,
   pooling, residual additions, flattening), carries only that channel ("a
   delta": K slices of shape [B, ...]) and, at the next convolution or linear
   layer, adds the effect of the changed input channel as a rank-one update
   (a 1-input-channel convolution) instead of recomputing the layer.

The naive loop stays in :mod:`prunescope.analysis.zeroing` as the definition;
tests compare the two neuron by neuron.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from prunescope.graph import trace

_RELU_FUNCTIONS = (F.relu, torch.relu)
_ADD_FUNCTIONS = (operator.add, torch.add, operator.iadd)


@dataclass
class Delta:
    """An ablated value that differs from the base value only at one channel per ablation.

    ``slices[k]`` (shape ``[B, *rest]``) replaces channel ``idx[k]`` (dimension 1)
    of the base value for ablation ``k``.
    """

    idx: torch.Tensor
    slices: torch.Tensor


def repeat_rows(base: torch.Tensor, k: int) -> torch.Tensor:
    """``base`` ([B, ...]) stacked K times along the batch, in the same memory format."""
    fmt = (
        torch.channels_last
        if base.dim() == 4
        and not base.is_contiguous()
        and base.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )
    out = torch.empty(
        (k * base.shape[0], *base.shape[1:]),
        dtype=base.dtype,
        device=base.device,
        memory_format=fmt,
    )
    out.view(k, *base.shape).copy_(base.unsqueeze(0).expand(k, *base.shape))
    return out


def ablation_nodes(gm: fx.GraphModule, layers: list[str], mode: str) -> dict[str, fx.Node]:
    """Node whose output channel is zeroed, per layer.

    ``weights`` (the paper's): the layer's own output, which is what zeroing its
    incoming weights and bias produces. ``output``: the output of the
    normalisation layer that directly follows, where there is one, so that the
    neuron contributes nothing downstream.
    """
    by_target = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    modules = dict(gm.named_modules())
    out = {}
    for layer in layers:
        node = by_target.get(layer)
        if node is None:
            raise ValueError(f"layer {layer!r} is not called in the traced model")
        if mode == "output":
            users = list(node.users)
            if (
                len(users) == 1
                and users[0].op == "call_module"
                and isinstance(modules[users[0].target], nn.BatchNorm1d | nn.BatchNorm2d)
            ):
                node = users[0]
        elif mode != "weights":
            raise ValueError(f"unknown zeroing mode {mode!r}")
        out[layer] = node
    return out


_INPLACE_FUNCTIONS = {
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    operator.ifloordiv,
    operator.imod,
    operator.ipow,
    operator.iand,
    operator.ior,
    operator.ixor,
}


_OUT_OF_PLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}
_METHODS_WITH_OUT_OF_PLACE = {
    "relu_",
    "add_",
    "sub_",
    "mul_",
    "div_",
    "clamp_",
    "clamp_min_",
    "sigmoid_",
    "tanh_",
}
# values that may share memory with their input: mutating one in place mutates the other
_VIEW_METHODS = {
    "view",
    "reshape",
    "flatten",
    "transpose",
    "permute",
    "select",
    "narrow",
    "expand",
    "squeeze",
    "unsqueeze",
    "chunk",
    "split",
    "unbind",
    "t",
    "view_as",
    "as_strided",
}


def _is_inplace(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    if node.op == "call_function":
        return node.target in _OUT_OF_PLACE or node.kwargs.get("inplace") is True
    return (
        node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("__")
    )


def _safe_out_of_place(node: fx.Node, order: dict[fx.Node, int]) -> bool:
    """Running ``node`` out of place gives the same values when nothing reads its input
    afterwards and that input is no view of another value (``x = relu(x)``)."""
    src = node.args[0] if node.args else None
    if not isinstance(src, fx.Node):
        return False
    if src.op == "call_method" and src.target in _VIEW_METHODS:
        return False
    if src.op == "call_function" and src.target in (operator.getitem, torch.flatten, torch.reshape):
        return False
    return not any(order[u] > order[node] for u in src.users if u is not node)


def defuse_inplace(gm: fx.GraphModule, modules: dict[str, nn.Module]) -> None:
    """Run in-place operations out of place where that is exact (:func:`_safe_out_of_place`).
    The engine keeps every value of the unablated pass and replays from them, so an
    in-place ReLU would overwrite a kept value; measured before this: a model with
    ``nn.ReLU(inplace=True)`` sent every layer to the naive loop."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    inplace = [n for n in gm.graph.nodes if _is_inplace(n, modules)]
    by_module: dict[str, list[fx.Node]] = {}
    for node in inplace:
        if node.op == "call_module":
            by_module.setdefault(node.target, []).append(node)
        elif _safe_out_of_place(node, order):
            if node.op == "call_method":
                if node.target not in _METHODS_WITH_OUT_OF_PLACE:
                    continue
                node.target = node.target[:-1]
            elif node.target in _OUT_OF_PLACE:
                node.target = _OUT_OF_PLACE[node.target]
            else:
                node.kwargs = {**node.kwargs, "inplace": False}
    for target, nodes in by_module.items():  # one module may be called at several places
        if all(_safe_out_of_place(n, order) for n in nodes):
            modules[target].inplace = False
    gm.recompile()


def graph_problem(gm: fx.GraphModule, modules: dict[str, nn.Module]) -> str | None:
    """Why the engine cannot replay this graph exactly, or None.

    It keeps every intermediate value of the unablated pass and replays the rest
    on K×B rows, so it needs out-of-place operations and no operation that mixes
    samples of a batch (BatchNorm without running statistics does).
    """
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = modules[node.target]
            if getattr(m, "inplace", False):
                return f"in-place module {node.target}"
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and (
                m.training or m.running_mean is None
            ):
                return f"{node.target} normalises with batch statistics"
        elif (
            node.op == "call_method"
            and node.target.endswith("_")
            and not node.target.startswith("__")
        ):
            return f"in-place method {node.target}"
        elif node.op == "call_function" and node.target in _INPLACE_FUNCTIONS:
            return f"in-place operation {node.name}"
        if node.kwargs.get("inplace") is True:
            return f"in-place call {node.name}"
    return None


def descendants(gm: fx.GraphModule, start: fx.Node) -> list[fx.Node]:
    """Nodes that depend on ``start``, in topological (graph) order, ``start`` excluded."""
    affected = {start}
    out = []
    for node in gm.graph.nodes:
        if node is start:
            continue
        if node.op != "output" and any(inp in affected for inp in node.all_input_nodes):
            affected.add(node)
            out.append(node)
    return out


class AblationEngine:
    """Per-neuron ablation results (correct predictions and summed loss) for a model.

    ``model`` must be in eval mode and symbolically traceable.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: list[str],
        mode: str = "weights",
        memory_budget: int = 512 * 2**20,
        max_ablations: int = 64,
    ):
        """``model`` must be traceable by torch.fx and take independent samples (no
        operation mixes the rows of a batch); :func:`~prunescope.analysis.zeroing.zeroing_fast`
        checks both and otherwise uses the naive loop."""
        self.gm = trace(model)
        self.gm.eval()
        self.modules = dict(self.gm.named_modules())
        defuse_inplace(self.gm, self.modules)  # on the caller's copy of the model
        self.problem = graph_problem(self.gm, self.modules)
        calls: dict[str, int] = {}
        for n in self.gm.graph.nodes:
            if n.op == "call_module":
                calls[n.target] = calls.get(n.target, 0) + 1
        # Layers the engine cannot replay exactly; the caller zeroes them the naive way.
        self.unsupported: dict[str, str] = {
            layer: f"module called {calls.get(layer, 0)} times"
            for layer in layers
            if calls.get(layer, 0) != 1
        }
        if self.problem:
            self.unsupported = {layer: self.problem for layer in layers}
        supported = [layer for layer in layers if layer not in self.unsupported]
        self.nodes = ablation_nodes(self.gm, supported, mode)
        self.downstream = {layer: descendants(self.gm, n) for layer, n in self.nodes.items()}
        placeholder = next(n for n in self.gm.graph.nodes if n.op == "placeholder")
        # values that carry the batch dimension: only these are repeated for K ablations
        self.batched = {placeholder, *descendants(self.gm, placeholder)}
        self.memory_budget = memory_budget
        self.max_ablations = max_ablations
        self.layers = supported
        self.dense_start: set[str] = set()  # see check_shapes

    def check_shapes(self, env: dict, x: torch.Tensor) -> None:
        """After one base pass: how each layer's ablation starts.

        A convolution's neuron is channel 1 of its output, a Linear's the last dimension.
        A [B, C, ...] convolution output or a [B, F] Linear output starts as a one-channel
        :class:`Delta`; any other output with neurons last ([B, tokens, F]) starts dense,
        as K*B rows with the neuron zeroed, and the rest of the network is replayed on them.
        """
        self.batched = self.batch_carrying(x)
        for layer in list(self.layers):
            module = self.modules[layer]
            node = self.nodes[layer]
            out = env[node]
            if not isinstance(out, torch.Tensor) or out.dim() < 2:
                self.give_up(layer, f"output of shape {tuple(getattr(out, 'shape', ()))}")
            elif isinstance(module, nn.modules.conv._ConvNd):
                if out.dim() != module.weight.dim():
                    self.give_up(layer, f"output of shape {tuple(out.shape)}")
            elif out.dim() > 2 or not isinstance(module, nn.Linear):
                if node.target != layer:  # a normalisation after it: its channels differ
                    self.give_up(layer, f"output mode after {node.target}")
                else:
                    self.dense_start.add(layer)

    def batch_carrying(self, x: torch.Tensor) -> set[fx.Node]:
        """Values whose first dimension is the batch: those that follow the input's batch
        size (1 and 2 samples), so a constant that merely depends on the input (a causal
        mask sized by the sequence length) is not repeated for the K ablations."""
        placeholder = next(n for n in self.gm.graph.nodes if n.op == "placeholder")
        below = {placeholder, *descendants(self.gm, placeholder)}
        if len(x) < 2:
            return below
        one, two = self.base_pass(x[:1]), self.base_pass(x[:2])
        return {
            n
            for n in below
            if isinstance(one.get(n), torch.Tensor)
            and isinstance(two.get(n), torch.Tensor)
            and one[n].dim()
            and (one[n].shape[0], two[n].shape[0]) == (1, 2)
        }

    def give_up(self, layer: str, reason: str) -> None:
        """Leave ``layer`` to the naive loop."""
        self.unsupported[layer] = reason
        if layer in self.layers:
            self.layers.remove(layer)
            del self.nodes[layer], self.downstream[layer]

    # -- the unablated pass ------------------------------------------------------------------
    @torch.no_grad()
    def base_pass(self, x: torch.Tensor) -> dict[fx.Node, object]:
        env: dict[fx.Node, object] = {}
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                env[node] = x
            elif node.op == "output":
                env[node] = fx.node.map_arg(node.args[0], lambda n: env[n])
            else:
                env[node] = self._run_plain(node, env)
        return env

    def _run_plain(self, node: fx.Node, env: dict) -> object:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            obj = self.gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return obj
        raise NotImplementedError(node.op)

    # -- ablations ---------------------------------------------------------------------------
    def chunk_size(self, layer: str, env: dict, batch: int) -> int:
        """How many neurons to ablate together within the memory budget."""
        per_ablation = 0
        for node in [self.nodes[layer], *self.downstream[layer]]:
            value = env.get(node)
            if isinstance(value, torch.Tensor):
                per_ablation = max(per_ablation, value.numel() * value.element_size())
        # a few values are alive at once (a residual branch and its sum)
        per_ablation *= 3
        return max(1, min(self.max_ablations, self.memory_budget // max(per_ablation, 1)))

    @torch.no_grad()
    def ablate(self, layer: str, channels: torch.Tensor, env: dict) -> torch.Tensor:
        """Logits ``[K, B, classes]`` with channel ``channels[k]`` of ``layer`` zeroed in ablation k."""
        start = self.nodes[layer]
        base = env[start]
        k = len(channels)
        idx = channels.to(base.device)
        if layer in self.dense_start:
            first: object = repeat_rows(base, k)
            first.view(k, -1, base.shape[-1])[torch.arange(k, device=base.device), :, idx] = 0
        else:
            first = Delta(
                idx,
                torch.zeros(
                    (k, base.shape[0], *base.shape[2:]), dtype=base.dtype, device=base.device
                ),
            )
        ablated: dict[fx.Node, object] = {start: first}
        for node in self.downstream[layer]:
            ablated[node] = self._run_ablated(node, env, ablated, k)
        output = next(n for n in reversed(self.gm.graph.nodes) if n.op == "output")
        value = ablated.get(output.args[0], env[output.args[0]])
        dense = self._dense(value, env[output.args[0]], k)
        return dense.view(k, -1, *dense.shape[1:])

    # Representations: an ablated value is a Delta or a dense tensor of K*B rows
    # (ablation-major); a value not downstream of the ablation is the base value.
    def _dense(self, value: object, base: torch.Tensor, k: int) -> torch.Tensor:
        if isinstance(value, Delta):
            full = repeat_rows(base, k)
            full.view(k, *base.shape)[torch.arange(k, device=base.device), :, value.idx] = (
                value.slices
            )
            return full
        if isinstance(value, torch.Tensor) and value is base:
            return repeat_rows(base, k)
        return value

    def _run_ablated(self, node: fx.Node, env: dict, ablated: dict, k: int) -> object:
        vals = {a: ablated.get(a, env[a]) for a in node.all_input_nodes}
        deltas = [a for a in node.all_input_nodes if isinstance(vals[a], Delta)]
        if deltas:
            fast = self._delta_rule(node, env, vals, deltas[0], ablated)
            if fast is not None:
                return fast
        # Dense fallback: ablated inputs as K*B rows, batch-sized base inputs repeated K times.
        dense_vals = {}
        for a in node.all_input_nodes:
            v = vals[a]
            if a in ablated:
                dense_vals[a] = self._dense(v, env[a], k)
            elif a in self.batched and isinstance(v, torch.Tensor) and v.dim():
                dense_vals[a] = self._dense(v, v, k)
            else:
                dense_vals[a] = v
        return self._run_plain(node, dense_vals)

    def _delta_rule(
        self, node: fx.Node, env: dict, vals: dict, first: fx.Node, ablated: dict
    ) -> object | None:
        """Propagate a one-channel change exactly, or return None to fall back to dense."""
        d: Delta = vals[first]
        if node.op == "call_module":
            module = self.modules[node.target]
            if len(node.args) != 1 or node.kwargs:
                return None
            if (
                isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)
                and not module.training
                and module.running_mean is not None
            ):
                x = d.slices.transpose(0, 1)
                y = F.batch_norm(
                    x,
                    module.running_mean[d.idx],
                    module.running_var[d.idx],
                    module.weight[d.idx] if module.weight is not None else None,
                    module.bias[d.idx] if module.bias is not None else None,
                    False,
                    0.0,
                    module.eps,
                )
                return Delta(d.idx, y.transpose(0, 1))
            if isinstance(module, nn.ReLU | nn.Identity) or (
                isinstance(module, nn.Dropout) and not module.training
            ):
                return Delta(d.idx, module(d.slices) if isinstance(module, nn.ReLU) else d.slices)
            if isinstance(module, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
                return Delta(d.idx, module(d.slices.transpose(0, 1)).transpose(0, 1))
            if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
                return self._conv_rank_one(module, env[node.args[0]], env[node], d)
            if isinstance(module, nn.Linear) and env[node.args[0]].dim() == 2:
                return self._linear_rank_one(module, env[node.args[0]], env[node], d)
            return None
        if node.op in ("call_function", "call_method"):
            target = node.target
            if target in _RELU_FUNCTIONS or target == "relu":
                if len(node.args) == 1 and not node.kwargs:
                    return Delta(d.idx, F.relu(d.slices))
                return None
            if target in _ADD_FUNCTIONS or target == "add":
                if len(node.args) != 2 or node.kwargs:
                    return None
                a, b = node.args
                if any(
                    isinstance(arg, fx.Node)
                    and arg in ablated
                    and not isinstance(ablated[arg], Delta)
                    for arg in (a, b)
                ):
                    return None  # a dense ablated operand: the sum is dense too
                va = vals.get(a, a) if isinstance(a, fx.Node) else a
                vb = vals.get(b, b) if isinstance(b, fx.Node) else b
                base_out = env[node]
                parts = []
                for arg, v in ((a, va), (b, vb)):
                    if isinstance(v, Delta):
                        if v.idx is not d.idx or env[arg].shape != base_out.shape:
                            return None  # a broadcast operand changes every channel
                        parts.append(v.slices)
                    elif isinstance(v, torch.Tensor):
                        if v.shape != base_out.shape:
                            return None
                        parts.append(v[:, d.idx].transpose(0, 1))
                    elif isinstance(v, int | float):
                        parts.append(v)
                    else:
                        return None
                return Delta(d.idx, parts[0] + parts[1])
            if target is torch.flatten or target == "flatten":
                args = list(node.args[1:]) + [v for v in node.kwargs.values()]
                start_dim = args[0] if args else 0
                x = env[node.args[0]]
                if start_dim == 1 and x.dim() > 2 and x[0, 0].numel() == 1:
                    return Delta(d.idx, d.slices.reshape(d.slices.shape[0], d.slices.shape[1]))
                return None
        return None

    @staticmethod
    def _conv_rank_one(
        conv: nn.Conv2d, base_in: torch.Tensor, base_out: torch.Tensor, d: Delta
    ) -> torch.Tensor:
        """Output of ``conv`` when input channel ``idx[k]`` changes to ``slices[k]``, as K*B dense rows."""
        k, b = d.slices.shape[:2]
        change = (d.slices - base_in[:, d.idx].transpose(0, 1)).transpose(0, 1)  # [B, K, H, W]
        cin_pg = conv.in_channels // conv.groups
        cout_pg = conv.out_channels // conv.groups
        group = d.idx // cin_pg
        within = d.idx % cin_pg
        out_ch = group.unsqueeze(1) * cout_pg + torch.arange(
            cout_pg, device=d.idx.device
        )  # [K, cout_pg]
        w = conv.weight[out_ch, within.unsqueeze(1)]  # [K, cout_pg, kh, kw]
        update = F.conv2d(
            change,
            w.reshape(k * cout_pg, 1, *w.shape[2:]),
            None,
            conv.stride,
            conv.padding,
            conv.dilation,
            groups=k,
        )  # [B, K*cout_pg, H', W']
        update = update.view(b, k, cout_pg, *update.shape[2:]).transpose(
            0, 1
        )  # [K, B, cout_pg, H', W']
        full = repeat_rows(base_out, k)
        view = full.view(k, *base_out.shape)  # [K, B, C, H', W']
        if conv.groups == 1:
            view += update
        else:
            rows = torch.arange(k, device=full.device).unsqueeze(1)
            view.transpose(1, 2)[rows, out_ch] += update.transpose(1, 2)
        return full

    @staticmethod
    def _linear_rank_one(
        lin: nn.Linear, base_in: torch.Tensor, base_out: torch.Tensor, d: Delta
    ) -> torch.Tensor:
        k, b = d.slices.shape[:2]
        change = d.slices - base_in[:, d.idx].transpose(0, 1)  # [K, B]
        w = lin.weight[:, d.idx].transpose(0, 1)  # [K, out]
        full = base_out.unsqueeze(0) + change.unsqueeze(2) * w.unsqueeze(1)
        return full.reshape(k * b, base_out.shape[1])
