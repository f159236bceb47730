"""Stratified, seeded subsets: CPU-sized experiments keep every class in proportion."""

from __future__ import annotations

import numpy as np

from prunescope.errors import DataError


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices (sorted) of ``n`` items whose class counts follow the full set's proportions.

    Each class gets ``floor(n * share)`` items; the remainder goes to the classes
    with the largest fractional parts (ties: lower class first). Which items of a
    class are taken is a seeded permutation, so the same (labels, n, seed) always
    gives the same subset.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n >= total:
        return np.arange(total)
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / total
    take = np.floor(exact).astype(np.int64)
    remainder = n - int(take.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - take[i]), i))
    for i in order[:remainder]:
        take[i] += 1
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B5E7]))
    chosen = []
    for cls, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == cls)
        chosen.append(members[rng.permutation(len(members))[:k]])
    return np.sort(np.concatenate(chosen))


def check_subset(
    what: str, n: int | None, labels: np.ndarray, num_classes: int, unit: str = "images"
) -> None:
    """A stratified subset needs an example of every class and cannot exceed the set it
    takes from (``num_classes`` 0: not stratified)."""
    if n is None:
        return
    if n > len(labels):
        raise DataError(
            f"{what} = {n} is larger than the set it is taken from ({len(labels)} {unit})"
        )
    if n < num_classes:
        raise DataError(
            f"{what} = {n} is smaller than the number of classes ({num_classes}); a stratified "
            f"subset needs at least one image of each"
        )
