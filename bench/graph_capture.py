"""Graph capture beyond torch.fx: does torch.export or Torch-Pruning's DependencyGraph
give, for the models researchers bring, each prunable layer's call and the layers that
read its output channels?

prunescope's fast zeroing engine, its channel flow (``prunescope/structure.py``) and its
structured export read the model's graph from ``torch.fx.symbolic_trace``
(``prunescope/graph.py``), which fails on most Hugging Face and PyTorch Geometric models
and on data-dependent control flow. For each model of ``tests/byo_models.py``
(``CONFIGS``, then ``VARIANTS``' factories unless ``--no-variants``) and the built-in
``resnet20``, ``vgg16``, ``vit_tiny``, ``gpt_char``, ``gcn``, built small from a config
(nothing downloaded) and put in eval mode, on one example input:

1. ``fx``: ``torch.fx.symbolic_trace(model)``;
2. ``export strict`` / ``export non-strict``: ``torch.export.export(model, (x,),
   strict=...)``;
3. ``located``: of the ``n`` prunable layers (``nn.Linear``, ``nn.Conv1d/2d/3d``,
   ``transformers`` ``Conv1D``, PyG's ``torch_geometric.nn.dense.linear.Linear``), the
   ``k`` whose call is found in the exported graph: the nodes whose innermost
   ``nn_module_stack`` entry is the layer; ``w`` of those also read the layer's weight
   placeholder (``graph_signature.inputs_to_parameters``: a tied weight has one
   placeholder, named after one of its modules); "unflatten" counts the layers that are
   a ``call_module`` of their parent after ``torch.export.unflatten(ep)``. From each
   located call the flat graph is walked forward to the next prunable layers: the
   layers reached and the aten ops on the way are listed under "Per layer";
4. ``torch-pruning DG``: ``tp.DependencyGraph().build_dependency(model,
   example_inputs=(x,))`` (a bare tensor makes Torch-Pruning first try ``model(*x)``,
   i.e. the batch unpacked into positional arguments, under a bare ``except``);
5. ``groups``: for each prunable layer, whether ``DG.get_pruning_group(layer,
   tp.prune_conv_out_channels or tp.prune_linear_out_channels, idxs=[0])`` gives a
   group, and how many of those groups name at least one layer reading the channel
   (an in-channel dependency on another prunable layer: "readers"; out-channel
   dependencies are "coupled" producers, e.g. the other writers of a residual sum);
   the group of each layer's last channel is also asked for, and a reader whose index
   for it is past its own inputs counted ("out of range": the map lost a split);
6. ``DG + workarounds``: where the defaults fail or miss layers, the DG again after what
   it takes (:func:`tweak`): pruners for transformers' ``Conv1D`` and PyG's ``Linear``
   (which Torch-Pruning does not know; ``customized_pruners``), and
   ``config.use_cache=False`` in Hugging Face models (their KV cache stops both the DG
   and torch.export; the located count is then also given for a non-strict export
   without it);
7. ``prune ch 0``: each layer's group (with the workarounds where they apply) pruned on
   a fresh copy of the model (``group.prune()``), then one forward pass: how many still
   run, and after how many the model's tied weights are no longer one tensor;
8. ``maps agree``: where fx traces, the readers found by the export walk and by
   Torch-Pruning against ``prunescope.structure.channel_flows`` (for the layers whose
   channels it can remove); everywhere, the export walk's readers against
   Torch-Pruning's (``⊆``: the group may be larger, as it also holds what is coupled
   through residual sums).

Each cell is ok/FAIL, the wall seconds (one CPU thread), and the short error. A markdown
table is printed and, with ``--out``, written with the per-layer details (each layer's
readers by both methods, the aten ops between layers, Torch-Pruning's warnings).

    PYTHONPATH=src:tests python bench/graph_capture.py [MODEL ...] [--out graph.md]
        [--no-variants] [--no-prune] [--details] [--timeout 300]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import byo_models  # noqa: E402
from prunescope import build_model  # noqa: E402
from prunescope.data.graph import normalised_adjacency  # noqa: E402
from prunescope.models.registry import ModelInputs  # noqa: E402

BUILTINS = ("resnet20", "vgg16", "vit_tiny", "gpt_char", "gcn")
VOCAB, CONTEXT = 65, 32  # shakespeare_char, as byo_models' configs
NODES, FEATURES, GRAPH_CLASSES = 24, 16, 4  # a small random graph


# ------------------------------------------------------------------------------- models


def kind_of(config: str) -> str:
    if "shakespeare_char" in config:
        return "text"
    if '"sbm"' in config or "planetoid" in config:
        return "graph"
    return "image"


def random_graph(nodes: int = NODES, edges: int = 48, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, nodes, size=(2, edges))
    pairs = pairs[:, pairs[0] != pairs[1]]
    both = np.concatenate([pairs, pairs[::-1]], axis=1)  # undirected
    return normalised_adjacency(both, nodes)


def inputs_for(kind: str, builtin: bool) -> tuple[ModelInputs, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "text":
        return ModelInputs(VOCAB, 1, 0, context=CONTEXT), torch.randint(
            0, VOCAB, (2, CONTEXT), generator=g
        )
    if kind == "graph":
        graph = random_graph()
        x = torch.randn(NODES, FEATURES, generator=g)
        return ModelInputs(GRAPH_CLASSES, 1, 0, features=FEATURES, graph=graph), x
    # images: digits (1 x 8 x 8) for the models researchers bring, CIFAR for the built-ins
    channels, size = (3, 32) if builtin else (1, 8)
    return ModelInputs(10, channels, size), torch.randn(2, channels, size, size, generator=g)


BUILTIN_KIND = {"gpt_char": "text", "gcn": "graph"}


def model_names(variants: bool) -> list[str]:
    names = list(byo_models.CONFIGS)
    if variants:
        names += [n for n in byo_models.VARIANTS if hasattr(byo_models, n)]
    return names + list(BUILTINS)


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name in BUILTINS:
        inputs, x = inputs_for(BUILTIN_KIND.get(name, "image"), builtin=True)
        model = build_model(name, **{**inputs.recordable(), "graph": inputs.graph})
    else:
        config = byo_models.CONFIGS.get(name) or byo_models.VARIANTS[name]
        inputs, x = inputs_for(kind_of(config), builtin=False)
        factory = getattr(byo_models, name)
        model = factory(**inputs.arguments_for(factory))
    return model.eval(), x


def prunable_type_list() -> tuple[type, ...]:
    types: list[type] = [nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d]
    with contextlib.suppress(ImportError):
        from transformers.pytorch_utils import Conv1D

        types.append(Conv1D)
    with contextlib.suppress(ImportError):
        from torch_geometric.nn.dense.linear import Linear as PygLinear

        types.append(PygLinear)
    return tuple(types)


PRUNABLE = prunable_type_list()


def prunable(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}


# ------------------------------------------------------------------------------ helpers


class StepTimeout(BaseException):
    """Not an Exception: code under test that catches Exception (a per-layer loop, a
    retry) must not swallow it and run on without a limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def fire(signum, frame):
        raise StepTimeout(f"over {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def short(exc: BaseException, width: int = 110) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}"[:width].replace("|", "\\|")


@dataclass
class Result:
    ok: bool | None = None  # None: not tried
    seconds: float = 0.0
    error: str = ""
    value: object = None

    def cell(self, extra: str = "") -> str:
        if self.ok is None:
            return "–"
        head = f"ok {self.seconds:.1f} s" if self.ok else f"FAIL {self.seconds:.1f} s"
        tail = "" if self.ok else f": {self.error}"
        return f"{head}{extra}{tail}"


def attempt(fn: Callable[[], object], timeout: float | None) -> Result:
    """``fn()`` with warnings silenced and, unless ``timeout`` is None, a time limit."""
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if timeout is None:
                value = fn()
            else:
                with time_limit(timeout):
                    value = fn()
        return Result(True, time.perf_counter() - start, value=value)
    except (Exception, StepTimeout) as exc:  # whatever the model's code or tracer raises
        return Result(False, time.perf_counter() - start, short(exc))


def op_name(node: torch.fx.Node) -> str:
    target = node.target
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return packet.__name__
    return getattr(target, "__name__", str(target))


# ------------------------------------------------------------------------- torch.export


@dataclass
class Located:
    k: int
    n: int
    weight: int  # of the located calls, those reading the layer's weight placeholder
    unflattened: int | None = None  # call_module sites after torch.export.unflatten
    consumers: dict[str, set[str]] = field(default_factory=dict)  # layer -> layers reached
    ops: dict[str, set[str]] = field(default_factory=dict)  # layer -> aten ops on the way

    def cell(self) -> str:
        return f"{self.k}/{self.n}" + ("" if self.weight == self.k else f" (w {self.weight})")


def innermost(node: torch.fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    return list(stack.values())[-1][0]


def locate(ep: torch.export.ExportedProgram, layers: dict[str, nn.Module]) -> Located:
    graph = ep.graph
    owner = {n: innermost(n) for n in graph.nodes if n.op == "call_function"}
    calls: dict[str, list[torch.fx.Node]] = {}
    for node, fqn in owner.items():
        if fqn in layers:
            calls.setdefault(fqn, []).append(node)
    params = ep.graph_signature.inputs_to_parameters
    placeholder = {node.name: node for node in graph.nodes if node.op == "placeholder"}
    weight_of = {fqn.removesuffix(".weight"): placeholder.get(ph) for ph, fqn in params.items()}
    found = Located(len(calls), len(layers), 0)
    for layer, nodes in calls.items():
        members = set(nodes)
        w = weight_of.get(layer)
        if w is not None and any(u in members for u in w.users):
            found.weight += 1
        # walk forward from the call's outputs to the next prunable layers
        reached: set[str] = set()
        ops: set[str] = set()
        stack = [u for n in nodes for u in n.users if u not in members]
        seen: set[torch.fx.Node] = set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node.op == "output":
                reached.add("<output>")
                continue
            fqn = owner.get(node)
            if fqn in layers and fqn != layer:
                reached.add(fqn)
                continue
            ops.add(op_name(node))
            stack.extend(node.users)
        found.consumers[layer] = reached
        found.ops[layer] = ops
    with contextlib.suppress(Exception):  # unflatten's own failure: no count
        found.unflattened = unflattened_sites(ep, layers)
    return found


def unflattened_sites(ep: torch.export.ExportedProgram, layers: dict[str, nn.Module]) -> int:
    """How many layers are a ``call_module`` node of their parent's graph after
    ``torch.export.unflatten`` (the module hierarchy back, each module an
    ``InterpreterModule`` running its own aten graph)."""
    top = torch.export.unflatten(ep)
    modules = dict(top.named_modules())
    sites = 0
    for name in layers:
        parent, _, leaf = name.rpartition(".")
        graph = getattr(modules.get(parent) if parent else top, "graph", None)
        nodes = graph.nodes if graph is not None else ()
        sites += any(n.op == "call_module" and n.target == leaf for n in nodes)
    return sites


# ------------------------------------------------------------------------ torch-pruning


def custom_pruners() -> dict[type, object]:
    """Torch-Pruning pruners for the two layer types it does not know: transformers'
    ``Conv1D`` (weight ``[in, out]``, ``nf`` outputs) and PyG's ``Linear`` (weight
    ``[out, in]``, ``in_channels``/``out_channels``; no ``in_features``)."""
    import torch_pruning as tp

    class Conv1DPruner(tp.pruner.BasePruningFunc):
        TARGET_MODULES = None

        def prune_out_channels(self, layer, idxs):
            keep = sorted(set(range(layer.nf)) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
            if layer.bias is not None:
                layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
            layer.nf = len(keep)
            return layer

        def prune_in_channels(self, layer, idxs):
            keep = sorted(set(range(layer.weight.shape[0])) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
            if hasattr(layer, "nx"):
                layer.nx = len(keep)
            return layer

        def get_out_channels(self, layer):
            return layer.weight.shape[1]

        def get_in_channels(self, layer):
            return layer.weight.shape[0]

    class PygLinearPruner(tp.pruner.BasePruningFunc):
        TARGET_MODULES = None

        def prune_out_channels(self, layer, idxs):
            keep = sorted(set(range(layer.out_channels)) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
            if layer.bias is not None:
                layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
            layer.out_channels = len(keep)
            return layer

        def prune_in_channels(self, layer, idxs):
            keep = sorted(set(range(layer.in_channels)) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
            layer.in_channels = len(keep)
            return layer

        def get_out_channels(self, layer):
            return layer.out_channels

        def get_in_channels(self, layer):
            return layer.in_channels

    pruners: dict[type, object] = {}
    with contextlib.suppress(ImportError):
        from transformers.pytorch_utils import Conv1D

        pruners[Conv1D] = Conv1DPruner()
    with contextlib.suppress(ImportError):
        from torch_geometric.nn.dense.linear import Linear as PygLinear

        pruners[PygLinear] = PygLinearPruner()
    return pruners


def needs_custom(model: nn.Module) -> bool:
    unknown = tuple(custom_pruners())
    return any(isinstance(m, unknown) for m in model.modules())


def build_dg(model: nn.Module, x: torch.Tensor, custom: bool):
    import torch_pruning as tp

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dg = tp.DependencyGraph().build_dependency(
            model,
            example_inputs=(x,),
            customized_pruners=custom_pruners() if custom else None,
        )
    dg._bench_warnings = [str(w.message).splitlines()[0][:160] for w in caught]
    return dg


def out_fn(dg, layer: nn.Module):
    import torch_pruning as tp

    pruner = dg.get_pruner_of_module(layer)
    if pruner is not None and type(layer) in dg.CUSTOMIZED_PRUNERS:
        return pruner.prune_out_channels
    if isinstance(layer, nn.modules.conv._ConvNd):
        return tp.prune_conv_out_channels
    return tp.prune_linear_out_channels


@dataclass
class Groups:
    k: int = 0
    n: int = 0
    with_consumers: int = 0
    consumers: dict[str, set[str]] = field(default_factory=dict)  # layer -> in-channel readers
    coupled: dict[str, set[str]] = field(default_factory=dict)  # layer -> other producers
    others: dict[str, set[str]] = field(default_factory=dict)  # layer -> other targets
    errors: dict[str, str] = field(default_factory=dict)
    # layer -> readers whose index for the layer's last channel is past their inputs
    out_of_range: dict[str, list[str]] = field(default_factory=dict)

    def cell(self) -> str:
        text = f"{self.k}/{self.n} ({self.with_consumers} with readers"
        if self.out_of_range:
            text += f"; last channel mapped out of range for {len(self.out_of_range)}"
        return text + ")"


def groups_of(dg, layers: dict[str, nn.Module], timeout: float) -> Groups:
    """Each layer's channel-0 group, with ``timeout`` seconds for each."""
    names = {id(m): n for n, m in layers.items()}
    found = Groups(n=len(layers))
    for name, layer in layers.items():
        got = attempt(
            lambda layer=layer: dg.get_pruning_group(layer, out_fn(dg, layer), [0]), timeout
        )
        if not got.ok:  # not in the graph, the index mapping fails, or it runs on
            found.errors[name] = got.error[:90]
            continue
        group = got.value
        found.k += 1
        readers, coupled, others = set(), set(), set()
        for dep, _ in group:
            target = dep.target
            if target.module is layer:
                continue
            other = names.get(id(target.module))
            if other is None:
                label = target.name or f"{type(target.module).__name__}"
                others.add(label if len(label) < 60 else label[:57] + "...")
            elif dg.is_out_channel_pruning_fn(dep.handler):
                coupled.add(other)
            else:
                readers.add(other)
        found.consumers[name], found.coupled[name], found.others[name] = readers, coupled, others
        found.with_consumers += bool(readers)
        bad = last_channel_check(dg, layer, names, timeout)
        if bad:
            found.out_of_range[name] = bad
    return found


def last_channel_check(dg, layer: nn.Module, names: dict[int, str], timeout: float) -> list[str]:
    """The group of the layer's last output channel: the readers whose input index for
    it is not one of their inputs (a map that does not follow a split or a reshape)."""
    pruner = dg.get_pruner_of_module(layer)
    if pruner is None:
        return []
    last = pruner.get_out_channels(layer) - 1
    got = attempt(lambda: dg.get_pruning_group(layer, out_fn(dg, layer), [last]), timeout)
    if not got.ok:
        return []
    bad = []
    for dep, idxs in got.value:
        name = names.get(id(dep.target.module))
        if name is None or dep.target.module is layer or dg.is_out_channel_pruning_fn(dep.handler):
            continue
        width = dg.get_pruner_of_module(dep.target.module).get_in_channels(dep.target.module)
        wrong = [int(i) for i in idxs if not 0 <= int(i) < width]
        if wrong:
            bad.append(f"{name} in-channel {wrong[0]} of {width}")
    return bad


def prune_and_run(
    model: nn.Module,
    x: torch.Tensor,
    layers: dict[str, nn.Module],
    grouped: set[str],
    custom: bool,
    timeout: float,
) -> tuple[int, int, dict[str, str], list[str]]:
    """Each layer's channel-0 group pruned on a fresh copy, then one forward pass (the
    layers that had no group are skipped)."""
    ok, errors, untied = 0, {}, []
    ties = tied_pairs(model)
    for name in layers:
        if name not in grouped:
            errors[name] = "no group"
            continue

        def one(name=name):
            clone = copy.deepcopy(model)
            dg = build_dg(clone, x, custom)
            layer = clone.get_submodule(name)
            dg.get_pruning_group(layer, out_fn(dg, layer), idxs=[0]).prune()
            with torch.no_grad():
                clone(x)
            return [f"{a}~{b}" for a, b in ties if not same_param(clone, a, b)]

        r = attempt(one, timeout)
        if r.ok:
            ok += 1
            if r.value:
                untied.append(f"{name}: {', '.join(r.value)}")
        else:
            errors[name] = r.error
    return ok, len(layers), errors, untied


def tied_pairs(model: nn.Module) -> list[tuple[str, str]]:
    first: dict[int, str] = {}
    pairs = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            pairs.append((first[id(p)], name))
        else:
            first[id(p)] = name
    return pairs


def same_param(model: nn.Module, a: str, b: str) -> bool:
    return model.get_parameter(a) is model.get_parameter(b)


# ---------------------------------------------------------------------------------- fx


def fx_flows(model: nn.Module, layers: dict[str, nn.Module], x: torch.Tensor) -> dict:
    from prunescope.structure import channel_flows

    flows = channel_flows(model, list(layers), x)
    return {n: {c.layer for c in f.consumers} for n, f in flows.items() if f.removable}


# --------------------------------------------------------------------------------- run


@dataclass
class Row:
    model: str
    n: int
    fx: Result
    strict: Result
    nonstrict: Result
    located: dict[str, Located]
    dg: Result
    groups: Groups | None
    tweaks: list[str]
    tweak_dg: Result | None
    tweak_groups: Groups | None
    pruned: tuple[int, int, dict[str, str], list[str]] | None
    agreement: list[str]
    notes: list[str]


def tweak(model: nn.Module) -> list[str]:
    """What it takes Torch-Pruning past the defaults: pruners for the layer types it does
    not know, and no KV cache in Hugging Face models (``config.use_cache=False``: with it,
    the cache's ``torch.cat`` and the ``DynamicCache`` in the output stop the DG build)."""
    done = []
    if needs_custom(model):
        kinds = {
            type(m).__name__ for m in model.modules() if isinstance(m, tuple(custom_pruners()))
        }
        done.append(f"custom pruners ({', '.join(sorted(kinds))})")
    caches = [m for m in model.modules() if getattr(getattr(m, "config", None), "use_cache", False)]
    for m in caches:
        m.config.use_cache = False
    if caches:
        done.append("use_cache=False")
    return done


def evaluate(name: str, timeout: float, group_timeout: float, prune: bool) -> Row:
    model, x = build(name)
    layers = prunable(model)
    notes: list[str] = []
    fx = attempt(lambda: torch.fx.symbolic_trace(model), timeout)
    torch._dynamo.reset()
    strict = attempt(lambda: torch.export.export(model, (x,), strict=True), timeout)
    torch._dynamo.reset()
    nonstrict = attempt(lambda: torch.export.export(model, (x,), strict=False), timeout)
    located: dict[str, Located] = {}
    for label, r in (("strict", strict), ("non-strict", nonstrict)):
        if r.ok:
            loc = attempt(lambda r=r: locate(r.value, layers), timeout)
            if loc.ok:
                located[label] = loc.value
            else:
                notes.append(f"locating in the {label} export failed: {loc.error}")
    flows = None
    if fx.ok:
        f = attempt(lambda: fx_flows(model, layers, x), timeout)
        flows = f.value if f.ok else None
        if not f.ok:
            notes.append(f"fx channel_flows failed: {f.error}")
    model.eval()
    dg = attempt(lambda: build_dg(model, x, custom=False), timeout)
    groups = None
    if dg.ok:
        g = attempt(lambda: groups_of(dg.value, layers, group_timeout), None)
        groups = g.value if g.ok else None
        dg.seconds += g.seconds
        if not g.ok:
            notes.append(f"groups failed: {g.error}")
        notes += [f"tp warning: {w}" for w in dict.fromkeys(dg.value._bench_warnings)]
    tweaks = tweak(model)
    custom = needs_custom(model)
    tweak_dg = tweak_groups = None
    if tweaks:
        notes.append(f"workarounds: {'; '.join(tweaks)}")
        model.eval()
        tweak_dg = attempt(lambda: build_dg(model, x, custom=custom), timeout)
        if tweak_dg.ok:
            g = attempt(lambda: groups_of(tweak_dg.value, layers, group_timeout), None)
            tweak_groups = g.value if g.ok else None
            tweak_dg.seconds += g.seconds
            if not g.ok:
                notes.append(f"groups (workarounds) failed: {g.error}")
    if tweaks and not located and "use_cache=False" in tweaks:
        torch._dynamo.reset()
        again = attempt(lambda: torch.export.export(model, (x,), strict=False), timeout)
        if again.ok:
            loc = attempt(lambda: locate(again.value, layers), timeout)
            if loc.ok:
                located["use_cache=False"] = loc.value
        else:
            notes.append(f"non-strict export with use_cache=False: {again.error}")
    pruned = None
    final = tweak_groups if tweaks else groups
    if prune and final is not None:
        pruned = prune_and_run(model, x, layers, set(final.consumers), custom, 3 * group_timeout)
    agreement = compare(flows if fx.ok else None, located, tweak_groups or groups)
    return Row(
        name, len(layers), fx, strict, nonstrict, located, dg, groups, tweaks, tweak_dg,
        tweak_groups, pruned, agreement, notes,
    )  # fmt: skip


def compare(flows, located: dict[str, Located], groups: Groups | None) -> list[str]:
    """How the maps agree: with fx's channel_flows (its removable layers), and the export
    walk's forward readers with Torch-Pruning's group (which also holds the layers coupled
    through residual sums, so it may be larger)."""
    out = []
    if flows is not None:
        if not flows:
            out.append("fx: no removable flow")
        for label, loc in located.items():
            same = sum(loc.consumers.get(n, set()) - {"<output>"} == c for n, c in flows.items())
            if flows:
                out.append(f"fx = export ({label}) {same}/{len(flows)}")
        if groups is not None and flows:
            same = sum(groups.consumers.get(n) == c for n, c in flows.items())
            out.append(f"fx = tp {same}/{len(flows)}")
    loc = next(iter(located.values()), None)
    if loc is not None and groups is not None:
        both = [n for n in loc.consumers if n in groups.consumers]
        walk = {n: loc.consumers[n] - {"<output>"} for n in both}
        equal = sum(walk[n] == groups.consumers[n] for n in both)
        within = sum(walk[n] <= groups.consumers[n] for n in both)
        out.append(f"export = tp {equal}/{len(both)}, export ⊆ tp {within}/{len(both)}")
    return out


# ------------------------------------------------------------------------------- table


COLUMNS = (
    "model",
    "n",
    "fx",
    "export strict",
    "export non-strict",
    "located (strict · non-strict)",
    "torch-pruning DG",
    "groups (readers)",
    "DG + workarounds, groups",
    "prune ch 0 + forward",
    "maps agree (readers)",
)


def row_cells(r: Row) -> list[str]:
    loc = " · ".join(
        r.located[k].cell() if k in r.located else "–" for k in ("strict", "non-strict")
    )
    if "use_cache=False" in r.located:
        loc += f" (non-strict, use_cache=False: {r.located['use_cache=False'].cell()})"
    last = next((r.located[k] for k in reversed(r.located)), None)
    if last is not None and last.unflattened is not None:
        loc += f"; unflatten {last.unflattened}/{last.n}"
    groups = r.groups.cell() if r.groups else "–"
    if r.groups and r.groups.errors:
        first = next(iter(r.groups.errors.values()))
        groups += f": {first}"
    custom = "–"
    if r.tweak_dg is not None:
        extra = f", {r.tweak_groups.cell()}" if r.tweak_groups else ""
        if r.tweak_groups and r.tweak_groups.errors:
            extra += f": {next(iter(r.tweak_groups.errors.values()))}"
        custom = r.tweak_dg.cell(extra)
    pruned = "–"
    if r.pruned:
        ok, n, errors, untied = r.pruned
        pruned = f"{ok}/{n}"
        if errors:
            pruned += f": {next(iter(errors.values()))}"
        if untied:
            pruned += f"; tie broken by {len(untied)}"
    return [
        r.model,
        str(r.n),
        r.fx.cell(),
        r.strict.cell(),
        r.nonstrict.cell(),
        loc,
        r.dg.cell(),
        groups,
        custom,
        pruned,
        "; ".join(r.agreement) or "–",
    ]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    out = ["## Per layer", ""]
    for r in rows:
        out.append(f"### {r.model}")
        out += [f"- {note}" for note in r.notes]
        loc = next(
            iter(
                r.located[k] for k in ("non-strict", "strict", "use_cache=False") if k in r.located
            ),
            None,
        )
        groups = r.tweak_groups or r.groups
        if r.pruned and r.pruned[2]:
            out += [f"- prune {n}: {e}" for n, e in r.pruned[2].items()]
        if groups:
            out += [
                f"- tp maps the last channel of {n} past its readers' inputs: {', '.join(b)}"
                for n, b in groups.out_of_range.items()
            ]
        if r.pruned and r.pruned[3]:
            out += [f"- tie broken after pruning {u}" for u in r.pruned[3]]
        if loc:
            every = sorted(set().union(*loc.ops.values())) if loc.ops else []
            out.append(f"- aten ops between layers (export): {', '.join(every)}")
        names = list(loc.consumers) if loc else []
        if groups:
            names += [n for n in groups.consumers if n not in names]
            names += [n for n in groups.errors if n not in names]
        for name in names:
            parts = []
            if loc and name in loc.consumers:
                parts.append(f"export → {sorted(loc.consumers[name]) or '[]'}")
            if groups and name in groups.consumers:
                parts.append(f"tp readers {sorted(groups.consumers[name])}")
                if groups.coupled[name]:
                    parts.append(f"tp coupled {sorted(groups.coupled[name])}")
            if groups and name in groups.errors:
                parts.append(f"tp: {groups.errors[name]}")
            out.append(f"- `{name}`: " + "; ".join(parts))
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="default: every model")
    parser.add_argument("--out", type=Path, help="also write the table (and details) here")
    parser.add_argument("--no-variants", action="store_true", help="skip byo VARIANTS")
    parser.add_argument("--no-prune", action="store_true", help="skip the prune-and-run check")
    parser.add_argument("--details", action="store_true", help="print the per-layer details")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per step")
    parser.add_argument(
        "--group-timeout", type=float, default=10, help="seconds per layer's pruning group"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.models or model_names(not args.no_variants)
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(evaluate(name, args.timeout, args.group_timeout, not args.no_prune))
        print(f"# {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    text = (
        f"torch {torch.__version__}, {versions()}; one CPU thread; seconds are wall time\n\n"
        + table(rows)
    )
    print(text)
    more = details(rows)
    if args.details:
        print("\n" + more)
    if args.out:
        args.out.write_text(text + "\n\n" + more + "\n")
    return 0


def versions() -> str:
    out = []
    for mod in ("transformers", "torch_geometric", "torch_pruning"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # not installed
            out.append(f"{mod} missing")
    return ", ".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
