"""What IMP prunes of a model and what it leaves dense, with every parameter accounted for
(``prunescope layers``, the manifest's record, the report).

Network sparsity is measured over the prunable weights (docs/guide.md, "IMP as implemented"). A model can hold
most of its parameters elsewhere: an LSTM language model reported "75% network sparsity"
on 6.4% of its parameters, its LSTM never mentioned. So every parameter is in one bucket:
a pruned layer's weight, an excluded layer's weight (and why), a bias of a prunable
layer (never pruned), or a module no prunable layer covers (normalisation, embeddings,
recurrent layers), each with its share of all parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from prunescope.models.layers import adapter_for
from prunescope.models.registry import prunable_layers, stage_of_layer


@dataclass(frozen=True)
class LayerRow:
    name: str
    axes: str  # the adapter and its axes, as `layers` prints them
    stage: str
    group: str
    neurons: int
    fan_in: int
    weights: int
    excluded: str | None  # why it stays dense, or None: pruned


@dataclass
class Inventory:
    layers: list[LayerRow]
    dense_modules: dict[str, tuple[str, int]]  # module -> (type, parameters no layer holds)
    biases: int  # biases and other parameters of prunable layers besides their weight
    total: int
    tied: dict[str, str] = field(default_factory=dict)  # layer -> layer whose weight it is

    @property
    def pruned_weights(self) -> int:
        return sum(r.weights for r in self.layers if r.excluded is None)

    def record(self) -> dict:
        """For the manifest and ``summary.json``: what stays dense, with shares."""

        def share(n: int) -> float:
            return n / self.total if self.total else 0.0

        return {
            "total_parameters": self.total,
            "prunable_weights": self.pruned_weights,
            "prunable_share": share(self.pruned_weights),
            "excluded_layers": {
                r.name: {"parameters": r.weights, "share": share(r.weights), "why": r.excluded}
                for r in self.layers
                if r.excluded
            },
            "dense_modules": {
                name: {"type": kind, "parameters": n, "share": share(n)}
                for name, (kind, n) in self.dense_modules.items()
            },
            "biases": {"parameters": self.biases, "share": share(self.biases)},
            "tied": dict(self.tied),
        }


def inventory(model: nn.Module, exclude: list[str], output_layers: list[str]) -> Inventory:
    """Every prunable layer with its stage, group, neuron axis and fan-in, and every other
    parameter; ``output_layers`` (:func:`~prunescope.models.probe.output_layer`) says
    which excluded layer is the one that produces the output."""
    modules = dict(model.named_modules())
    layers = prunable_layers(model)
    stage_of = stage_of_layer(model) if hasattr(model, "stages") else {}
    group_of = {
        layer: g
        for g, members in (getattr(model, "layer_groups", None) or {}).items()
        for layer in members
    }
    rows = []
    for name in layers:
        m, a = modules[name], adapter_for(modules[name])
        why = None
        if name in exclude:
            why = "imp.exclude: the output layer" if name in output_layers else "imp.exclude"
        rows.append(
            LayerRow(
                name,
                f"{a.name}: weight axis {a.weight_axis}, output axis {a.output_axis}",
                stage_of.get(name, "-"),
                group_of.get(name, "-"),
                a.neurons(m),
                a.fan_in(m),
                m.weight.numel(),
                why,
            )
        )
    weight_of = {id(modules[n].weight): n for n in layers}
    biases = sum(
        p.numel() for n in layers for p in modules[n].parameters() if id(p) not in weight_of
    )
    covered = set(layers) | {f"{n}.{c}" for n in layers for c, _ in modules[n].named_modules() if c}
    dense, tied, counted = {}, {}, set()
    for name, m in modules.items():
        if name in covered:
            continue
        own = list(m.parameters(recurse=False))
        for p in own:
            if id(p) in weight_of:  # another name for a prunable layer's weight
                tied[name] = weight_of[id(p)]
        fresh = [p for p in own if id(p) not in weight_of and id(p) not in counted]
        counted.update(id(p) for p in fresh)
        n = sum(p.numel() for p in fresh)
        if n:
            dense[name] = (type(m).__name__, n)
    total = sum(p.numel() for p in model.parameters())
    return Inventory(rows, dense, biases, total, tied)


def dense_by_type(dense_modules: dict[str, dict]) -> list[str]:
    """``dense_modules`` of :meth:`Inventory.record`, one phrase per module type:
    "BatchNorm2d x9 (336, 1.7%: bn1, layer1.0.bn1, ...)"."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for name, e in dense_modules.items():
        groups.setdefault(e["type"], []).append((name, e))
    out = []
    for kind, members in groups.items():
        n = sum(e["parameters"] for _, e in members)
        share = sum(e["share"] for _, e in members)
        names = ", ".join(name for name, _ in members[:3]) + (", ..." if len(members) > 3 else "")
        count = f" x{len(members)}" if len(members) > 1 else ""
        out.append(f"{kind}{count} ({n:,}, {share:.1%}: {names})")
    return out


def format_inventory(inv: Inventory) -> str:
    """The table ``prunescope layers`` prints."""
    width = max([len(r.name) for r in inv.layers] + [5])
    lines = [
        f"{'layer':<{width}}  {'stage':<10} {'group':<10} {'neurons':>7} {'fan-in':>7} "
        f"{'weights':>10}  neuron axis / status"
    ]
    for r in inv.layers:
        status = f"dense: {r.excluded}" if r.excluded else "pruned"
        lines.append(
            f"{r.name:<{width}}  {r.stage:<10} {r.group:<10} {r.neurons:>7} {r.fan_in:>7} "
            f"{r.weights:>10,}  {r.axes}; {status}"
        )
    rec = inv.record()
    lines.append("")
    lines.append(
        f"pruned: {rec['prunable_weights']:,} of {inv.total:,} parameters "
        f"({rec['prunable_share']:.1%}); network sparsity is measured over these"
    )
    for phrase in dense_by_type(rec["dense_modules"]):
        lines.append(f"dense, held by no prunable layer: {phrase}")
    if inv.biases:
        lines.append(
            f"dense: biases of the prunable layers {inv.biases:,} ({inv.biases / inv.total:.1%})"
        )
    for layer, owner in inv.tied.items():
        lines.append(
            f"tied: {layer}'s weight is {owner}'s (one tensor, saved once, pruned as {owner} is)"
        )
    return "\n".join(lines)
