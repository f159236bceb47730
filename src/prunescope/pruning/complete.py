"""Neuron completion: the method ``complete`` (the paper's future work 1).

IMP leaves "the last few weights" in nearly empty neurons, so no matrix ever shrinks.
This method removes them: after the level's magnitude step, every neuron (output
channel of a convolution, output unit of a linear layer) whose fan-in sparsity reaches
``imp.complete.threshold`` loses its remaining weights. The level's budget stays
``round(rate × alive)``: the weights that completion empties count against it, and the
magnitude step removes correspondingly fewer. Concretely, per budget group:

1. the magnitude step with the whole budget ``n`` says which neurons would reach the
   threshold (those not empty already);
2. they are emptied emptiest first (highest fan-in sparsity after step 1; ties: network
   order, then neuron index), each only while its alive weights fit in what is left of
   ``n``;
3. what is left of ``n`` goes to the smallest-magnitude weights outside them.
"""

from __future__ import annotations

import torch
from pydantic import Field

from prunescope.config.schema import Section
from prunescope.pruning.magnitude import Flat, n_to_prune
from prunescope.pruning.masks import Masks
from prunescope.pruning.registry import PruneInput, PruningMethod, register_method


class CompleteSettings(Section):
    threshold: float = Field(
        0.9, gt=0, le=1, description="fan-in sparsity at which a neuron loses its last weights"
    )


def _rows(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1)


def completion_order(
    after: Masks, before: Masks, keys: list[str], threshold: float
) -> list[tuple[str, int, int]]:
    """(key, neuron, alive weights before the step) of every neuron that reaches the
    threshold after the full magnitude step, emptiest first."""
    cands = []
    for ki, k in enumerate(keys):
        rows_after, rows_before = _rows(after[k]), _rows(before[k])
        fan_in = rows_after.shape[1]
        sparsity = 1.0 - rows_after.sum(1).double() / fan_in
        alive_before = rows_before.sum(1)
        for i in torch.nonzero((sparsity >= threshold) & (alive_before > 0)).flatten().tolist():
            cands.append((-float(sparsity[i]), ki, i, k, int(alive_before[i])))
    return [(k, i, cost) for _, _, i, k, cost in sorted(cands)]


def complete_step(inp: PruneInput) -> Masks:
    threshold = inp.settings.complete.threshold
    out: Masks = {}
    for keys in inp.groups():
        flat = Flat.of(inp.weights, inp.masks, keys)
        n = n_to_prune(int(flat.alive.sum()), inp.rate)
        first = flat.split(flat.remove_smallest(flat.alive, n))
        alive = {k: inp.masks[k].clone() for k in keys}
        left = n
        for k, i, cost in completion_order(first, inp.masks, keys, threshold):
            if cost <= left:
                _rows(alive[k])[i] = False
                left -= cost
        rest = Flat.of(inp.weights, alive, keys)
        out.update(rest.split(rest.remove_smallest(rest.alive, left)))
    return out


def complete_naive(inp: PruneInput) -> Masks:
    """The same three steps written out over Python lists."""
    from prunescope.pruning.magnitude import magnitude_naive

    threshold = inp.settings.complete.threshold
    out: Masks = {}
    for keys in inp.groups():
        sub = PruneInput(inp.weights, {k: inp.masks[k] for k in keys}, inp.rate, "global")
        n = n_to_prune(sum(int(inp.masks[k].sum()) for k in keys), inp.rate)
        first = magnitude_naive(sub)
        cands = []
        for ki, k in enumerate(keys):
            rows = inp.masks[k].shape[0]
            fan_in = inp.masks[k].numel() // rows
            for i in range(rows):
                before = sum(bool(v) for v in inp.masks[k].reshape(rows, -1)[i].tolist())
                after = sum(bool(v) for v in first[k].reshape(rows, -1)[i].tolist())
                sparsity = 1.0 - after / fan_in
                if sparsity >= threshold and before > 0:
                    cands.append((-sparsity, ki, i, k, before))
        alive = {k: inp.masks[k].clone() for k in keys}
        left = n
        for _, _, i, k, cost in sorted(cands):
            if cost <= left:
                alive[k].reshape(alive[k].shape[0], -1)[i] = False
                left -= cost
        ranked = sorted(
            (float(abs(inp.weights[k].reshape(-1)[j])), pos, k, j)
            for pos, (k, j) in enumerate((k, j) for k in keys for j in range(alive[k].numel()))
            if bool(alive[k].reshape(-1)[j])
        )
        for _, _, k, j in ranked[:left]:
            alive[k].view(-1)[j] = False
        out.update(alive)
    return out


register_method(
    PruningMethod(
        "complete",
        "magnitude pruning that also empties every neuron whose fan-in sparsity reaches "
        "imp.complete.threshold, within the same budget",
        complete_step,
        complete_naive,
        settings=CompleteSettings,
    )
)
