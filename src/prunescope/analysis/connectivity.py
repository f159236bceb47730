"""Linear mode connectivity (Frankle et al. 2020): do consecutive levels lie in one basin?

For each level and a reference (the dense baseline, and the previous level), the
network is evaluated at ``analysis.connectivity.points`` evenly spaced points of
the straight line between the two weight vectors, θ(α) = (1 − α)·θ_reference +
α·θ_level, α from 0 (the reference) to 1 (the level). Averaging two networks'
weights does not average their BatchNorm statistics, so at every point, the two
ends included, the BatchNorm running statistics are re-estimated on a fixed
training subset (``analysis.connectivity.bn_images`` images, no augmentation),
as is standard; the accuracy at α = 0 and α = 1 is therefore the two levels'
accuracy *with re-estimated statistics*, which can differ slightly from
``accuracy.csv`` (the finding says by how much). ``connectivity_barriers.csv`` gives,
per level, reference and metric (error in points, loss), Frankle's barrier and the
barrier above the straight line between the ends (:mod:`prunescope.analysis.barriers`):
one basin is judged by the latter, since IMP's levels end at different errors.
"""

from __future__ import annotations

import pandas as pd
import torch
from pydantic import Field
from torch import nn

from prunescope.analysis.barriers import COLUMNS as BARRIER_COLUMNS
from prunescope.analysis.barriers import barrier_table
from prunescope.analysis.registry import (
    AnalysisSpec,
    Figure,
    Headline,
    Sentence,
    SentenceInputs,
    pruned_levels,
    register_analysis,
)
from prunescope.config.schema import Section
from prunescope.report import findings as F
from prunescope.report import sentences as S
from prunescope.report.figures import connectivity as connectivity_figure
from prunescope.report.findings import share
from prunescope.training.precision import autocast
from prunescope.training.trainer import evaluate

COLUMNS = [
    "level",
    "network_sparsity",
    "reference",
    "reference_level",
    "alpha",
    "test_accuracy",
    "test_loss",
]


class ConnectivitySettings(Section):
    # 5 points (alpha = 0, .25, .5, .75, 1) find a barrier in the middle of the path at a
    # fifth of the cost of 21; raise it for a finer path.
    points: int = Field(5, ge=2, le=101, description="evenly spaced points from alpha 0 to 1")
    bn_images: int = Field(
        1000, gt=0, description="training images that BatchNorm statistics are re-estimated on"
    )
    test_subset: int | None = Field(
        None,
        gt=0,
        description="test examples each point of the path is evaluated on (default: all)",
    )
    batch_size: int = Field(
        250, gt=0, description="examples per forward pass (memory, not the numbers)"
    )


def alphas(points: int) -> list[float]:
    return [i / (points - 1) for i in range(points)]


def interpolate(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 − α)·a + α·b for every floating tensor; integer buffers (BatchNorm's step counter) from a."""
    return {
        k: torch.lerp(a[k], b[k], alpha) if a[k].is_floating_point() else a[k].clone() for k in a
    }


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches, precision: str = "fp32") -> None:
    """Replace every BatchNorm's running statistics by their exact average over ``batches``
    (momentum None: a cumulative mean), with every other module in eval mode."""
    bns = _batchnorms(model)
    if not bns:
        return
    model.eval()
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for x, _ in batches:
            with autocast(x.device, precision):
                model(x)
    finally:
        for bn, m in zip(bns, saved, strict=True):
            bn.momentum = m
        model.eval()


def path(
    model: nn.Module,
    reference: dict[str, torch.Tensor],
    level: dict[str, torch.Tensor],
    points: int,
    bn_batches,
    test_batches,
    precision: str = "fp32",
) -> list[tuple[float, float, float]]:
    """(α, accuracy, loss) at each point of the line from ``reference`` to ``level``."""
    out = []
    for alpha in alphas(points):
        model.load_state_dict(interpolate(reference, level, alpha))
        reestimate_batchnorm(model, bn_batches, precision)
        acc, loss = evaluate(model, test_batches, precision)
        out.append((alpha, acc, loss))
    return out


def connectivity_table(ctx, levels: list[int]) -> pd.DataFrame:  # ctx: AnalysisContext
    c = ctx.cfg.analysis.connectivity
    test = ctx.batches(c.test_subset, c.batch_size)
    bn = ctx.train_batches(c.bn_images, c.batch_size)
    work = ctx.fresh_model()
    rows = []
    for level in levels:
        state = ctx.state(level)
        for reference, ref_level in (("baseline", 0), ("previous", level - 1)):
            points = path(work, ctx.state(ref_level), state, c.points, bn, test, ctx.precision)
            for alpha, acc, loss in points:
                rows.append(
                    (level, ctx.network_sparsity(level), reference, ref_level, alpha, acc, loss)
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def _compute(ctx, levels: list[int]) -> dict[str, pd.DataFrame]:
    path_rows = connectivity_table(ctx, levels)
    return {"connectivity": path_rows, "connectivity_barriers": barrier_table(path_rows)}


def _sentences(s: SentenceInputs) -> list[Sentence]:
    cf = s.summary.get("connectivity")
    if cf and cf["previous"]["levels_considered"]:
        return [S.connectivity_finding(cf, s.batchnorm)]
    return []


def _previous(summary: dict) -> dict:
    return (summary.get("connectivity") or {}).get("previous") or {}


register_analysis(
    AnalysisSpec(
        name="connectivity",
        description="accuracy and loss on the straight line from each level to the baseline "
        "and to the previous level, BatchNorm re-estimated at every point (Frankle et al. 2020)",
        tables={"connectivity": COLUMNS, "connectivity_barriers": BARRIER_COLUMNS},
        compute=_compute,
        settings=ConnectivitySettings,
        depends_on=lambda cfg: {**cfg.analysis.connectivity.model_dump(), "seed": cfg.seed},
        levels=pruned_levels,
        runs_network=True,
        finding=lambda inp: (
            {
                "connectivity": F.connectivity_finding(
                    inp.tables["connectivity"],
                    inp.critical["level"],
                    inp.tables.get("connectivity_barriers"),
                    inp.tables.get("accuracy"),
                )
            }
            if inp.has("connectivity")
            else {}
        ),
        sentences=_sentences,
        headlines={
            "connected_share": Headline(
                "levels in one basin with the previous",
                "pct",
                lambda s: share(
                    _previous(s).get("levels_connected"), _previous(s).get("levels_considered")
                ),
            )
        },
        figures=(Figure(connectivity_figure.draw, ("connectivity",)),),
    )
)
