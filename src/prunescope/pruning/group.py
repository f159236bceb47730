"""Group pruning: the method ``group``, part of each budget spent on whole neurons.

A share ``imp.group.share`` of each level's budget ``round(rate × alive)`` goes to whole
neurons, lowest score first, the rest to the smallest-magnitude single weights. The
score is the root mean square of a neuron's surviving weights (their L2 norm over the
square root of its surviving fan-in): the same per-weight scale on which magnitude
pruning compares single weights, so a wide neuron of small weights and a narrow one
of large weights are ranked fairly, and it is a mean, not a sum, so neurons are not
ranked by their fan-in. A neuron is removed only while its alive weights fit in what is
left of the share (smaller ones further down the ranking may still fit), and never the
last neuron of a layer that still has weights. Ties: network order, then neuron index.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from prunescope.config.schema import Section
from prunescope.pruning.magnitude import Flat, n_to_prune
from prunescope.pruning.masks import Masks
from prunescope.pruning.registry import PruneInput, PruningMethod, register_method


class GroupSettings(Section):
    share: float = Field(
        0.5, gt=0, le=1, description="share of each level's budget spent on whole neurons"
    )


def group_budget(n: int, share: float) -> int:
    return min(n, math.floor(share * n + 0.5))


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def neuron_scores(inp: PruneInput, keys: list[str]) -> list[tuple[float, int, int, str, int]]:
    """(score, key index, neuron, key, alive weights) of every neuron with weights left."""
    out = []
    for ki, k in enumerate(keys):
        alive = _rows(inp.masks[k])
        w = _rows(inp.weights[k].detach().double().cpu()) * alive
        count = alive.sum(1)
        norm = w.pow(2).sum(1).sqrt()
        for i in torch.nonzero(count > 0).flatten().tolist():
            out.append((float(norm[i] / math.sqrt(int(count[i]))), ki, i, k, int(count[i])))
    return sorted(out)


def group_step(inp: PruneInput) -> Masks:
    share = inp.settings.group.share
    out: Masks = {}
    for keys in inp.groups():
        n = n_to_prune(sum(int(inp.masks[k].sum()) for k in keys), inp.rate)
        left_group = group_budget(n, share)
        alive = {k: inp.masks[k].clone() for k in keys}
        neurons_left = {k: int((_rows(inp.masks[k]).sum(1) > 0).sum()) for k in keys}
        spent = 0
        for _, _, i, k, cost in neuron_scores(inp, keys):
            if left_group == 0:
                break
            if cost <= left_group and neurons_left[k] > 1:
                _rows(alive[k])[i] = False
                neurons_left[k] -= 1
                left_group -= cost
                spent += cost
        rest = Flat.of(inp.weights, alive, keys)
        out.update(rest.split(rest.remove_smallest(rest.alive, n - spent)))
    return out


def group_naive(inp: PruneInput) -> Masks:
    """The same, over Python lists."""
    share = inp.settings.group.share
    out: Masks = {}
    for keys in inp.groups():
        alive = {k: [list(map(bool, r)) for r in _rows(inp.masks[k]).tolist()] for k in keys}
        weights = {k: _rows(inp.weights[k].detach().double()).tolist() for k in keys}
        n = n_to_prune(sum(sum(map(sum, alive[k])) for k in keys), inp.rate)
        budget = group_budget(n, share)
        cands = []
        for ki, k in enumerate(keys):
            for i, row in enumerate(alive[k]):
                kept = [w for w, a in zip(weights[k][i], row, strict=True) if a]
                if kept:
                    rms = math.sqrt(sum(w * w for w in kept)) / math.sqrt(len(kept))
                    cands.append((rms, ki, i, k, len(kept)))
        left_neurons = {k: sum(1 for row in alive[k] if any(row)) for k in keys}
        spent = 0
        for _, _, i, k, cost in sorted(cands):
            if spent == budget:
                break
            if cost <= budget - spent and left_neurons[k] > 1:
                alive[k][i] = [False] * len(alive[k][i])
                left_neurons[k] -= 1
                spent += cost
        ranked = sorted(
            (abs(float(torch.tensor(weights[k][i][j], dtype=torch.float32))), pos, k, i, j)
            for pos, (k, i, j) in enumerate(
                (k, i, j)
                for k in keys
                for i in range(len(alive[k]))
                for j in range(len(alive[k][i]))
            )
            if alive[k][i][j]
        )
        for _, _, k, i, j in ranked[: n - spent]:
            alive[k][i][j] = False
        for k in keys:
            out[k] = torch.tensor(alive[k], dtype=torch.bool).view(inp.masks[k].shape)
    return out


register_method(
    PruningMethod(
        "group",
        "a share imp.group.share of the budget on whole neurons (lowest RMS of surviving "
        "weights first), the rest on the smallest single weights",
        group_step,
        group_naive,
        settings=GroupSettings,
    )
)
