"""Fan-out pruning (``imp.prune_fanout``), for any method: Han et al. (2015)'s "zero output
connections".

Once a neuron has no incoming weight left, the weights of the following layers that
read only its channel (through BatchNorm, ReLU and pooling, not through a residual sum:
see :mod:`prunescope.structure`) are pruned too. They are counted in the same budget:
after the method's step (which decides the empty neurons), each such weight is paid for
by giving back, un-pruned, one of the weights the step removed at this level, largest
magnitude first, outside the empty neurons (so they stay empty). When the step removed
too few to give back, only that many of the fan-out weights are pruned (network order,
then flat index). Either way the level removes exactly ``round(rate × alive)``.

Note that a neuron followed by a BatchNorm is not silent when it is empty (it emits the
BatchNorm's constant): pruning what reads it removes that constant, which the training
of the level then adapts to.
"""

from __future__ import annotations

import torch

from prunescope.pruning.masks import Masks, flat, unflat
from prunescope.pruning.registry import PruneInput, Step


def _empty_rows(mask: torch.Tensor) -> torch.Tensor:
    return ~mask.reshape(mask.shape[0], -1).any(1)


def fanout_positions(inp: PruneInput, masks: Masks) -> Masks:
    """Where the consumers of the empty neurons in ``masks`` read them (bool, per key)."""
    out = {k: torch.zeros_like(m) for k, m in masks.items()}
    for k, consumers in inp.consumers.items():
        if k not in masks:
            continue
        empty = torch.nonzero(_empty_rows(masks[k])).flatten().tolist()
        for ck, span, groups in consumers:
            if ck not in masks:
                continue
            w = out[ck].reshape(out[ck].shape[0], out[ck].shape[1], -1)  # [out, in/groups, k*k]
            cin_pg, cout_pg = w.shape[1], w.shape[0] // groups
            for c in empty:
                first, last = c * span, (c + 1) * span  # the consumer's input features
                g = first // cin_pg  # a grouped convolution reads channel c in one group only
                w[g * cout_pg : (g + 1) * cout_pg, first - g * cin_pg : last - g * cin_pg] = True
    return out


def with_fanout(inp: PruneInput, step: Step) -> Masks:
    new = step(inp)
    reach = fanout_positions(inp, new)
    keys = inp.keys
    prune = flat({k: reach[k] & new[k] for k in keys}, keys)  # alive fan-out weights
    if not bool(prune.any()):
        return new
    before, after, reached = flat(inp.masks, keys), flat(new, keys), flat(reach, keys)
    empty = flat({k: _empty_rows(new[k]).repeat_interleave(new[k][0].numel()) for k in keys}, keys)
    mag = flat(inp.weights, keys).abs().float()
    refundable = torch.nonzero(before & ~after & ~empty & ~reached).flatten()
    wanted = torch.nonzero(prune).flatten()
    n = min(len(wanted), len(refundable))
    # give back the n largest removed weights (ties: lowest flat index first)
    order = torch.sort(-mag[refundable], stable=True).indices[:n]
    result = after.clone()
    result[refundable[order]] = True
    result[wanted[:n]] = False
    return unflat(result, new, keys)


def with_fanout_naive(inp: PruneInput, step: Step) -> Masks:
    """The same with Python lists: find the fan-out weights, give back as many removed ones."""
    new = {k: v.clone() for k, v in step(inp).items()}
    reach = fanout_positions(inp, new)
    entries = []  # (position, key, flat index) in network order
    for k in inp.keys:
        for j in range(new[k].numel()):
            entries.append((k, j))
    wanted, refundable = [], []
    for pos, (k, j) in enumerate(entries):
        alive_after = bool(new[k].reshape(-1)[j])
        alive_before = bool(inp.masks[k].reshape(-1)[j])
        row = j // new[k][0].numel()
        empty = not bool(new[k].reshape(new[k].shape[0], -1)[row].any())
        fan = bool(reach[k].reshape(-1)[j])
        if fan and alive_after:
            wanted.append((pos, k, j))
        elif alive_before and not alive_after and not empty and not fan:
            mag = float(abs(inp.weights[k].reshape(-1)[j]))
            refundable.append((-mag, pos, k, j))
    n = min(len(wanted), len(refundable))
    for _, _, k, j in sorted(refundable)[:n]:
        new[k].view(-1)[j] = True
    for _, k, j in wanted[:n]:
        new[k].view(-1)[j] = False
    return new
