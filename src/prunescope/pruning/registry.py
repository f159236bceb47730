"""The pruning-method registry: ``imp.method`` picks how each level's budget is spent.

Every method spends exactly ``round(rate × alive)`` weights per budget group (the whole
network with ``imp.scope = "global"``, each layer with ``"layerwise"``), so network
sparsity follows §2's sequence whatever the method and every comparison is at equal
sparsity. Each method is one module with a docstring saying what it removes and why,
a fast implementation and a naive reference twin (plain Python loops) that the tests
compare it with. ``imp.prune_fanout`` extends any method (:mod:`prunescope.pruning.fanout`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel

from prunescope.config.schema import ImpSection
from prunescope.errors import UserInputError
from prunescope.pruning.masks import Masks


@dataclass(frozen=True)
class PruneInput:
    """What a method sees: the previous level's trained weights and masks, the rate and the
    method's settings. ``keys`` are the prunable weights in network order."""

    weights: Mapping[str, torch.Tensor]
    masks: Masks
    rate: float
    scope: str = "global"
    settings: ImpSection | None = None  # [imp]; a method's own settings: settings.<method>
    consumers: dict = field(default_factory=dict)  # layer key -> [(consumer key, span)]

    @property
    def keys(self) -> list[str]:
        return list(self.masks)

    def groups(self) -> list[list[str]]:
        """The budget groups: the network, or each layer."""
        return [[k] for k in self.keys] if self.scope == "layerwise" else [self.keys]


Step = Callable[[PruneInput], Masks]


@dataclass(frozen=True)
class PruningMethod:
    name: str
    description: str
    prune: Step
    naive: Step  # the definition, written as plainly as possible: tests compare the two
    settings: type[BaseModel] | None = None  # its [imp.<name>] section


_REGISTRY: dict[str, PruningMethod] = {}


def register_method(method: PruningMethod) -> PruningMethod:
    if method.name in _REGISTRY:
        raise ValueError(f"pruning method {method.name!r} registered twice")
    _REGISTRY[method.name] = method
    return method


def methods() -> dict[str, PruningMethod]:
    import prunescope.pruning.methods  # noqa: F401  (registration)

    return dict(_REGISTRY)


def settings_models() -> dict[str, type[BaseModel]]:
    """``[imp.<method>]`` sections: each method's settings model."""
    return {n: m.settings for n, m in methods().items() if m.settings is not None}


def method(name: str) -> PruningMethod:
    known = methods()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserInputError(f"unknown imp.method {name!r}{hint}; choose one of {', '.join(known)}")
    return known[name]


def next_masks(inp: PruneInput, naive: bool = False) -> Masks:
    """The next level's masks: the configured method, then fan-out pruning if asked for."""
    from prunescope.pruning.fanout import with_fanout, with_fanout_naive

    m = method(getattr(inp.settings, "method", "magnitude"))
    step = m.naive if naive else m.prune
    if getattr(inp.settings, "prune_fanout", False):
        return (with_fanout_naive if naive else with_fanout)(inp, step)
    return step(inp)
