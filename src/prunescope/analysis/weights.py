"""Distributions of surviving |w| per stage (Figs. 5–6), as counts on shared log-spaced bins.

Counts rather than densities: the paper scales its PDFs so that a curve's area is
the number of weights in the stage, which is what counts on fixed bins give.
The bins are fixed by the config (``analysis.weights``), so every level and
every run with the same settings share them. Values outside the range are
counted in the first or last bin, so each stage's counts add up to its
surviving weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from prunescope.analysis.context import AnalysisContext
from prunescope.analysis.registry import AnalysisSpec, Figure, register_analysis
from prunescope.analysis.tables import COLUMNS
from prunescope.config.schema import Section
from prunescope.report.figures import weights as weights_figure


class WeightsSettings(Section):
    bins: int = Field(
        80, ge=4, le=1000, description="log-spaced bins of |w| shared by every level and stage"
    )
    min: float = Field(
        1e-6, gt=0, description="lowest bin edge of |w|; smaller values count in the first bin"
    )
    max: float = Field(
        10.0, gt=0, description="highest bin edge of |w|; larger values count in the last bin"
    )

    @model_validator(mode="after")
    def _ordered(self) -> WeightsSettings:
        if self.max <= self.min:
            raise ValueError(f"weights.max ({self.max}) must exceed weights.min ({self.min})")
        return self


def bin_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    return np.geomspace(lo, hi, bins + 1)


def weight_hist_table(ctx: AnalysisContext, levels: list[int]) -> pd.DataFrame:
    s = ctx.cfg.analysis.weights
    edges = bin_edges(s.min, s.max, s.bins)
    parts = []
    for level in levels:
        state = ctx.state(level)
        ns = ctx.network_sparsity(level)
        for stage, layers in ctx.stages.items():
            w = (
                torch.cat([state[f"{layer}.weight"].reshape(-1) for layer in layers])
                .abs()
                .double()
                .numpy()
            )
            w = w[w != 0]
            counts, _ = np.histogram(np.clip(w, edges[0], edges[-1]), bins=edges)
            parts.append(
                pd.DataFrame(
                    {
                        "level": level,
                        "network_sparsity": ns,
                        "stage": stage,
                        "bin_low": edges[:-1],
                        "bin_high": edges[1:],
                        "count": counts.astype(np.int64),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=COLUMNS["weight_hist"])
    return pd.concat(parts, ignore_index=True)


register_analysis(
    AnalysisSpec(
        name="weights",
        description="counts of surviving |w| per stage on shared log-spaced bins",
        tables={
            "weight_hist": ["level", "network_sparsity", "stage", "bin_low", "bin_high", "count"]
        },
        compute=lambda ctx, levels: {"weight_hist": weight_hist_table(ctx, levels)},
        settings=WeightsSettings,
        depends_on=lambda cfg: cfg.analysis.weights.model_dump(),
        figures=(Figure(weights_figure.draw, ("weight_hist",)),),
    )
)
