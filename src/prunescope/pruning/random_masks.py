"""Random masks for the lottery controls (Frankle & Carbin 2019; Frankle et al. 2021).

``layerwise``: every layer keeps exactly as many weights as the template mask (the
IMP level it controls for) keeps in that layer, at uniformly random positions: the
per-layer sparsities, and so the layer sizes' effect, are controlled for.
``global``: exactly as many weights as the template keeps in all, at uniformly
random positions over every prunable weight: each layer is pruned, in expectation,
at the network's sparsity.

Each level's random mask is drawn afresh (not nested in the previous level's), from
a generator seeded by (run seed, kind, level); the same seed gives the same masks on
every machine. OpenLTH's ``randomly_prune`` differs here: it reuses one seeded
permutation, so its random masks nest from level to level. A fresh draw makes each
level's control independent of the previous one; the sparsities controlled for are the
same either way.
"""

from __future__ import annotations

import torch

from prunescope.pruning.masks import Masks
from prunescope.seeding import cpu_generator, derive_seed


def _keep_random(n: int, keep: int, g: torch.Generator) -> torch.Tensor:
    """A flat bool mask of ``n`` entries with exactly ``keep`` True at uniform positions."""
    out = torch.zeros(n, dtype=torch.bool)
    out[torch.randperm(n, generator=g)[:keep]] = True
    return out


def random_layerwise_masks(template: Masks, seed: int, level: int) -> Masks:
    g = cpu_generator(derive_seed(seed, "random-mask-layerwise", level))
    return {k: _keep_random(m.numel(), int(m.sum()), g).view(m.shape) for k, m in template.items()}


def random_global_masks(template: Masks, seed: int, level: int) -> Masks:
    g = cpu_generator(derive_seed(seed, "random-mask-global", level))
    sizes = [m.numel() for m in template.values()]
    keep = sum(int(m.sum()) for m in template.values())
    flat = _keep_random(sum(sizes), keep, g)
    out, start = {}, 0
    for (k, m), size in zip(template.items(), sizes, strict=True):
        out[k] = flat[start : start + size].view(m.shape).clone()
        start += size
    return out
