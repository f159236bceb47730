"""Magnitude pruning of the still-alive weights (docs/guide.md, "IMP as implemented"): the method ``magnitude``.

``global``: all prunable weights of the network are ranked together by |w|;
``layerwise``: each tensor loses ``rate`` of its own alive weights. Either way
``round(rate × alive)`` weights go, smallest magnitude first, ties broken by
flat index (the concatenation of the tensors in network order), so the result
never depends on the sort implementation. What it removes: only the smallest
weights, wherever they are; this is the paper's IMP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from prunescope.pruning.masks import Masks, flat, unflat
from prunescope.pruning.registry import PruneInput, PruningMethod, register_method


def n_to_prune(alive: int, rate: float) -> int:
    """round(rate × alive), halves rounded up (so it cannot depend on banker's rounding)."""
    return min(alive, math.floor(rate * alive + 0.5))


def smallest(values: torch.Tensor, n: int) -> torch.Tensor:
    """Positions of the ``n`` smallest values, lowest index first on ties: a stable sort of
    values laid out in flat-index order keeps equal values in index order."""
    return torch.sort(values, stable=True).indices[:n]


def remove_smallest(magnitude: torch.Tensor, alive: torch.Tensor, n: int) -> torch.Tensor:
    """New flat alive-mask: the ``n`` smallest alive magnitudes removed, lowest index first on ties."""
    if n <= 0:
        return alive.clone()
    positions = torch.nonzero(alive, as_tuple=True)[0]
    new = alive.clone()
    new[positions[smallest(magnitude[positions], n)]] = False
    return new


@dataclass
class Flat:
    """A budget group's weights as one flat vector, in network order (the tie-break order)."""

    keys: list[str]
    magnitude: torch.Tensor  # |w| as float32
    alive: torch.Tensor  # bool

    masks: Masks  # the shapes to split back into

    @classmethod
    def of(cls, weights: Mapping[str, torch.Tensor], masks: Masks, keys: list[str]) -> Flat:
        return cls(keys, flat(weights, keys).abs().float().cpu(), flat(masks, keys).cpu(), masks)

    def split(self, vector: torch.Tensor) -> Masks:
        return unflat(vector, self.masks, self.keys)

    def remove_smallest(self, alive: torch.Tensor, n: int) -> torch.Tensor:
        return remove_smallest(self.magnitude, alive, n)


def magnitude_step(inp: PruneInput) -> Masks:
    out: Masks = {}
    for keys in inp.groups():
        flat = Flat.of(inp.weights, inp.masks, keys)
        out.update(
            flat.split(
                flat.remove_smallest(flat.alive, n_to_prune(int(flat.alive.sum()), inp.rate))
            )
        )
    return out


def magnitude_naive(inp: PruneInput) -> Masks:
    """The definition: list every alive weight as (|w|, position), sort, drop the first n."""
    out: Masks = {k: inp.masks[k].clone() for k in inp.keys}
    for keys in inp.groups():
        alive = [
            (float(abs(inp.weights[k].reshape(-1)[i])), position, k, i)
            for position, (k, i) in enumerate(
                (k, i) for k in keys for i in range(inp.masks[k].numel())
            )
            if bool(inp.masks[k].reshape(-1)[i])
        ]
        n = n_to_prune(len(alive), inp.rate)
        for _, _, k, i in sorted(alive, key=lambda t: (t[0], t[1]))[:n]:
            out[k].view(-1)[i] = False
    return out


def prune_masks(
    weights: Mapping[str, torch.Tensor],
    masks: Masks,
    rate: float,
    scope: str = "global",
) -> Masks:
    """Next level's masks from the previous masks and the previous level's trained weights."""
    if scope not in ("global", "layerwise"):
        raise ValueError(f"unknown pruning scope {scope!r}")
    return magnitude_step(PruneInput(weights, masks, rate, scope))


register_method(
    PruningMethod(
        "magnitude",
        "the smallest-magnitude alive weights, wherever they are (the paper's IMP)",
        magnitude_step,
        magnitude_naive,
    )
)
