"""Barriers on a linear path between two networks (``connectivity_barriers.csv``).

For a path evaluated at α from 0 (the reference) to 1 (the level), with E(α) the test
error in points (100 × (1 − accuracy)) or the test loss:

- ``barrier_frankle`` = max_α E(α) − (E(0) + E(1)) / 2: Frankle et al. (2020)'s
  definition, made for two ends of about equal error. Between IMP levels the ends differ
  (by up to 18 points in the showcase run), and then it measures half the gap between the
  ends: a path that improves smoothly from one end to the other has a Frankle barrier of
  half the gap and no bump at all.
- ``barrier_linear`` = max_α [E(α) − ((1 − α) E(0) + α E(1))]: the largest rise above the
  straight line between the ends. It is 0 at the ends and for a smooth monotone path, and
  positive only where the path bulges above the line.
- ``argmax_alpha``: where that maximum lies (0 or 1: at an end, so no bump inside).

A pure function of ``connectivity.csv`` (pandas only), so a finding can derive it for runs
analysed before the table existed; :func:`barrier_naive` is the definition as loops.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = [
    "level",
    "reference",
    "reference_level",
    "metric",
    "barrier_frankle",
    "barrier_linear",
    "argmax_alpha",
]


def barriers(alpha: np.ndarray, values: np.ndarray) -> tuple[float, float, float]:
    """(Frankle's barrier, the barrier above the line, the α of the latter's maximum)."""
    frankle = float(values.max() - (values[0] + values[-1]) / 2)
    line = (1 - alpha) * values[0] + alpha * values[-1]
    above = values - line
    i = int(np.argmax(above))  # the first α on ties
    return frankle, float(above[i]), float(alpha[i])


def barrier_table(connectivity: pd.DataFrame) -> pd.DataFrame:
    """One row per level, reference and metric (``error`` in points, ``loss``)."""
    rows = []
    keys = ["level", "reference", "reference_level"]
    for (level, reference, ref_level), g in connectivity.groupby(keys, sort=True):
        g = g.sort_values("alpha")
        alpha = g["alpha"].to_numpy(dtype=float)
        for metric, values in (
            ("error", 100.0 * (1.0 - g["test_accuracy"].to_numpy(dtype=float))),
            ("loss", g["test_loss"].to_numpy(dtype=float)),
        ):
            rows.append((int(level), reference, int(ref_level), metric, *barriers(alpha, values)))
    return pd.DataFrame(rows, columns=COLUMNS)


def barrier_naive(alpha: list[float], values: list[float]) -> tuple[float, float, float]:
    """The definitions written out point by point (the twin tests compare with)."""
    ends = (values[0] + values[-1]) / 2
    frankle = max(values) - ends
    best, where = None, None
    for a, v in zip(alpha, values, strict=True):
        rise = v - ((1 - a) * values[0] + a * values[-1])
        if best is None or rise > best:
            best, where = rise, a
    return frankle, best, where
