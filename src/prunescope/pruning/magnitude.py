"""Magnitude pruning of the still-alive weights (DESIGN §2): the method ``magnitude``.

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

from prunescope.pruning.masks import Masks
from prunescope.pruning.registry import PruneInput, PruningMethod, register_method


def n_to_prune(alive: int, rate: float) -> int:
    """round(rate × alive), halves rounded up (so it cannot depend on banker's rounding)."""
    return min(alive, math.floor(rate * alive + 0.5))


def _prune_flat(magnitude: torch.Tensor, alive: torch.Tensor, n: int) -> torch.Tensor:
    """New flat alive-mask: the ``n`` smallest alive magnitudes removed, lowest index first on ties."""
    positions = torch.nonzero(alive, as_tuple=True)[0]
    if n <= 0:
        return alive.clone()
    # A stable sort of values laid out in flat-index order keeps equal values in index order.
    order = torch.sort(magnitude[positions], stable=True).indices[:n]
    new = alive.clone()
    new[positions[order]] = False
    return new


@dataclass
class Flat:
    """A budget group's weights as one flat vector, in network order (the tie-break order)."""

    keys: list[str]
    shapes: list[torch.Size]
    magnitude: torch.Tensor  # |w| as float32
    alive: torch.Tensor  # bool

    @classmethod
    def of(cls, weights: Mapping[str, torch.Tensor], masks: Masks, keys: list[str]) -> Flat:
        return cls(
            keys,
            [masks[k].shape for k in keys],
            torch.cat([weights[k].detach().reshape(-1).abs().float().cpu() for k in keys]),
            torch.cat([masks[k].reshape(-1).cpu() for k in keys]),
        )

    def offsets(self) -> list[int]:
        out, start = [], 0
        for shape in self.shapes:
            out.append(start)
            start += int(torch.Size(shape).numel())
        return out

    def split(self, flat: torch.Tensor) -> Masks:
        return {
            k: flat[o : o + int(torch.Size(s).numel())].view(s).clone()
            for k, s, o in zip(self.keys, self.shapes, self.offsets(), strict=True)
        }

    def remove_smallest(self, alive: torch.Tensor, n: int) -> torch.Tensor:
        return _prune_flat(self.magnitude, alive, n)


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
