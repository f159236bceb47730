"""Magnitude pruning of the still-alive weights (DESIGN §2).

``global``: all prunable weights of the network are ranked together by |w|;
``layerwise``: each tensor loses ``rate`` of its own alive weights. Either way
``round(rate × alive)`` weights go, smallest magnitude first, ties broken by
flat index (the concatenation of the tensors in network order), so the result
never depends on the sort implementation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunescope.pruning.masks import Masks


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


def prune_masks(
    weights: Mapping[str, torch.Tensor],
    masks: Masks,
    rate: float,
    scope: str = "global",
) -> Masks:
    """Next level's masks from the previous masks and the previous level's trained weights."""
    keys = list(masks)
    if scope == "layerwise":
        out = {}
        for k in keys:
            alive = masks[k].reshape(-1).cpu()
            mag = weights[k].detach().reshape(-1).abs().float().cpu()
            n = n_to_prune(int(alive.sum()), rate)
            out[k] = _prune_flat(mag, alive, n).view_as(masks[k])
        return out
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}")
    alive = torch.cat([masks[k].reshape(-1).cpu() for k in keys])
    mag = torch.cat([weights[k].detach().reshape(-1).abs().float().cpu() for k in keys])
    new = _prune_flat(mag, alive, n_to_prune(int(alive.sum()), rate))
    out, start = {}, 0
    for k in keys:
        size = masks[k].numel()
        out[k] = new[start : start + size].view_as(masks[k]).clone()
        start += size
    return out
