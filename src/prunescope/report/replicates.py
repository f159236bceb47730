"""Replicates: runs whose configs differ only in ``seed`` are one experiment measured several
times. The report shows their mean with a 95% confidence band (Student's t on the seeds'
spread) and gives each finding per seed with its spread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from prunescope.config import Config
from prunescope.config.load import flatten
from prunescope.errors import UserInputError
from prunescope.report.runs import NOT_LABEL_PREFIXES, NOT_LABELS

SEED = "seed"


def _experiment(cfg: Config) -> dict:
    """The config without the seed and without what never changes the numbers."""
    flat = flatten(cfg.model_dump(mode="json"))
    return {
        k: v
        for k, v in flat.items()
        if k != SEED and k not in NOT_LABELS and not k.startswith(NOT_LABEL_PREFIXES)
    }


def differences_beyond_seed(a: Config, b: Config) -> list[str]:
    ea, eb = _experiment(a), _experiment(b)
    return sorted(k for k in set(ea) | set(eb) if ea.get(k) != eb.get(k))


def replicate_groups(cfgs: list[Config]) -> list[list[int]]:
    """Indices of the runs, grouped: each group differs only in the seed (order kept)."""
    groups: list[list[int]] = []
    for i, cfg in enumerate(cfgs):
        for g in groups:
            new_seed = all(cfgs[j].seed != cfg.seed for j in g)  # the same run twice is not two
            if new_seed and not differences_beyond_seed(cfgs[g[0]], cfg):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def require_replicates(paths: list[Path], cfgs: list[Config]) -> None:
    """``report --replicates``: every run must differ from the first only in its seed."""
    for path, cfg in zip(paths[1:], cfgs[1:], strict=True):
        keys = differences_beyond_seed(cfgs[0], cfg)
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            raise UserInputError(
                f"--replicates: {path} is not a replicate of {paths[0]}: their configs differ in "
                f"{shown}, not only in the seed"
            )
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) < len(seeds):
        raise UserInputError(f"--replicates: two runs have the same seed ({seeds})")


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its two-sided ``confidence`` interval (Student's t);
    one value gives a band of zero width."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * float(
        values.std(ddof=1) / np.sqrt(len(values))
    )
    return mean, mean - half, mean + half


# Replicates share every setting but the seed, so every level removes exactly the same number
# of weights: their sparsities agree to the last bit. Anything beyond float noise is another
# experiment (or a table someone edited), never averaged into the band.
SPARSITY_TOLERANCE = 1e-9


def check_comparable(tables: list[pd.DataFrame], names: list[str]) -> set[int]:
    """The levels every replicate has, whose network sparsities agree across replicates."""
    common = set.intersection(*(set(t["level"]) for t in tables))
    if not common:
        raise UserInputError(
            f"the replicates {', '.join(names[:3])} have no trained level in common; a band "
            f"needs the same level in every run"
        )
    for level in sorted(common):
        values = [float(t.loc[t["level"] == level, "network_sparsity"].iloc[0]) for t in tables]
        if max(values) - min(values) > SPARSITY_TOLERANCE:
            lo, hi = values.index(min(values)), values.index(max(values))
            raise UserInputError(
                f"replicates disagree on the sparsity of level {level} ({values[lo]:.4f} in "
                f"{names[lo]}, {values[hi]:.4f} in {names[hi]}); they are not one experiment"
            )
    return common


def accuracy_band(tables: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Per level present in every replicate: mean test accuracy and its 95% band."""
    merged = pd.concat([t.assign(replicate=i) for i, t in enumerate(tables)], ignore_index=True)
    common = check_comparable(tables, names)
    rows = []
    for level, g in merged[merged["level"].isin(common)].groupby("level"):
        mean, low, high = t_interval(g["test_accuracy"].to_numpy())
        rows.append(
            {
                "level": int(level),
                "network_sparsity": float(g["network_sparsity"].mean()),
                "test_accuracy": mean,
                "low": low,
                "high": high,
                "test_loss": float(g["test_loss"].mean()),
                "replicates": len(g),
            }
        )
    return pd.DataFrame(rows)
